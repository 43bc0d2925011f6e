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
