# -*- test-case-name: tests.test_transaction -*-
"""
Transaction-id arithmetic and allocation (RFC 3435 §3.2.1.2, §3.5.2).

Ids run from 1 to 999,999,999 and wrap.  An allocator starts at a random
point on every process start, because a peer remembers the last responses
it sent (osmo-mgw keeps one per endpoint, forever) and would replay a stale
response to a reused id.

RFC 3435 forbids reusing an id within 3 minutes of the end of its previous
transaction.  A sequential allocator reuses an id only after handing out
every other one; at 999,999,998 ids per cycle that takes more than 3
minutes below 5.5 million transactions per second, far beyond one process.
The allocator also skips ids that are still in flight, so a transaction
that outlives a whole cycle cannot collide.  The allocator is an object
so that several call agents sharing gateways can later draw disjoint
blocks from a shared store.
"""

from __future__ import annotations

import random
from typing import Callable, Container

__all__ = ["MAX_TXID", "TransactionIdAllocator", "txid_add"]

MAX_TXID = 999_999_999


def txid_add(txid: int, delta: int) -> int:
    """C{txid + delta} in the id space 1..MAX_TXID (wrapping)."""
    return (txid - 1 + delta) % MAX_TXID + 1


class TransactionIdAllocator:
    """
    Hands out transaction ids in sequence from a random start.

    @param in_use: ids that must be skipped (the transaction layer passes
        its table of pending transactions).
    @param randint: the random source for the start, injectable for tests.
    """

    def __init__(
        self,
        in_use: Container[int] = (),
        randint: Callable[[int, int], int] = random.SystemRandom().randint,
        start: int | None = None,
    ) -> None:
        self._next = start if start is not None else randint(1, MAX_TXID)
        if not 1 <= self._next <= MAX_TXID:
            raise ValueError(f"transaction id {self._next} out of range")
        self._in_use = in_use

    def allocate(self) -> int:
        txid = self._next
        while txid in self._in_use:
            txid = txid + 1 if txid < MAX_TXID else 1
        self._next = txid + 1 if txid < MAX_TXID else 1
        return txid

    def peek(self) -> int:
        """The next id that would be tried (for tests and diagnostics)."""
        return self._next
