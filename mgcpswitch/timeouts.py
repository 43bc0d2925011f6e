# -*- test-case-name: tests.test_timeouts -*-
"""
Many timeouts of one duration, served by one reactor timer.

A call agent arms a timer per call (no answer within 60 s) and cancels
almost all of them.  Each C{callLater} pushes a L{DelayedCall} into the
reactor's heap, whose comparisons are Python code; with tens of thousands
pending (most cancelled, removed lazily), that push showed in profiles.
Timeouts of one fixed duration expire in the order they were armed, so a
FIFO and one timer for its head do the same work in constant time.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["TimeoutQueue", "Timeout"]


class Timeout:
    """A handle: C{cancel()} it, or let it fire."""

    __slots__ = ("deadline", "args", "active")

    def __init__(self, deadline: float, args: tuple[Any, ...]) -> None:
        self.deadline = deadline
        self.args = args
        self.active = True

    def cancel(self) -> None:
        self.active = False


class TimeoutQueue:
    """
    Timeouts of C{delay} seconds on C{clock}: L{add} arms one that calls
    C{expired(*args)} unless cancelled first.
    """

    def __init__(self, clock: IReactorTime, delay: float, expired: Callable[..., Any]) -> None:
        self._clock = clock
        self.delay = delay
        self._expired = expired
        self._queue: deque[Timeout] = deque()
        self._timer: Optional[IDelayedCall] = None

    def add(self, *args: Any) -> Timeout:
        timeout = Timeout(self._clock.seconds() + self.delay, args)
        self._queue.append(timeout)
        if self._timer is None:
            self._timer = self._clock.callLater(self.delay, self._fire)
        return timeout

    def _fire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        queue = self._queue
        while queue and queue[0].deadline <= now + 1e-9:
            timeout = queue.popleft()
            if timeout.active:
                timeout.active = False
                self._expired(*timeout.args)
        while queue and not queue[0].active:
            queue.popleft()
        if queue:
            self._timer = self._clock.callLater(max(queue[0].deadline - now, 0.0), self._fire)

    def stop(self) -> None:
        """Cancel everything (shutdown)."""
        for timeout in self._queue:
            timeout.active = False
        self._queue.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def __len__(self) -> int:
        return sum(1 for timeout in self._queue if timeout.active)
