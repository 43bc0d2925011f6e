# -*- test-case-name: tests.test_ratelog -*-
"""
Logging of what peers send wrong, limited per peer.

A peer that sends garbage (malformed datagrams, responses to commands it
was never sent) must not be able to fill the disk: 200,000 malformed
datagrams at 5,000 a second once wrote 39 MB of log, one line each.
L{PeerLogLimiter} logs the first C{burst} events of each kind from each
peer in a window of C{window} seconds, counts the rest, and when the
window ends writes one summary line per peer and kind that went over.
The counters the caller keeps stay exact; only the log lines are limited.

The window runs on the injected clock: one delayed call, armed by the
first event after a quiet spell, and the table is emptied when it fires,
so nothing outlives a quiet window.  At most C{max_peers} peers are told
apart in one window; beyond that, events are summed under one entry, so
a flood of forged source addresses cannot grow the table either.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["PeerLogLimiter"]

#: The table entry that sums the peers past C{max_peers} in a window.
OTHER_PEERS = "other peers"


class _Tally:
    __slots__ = ("logged", "suppressed")

    def __init__(self) -> None:
        self.logged = 0
        self.suppressed = 0


class PeerLogLimiter:
    """
    At most C{burst} log lines per peer and kind of event in C{window}
    seconds, then one summary line (see the module docstring).

    @param clock: the only clock.
    @param log: where the lines go.
    @param burst: events logged one by one per peer and kind in a window
        (0: none, only summaries).
    @param window: seconds a window lasts.
    @param max_peers: peers told apart in one window.
    """

    def __init__(self, clock: IReactorTime, log: Logger, burst: int = 5, window: float = 60.0,
                 max_peers: int = 1024) -> None:
        if burst < 0 or window <= 0 or max_peers < 1:
            raise ValueError("need burst >= 0, window > 0 and max_peers >= 1")
        self._clock = clock
        self._log = log
        self.burst = burst
        self.window = window
        self.max_peers = max_peers
        self._tallies: dict[tuple[Any, str], _Tally] = {}
        self._peers: set[Any] = set()
        self._timer: IDelayedCall | None = None
        self.suppressed_total = 0

    def event(self, peer: Any, kind: str, format: str, **fields: Any) -> bool:
        """
        One event of C{kind} from C{peer}: logged at info level with
        C{format} and C{fields} (plus C{peer}) unless this peer's burst for
        this kind is spent in the current window.  Returns whether it was
        logged.
        """
        if peer not in self._peers:
            if len(self._peers) >= self.max_peers:
                peer = OTHER_PEERS
            self._peers.add(peer)
        key = (peer, kind)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
            if self._timer is None:
                self._timer = self._clock.callLater(self.window, self._window_ended)
        if tally.logged < self.burst:
            tally.logged += 1
            self._log.info(format, peer=peer, **fields)
            return True
        tally.suppressed += 1
        self.suppressed_total += 1
        return False

    def __len__(self) -> int:
        """Peer and kind pairs counted in the current window."""
        return len(self._tallies)

    def _window_ended(self) -> None:
        self._timer = None
        self._summarise()

    def _summarise(self) -> None:
        tallies, self._tallies = self._tallies, {}
        self._peers = set()
        for (peer, kind), tally in tallies.items():
            if tally.suppressed:
                self._log.info(
                    "{count} more {kind} from {peer} not logged in the last {window} s",
                    count=tally.suppressed, kind=kind, peer=peer, window=self.window,
                )

    def stop(self) -> None:
        """Cancel the timer and write the summaries now (nothing is left pending)."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        self._summarise()
