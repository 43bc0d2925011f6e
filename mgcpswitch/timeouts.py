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
from itertools import count
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["TimeoutQueue", "Timeout"]


class Timeout:
    """A handle: C{cancel()} it, or let it fire."""

    __slots__ = ("deadline", "args", "_pending", "_key")

    def __init__(self, deadline: float, args: tuple[Any, ...], pending: dict[int, Timeout], key: int) -> None:
        self.deadline = deadline
        self.args = args
        self._pending = pending
        self._key = key

    @property
    def active(self) -> bool:
        return self._key in self._pending

    def cancel(self) -> None:
        self._pending.pop(self._key, None)
        self.args = ()  # the holder of the handle may be one of them


class TimeoutQueue:
    """
    Timeouts of C{delay} seconds on C{clock}: L{add} arms one that calls
    C{expired(*args)} unless cancelled first.

    The FIFO holds C{(deadline, key)} tuples of numbers, which the garbage
    collector does not track, and the live handles sit in a dict by key: a
    cancelled handle leaves at once with its arguments.  A call agent
    cancels almost every no-answer timeout; when the FIFO held the handles,
    each answered call stayed alive, and in every full collection, for the
    whole delay (60 s x the call rate).
    """

    def __init__(self, clock: IReactorTime, delay: float, expired: Callable[..., Any]) -> None:
        self._clock = clock
        self.delay = delay
        self._expired = expired
        self._queue: deque[tuple[float, int]] = deque()
        self._pending: dict[int, Timeout] = {}
        self._keys = count()
        self._timer: Optional[IDelayedCall] = None

    def add(self, *args: Any) -> Timeout:
        key = next(self._keys)
        deadline = self._clock.seconds() + self.delay
        timeout = self._pending[key] = Timeout(deadline, args, self._pending, key)
        self._queue.append((deadline, key))
        if self._timer is None:
            self._timer = self._clock.callLater(self.delay, self._fire)
        return timeout

    def _fire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        queue = self._queue
        pending = self._pending
        while queue and queue[0][0] <= now + 1e-9:
            timeout = pending.pop(queue.popleft()[1], None)
            if timeout is not None:
                self._expired(*timeout.args)
        while queue and queue[0][1] not in pending:
            queue.popleft()
        if queue:
            self._timer = self._clock.callLater(max(queue[0][0] - now, 0.0), self._fire)

    def stop(self) -> None:
        """Cancel everything (shutdown)."""
        self._pending.clear()
        self._queue.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def __len__(self) -> int:
        return len(self._pending)
