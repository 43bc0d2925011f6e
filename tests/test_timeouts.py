"""The FIFO of fixed-duration timeouts."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.testing import run_timers
from mgcpswitch.timeouts import TimeoutQueue


class Queue(SynchronousTestCase):
    def test_fire_in_order_and_cancel(self) -> None:
        """Timeouts fire after their delay, in order; cancelled ones never; one timer at a time."""
        clock = Clock()
        fired: list[tuple[str, float]] = []
        queue = TimeoutQueue(clock, 10.0, lambda name: fired.append((name, clock.seconds())))
        a = queue.add("a")
        clock.advance(1)
        b = queue.add("b")
        clock.advance(1)
        queue.add("c")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        b.cancel()
        self.assertEqual(len(queue), 2)
        run_timers(clock)
        self.assertEqual(fired, [("a", 10.0), ("c", 12.0)])
        self.assertFalse(a.active)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stop(self) -> None:
        """stop() cancels everything and leaves no timer."""
        clock = Clock()
        queue = TimeoutQueue(clock, 5.0, lambda: self.fail("fired"))
        queue.add()
        queue.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10)

    def test_cancelled_timeout_lets_go_of_its_arguments(self) -> None:
        """
        A cancelled timeout stays queued until its deadline but no longer
        holds its arguments: a call agent cancels almost every no-answer
        timeout, and each one kept its call alive (and in every full GC
        pass) for the whole delay.
        """
        import gc
        import weakref

        class Call:
            pass

        clock = Clock()
        queue = TimeoutQueue(clock, 60.0, lambda call: self.fail("fired"))
        call = Call()
        ref = weakref.ref(call)
        queue.add(call).cancel()
        del call
        gc.collect()
        self.assertIsNone(ref())
        run_timers(clock)
