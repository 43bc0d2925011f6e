# -*- test-case-name: tests.test_gateway_faults -*-
"""
The gateway's timers: every delayed call goes through one L{Timers}, so
that stopping the gateway cancels them all (tests check that the clock has
no delayed call left), and a fired or cancelled call leaves the table at
once.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Timers"]


class Timers:
    """C{callLater} on the injected clock, remembered until it fires or is cancelled."""

    __slots__ = ("_clock", "_calls")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._calls: set[IDelayedCall] = set()

    def call_later(self, delay: float, f: Callable[..., Any], *args: Any) -> IDelayedCall:
        calls = self._calls
        call: IDelayedCall

        def fire() -> None:
            calls.discard(call)
            f(*args)

        call = self._clock.callLater(delay, fire)
        calls.add(call)
        return call

    def cancel(self, call: IDelayedCall | None) -> None:
        if call is not None:
            self._calls.discard(call)
            if call.active():
                call.cancel()

    def cancel_all(self) -> None:
        calls = list(self._calls)
        self._calls.clear()
        for call in calls:
            if call.active():
                call.cancel()

    def __len__(self) -> int:
        return len(self._calls)
