"""
Tests for L{mgcpswitch.ratelog}: log lines about bad input limited per peer
and kind, with a summary when the window ends on the clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.ratelog import OTHER_PEERS, PeerLogLimiter

A, B = ("10.0.0.1", 2427), ("10.0.0.2", 2427)


class Recorder:
    """A log observer keeping every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def lines(self) -> list[str]:
        return [e["log_format"] for e in self.events]

    def summaries(self) -> list[tuple[Any, str, int]]:
        return [(e["peer"], e["kind"], e["count"]) for e in self.events if "count" in e]


class Limiter(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.recorder = Recorder()
        self.limiter = PeerLogLimiter(self.clock, Logger(observer=self.recorder), burst=3, window=10.0, max_peers=2)

    def test_burst_then_summary(self) -> None:
        """Three lines per peer and kind, then silence; one summary line each when the window ends."""
        logged = [self.limiter.event(A, "junk", "junk from {peer}") for _ in range(10)]
        self.assertEqual(logged, [True] * 3 + [False] * 7)
        self.limiter.event(A, "strays", "stray from {peer}")
        self.assertEqual(len(self.recorder.lines()), 4)
        self.clock.advance(9.9)
        self.assertEqual(self.recorder.summaries(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.recorder.summaries(), [(A, "junk", 7)])
        self.assertEqual(self.limiter.suppressed_total, 7)

    def test_table_and_timer_are_gone_after_a_quiet_window(self) -> None:
        """The window's timer is armed by the first event and nothing is left once it fired."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.limiter.event(A, "junk", "junk")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.limiter), 0)
        self.assertTrue(self.limiter.event(A, "junk", "junk"), "a new window, a new burst")

    def test_peers_past_the_limit_share_one_entry(self) -> None:
        """Past max_peers distinct peers in a window, the others are summed under one name."""
        for peer in (A, B, ("10.0.0.3", 1), ("10.0.0.4", 1)):
            for _ in range(4):
                self.limiter.event(peer, "junk", "junk from {peer}")
        self.clock.advance(10)
        self.assertEqual(
            sorted(self.recorder.summaries(), key=str),
            sorted([(A, "junk", 1), (B, "junk", 1), (OTHER_PEERS, "junk", 5)], key=str),
        )

    def test_stop_writes_the_summaries(self) -> None:
        """Stopping cancels the timer and writes what was held back."""
        for _ in range(5):
            self.limiter.event(A, "junk", "junk")
        self.limiter.stop()
        self.assertEqual(self.recorder.summaries(), [(A, "junk", 2)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_arguments_checked(self) -> None:
        """A negative burst, an empty window or no peer at all is refused."""
        for kwargs in ({"burst": -1}, {"window": 0}, {"max_peers": 0}):
            self.assertRaises(ValueError, PeerLogLimiter, self.clock, Logger(), **kwargs)
