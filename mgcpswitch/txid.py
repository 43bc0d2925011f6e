# -*- test-case-name: tests.test_txid -*-
"""
Transaction-id arithmetic and allocation (RFC 3435 §3.2.1.2, §3.5.2).

Ids run from 1 to 999,999,999 and wrap.  RFC 3435 asks only that ids
towards a gateway be unique (and not reused within 3 minutes of the end
of their previous transaction); we also make them unpredictable, because
an id is the only thing that ties a response to its command: a peer that
could predict the ids of commands sent to another peer could forge their
responses (the layer also drops responses from any address but the one
the command went to, but a source address is easy to forge in UDP).

L{TransactionIdAllocator} draws ids from a I{block} of the id space in
the order of a pseudorandom permutation of that block: a 3-round Feistel
network on the smallest square power of two that holds the block, with
cycle walking back into the block.  Without a key its round functions
are random tables (drawn from C{os.urandom} once per allocator: truly
random functions, so a 3-round network is a pseudorandom permutation,
and an id costs three table lookups); with a key they are keyed BLAKE2b,
and the same key gives the same order.  Every id of a block comes exactly once
before the block is done, so an id comes back only when its block comes
back.  By default the block is the whole space, drawn again and again:
an id is reused only after 999,999,998 others, more than 3 minutes below
5.5 million transactions per second.  The blocks come from an iterator,
so that several call agents sharing gateways can later be handed
disjoint blocks from a shared store (which then promises not to hand a
block out again within T-HIST of its last use); within a block the
order stays unpredictable.

The allocator is an object, the seam the transaction layer takes: tests
use L{mgcpswitch.testing.SequentialIds}, whose ids are predictable on
purpose.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from array import array
from typing import Any, Iterable, Iterator, Protocol

__all__ = ["MAX_TXID", "IdAllocator", "TransactionIdAllocator", "txid_add", "WHOLE_SPACE"]

MAX_TXID = 999_999_999
#: Every transaction id, as a block.
WHOLE_SPACE = range(1, MAX_TXID + 1)
_MAX_HALF = 15  # bits of a half of the Feistel network on the whole space (2 ** 30 > MAX_TXID)


def txid_add(txid: int, delta: int) -> int:
    """C{txid + delta} in the id space 1..MAX_TXID (wrapping)."""
    return (txid - 1 + delta) % MAX_TXID + 1


class IdAllocator(Protocol):
    """What the transaction layer draws its ids from."""

    def allocate(self) -> int:
        """A transaction id in 1..MAX_TXID not handed out recently."""


class TransactionIdAllocator:
    """
    Hands out the ids of each block in an unpredictable order (see the
    module docstring).

    @param key: the secret of the permutation, 16 to 64 bytes: the round
        function is then keyed BLAKE2b, and a given key and blocks give
        the same order every time (a seeded simulated gateway passes one).
        Without a key the round functions are tables of random values,
        drawn once (three tables of 2 bytes per value of a half: 192 KB),
        so that an id costs three table lookups: the call agent's hot
        path.  Either way every block is drawn in the same order again and
        again, as with the same key.
    @param blocks: the blocks to draw from, in turn: ranges within
        1..MAX_TXID (default: the whole space, for ever).
    """

    ROUNDS = 3  # a 3-round Feistel network of a PRF is a pseudorandom permutation (Luby-Rackoff)

    def __init__(self, key: bytes | None = None, blocks: Iterable[range] | None = None) -> None:
        self._rounds: tuple[Any, ...] = ()
        self._tables: tuple[array[int], ...] = ()
        if key is not None:
            if not 16 <= len(key) <= 64:
                raise ValueError("the key needs 16 to 64 bytes")
            # One keyed hash per round; each use copies it, which skips
            # hashing the key block again.
            self._rounds = tuple(
                hashlib.blake2b(key=key, digest_size=8, person=b"mgcp-txid-%d" % r) for r in range(self.ROUNDS)
            )
        else:
            # Unkeyed: per round, a random value for each value of a half
            # (of at most 15 bits; masked to the block's half when used).
            self._tables = tuple(array("H", os.urandom(2 << _MAX_HALF)) for _ in range(self.ROUNDS))
        self._blocks: Iterator[range] = iter(blocks) if blocks is not None else itertools.repeat(WHOLE_SPACE)
        self._block = WHOLE_SPACE
        self._next = self._size = 0  # no block yet: the first allocate takes one
        self._half = self._mask = 0

    def _take_block(self) -> None:
        try:
            block = next(self._blocks)
        except StopIteration:
            raise RuntimeError("no transaction id block left") from None
        if block.step != 1 or not block or block.start < 1 or block.stop > MAX_TXID + 1:
            raise ValueError(f"bad transaction id block {block!r}")
        self._block = block
        self._size = len(block)
        self._next = 0
        bits = max(2, (self._size - 1).bit_length())
        self._half = (bits + 1) // 2
        self._mask = (1 << self._half) - 1

    # One pass of the 3-round Feistel network on [0, 4 ** half):
    # (l, r) -> (r, l ^ F0(r)) -> ... ; halves of at most 15 bits (the
    # whole space fits in 30), so two bytes carry each.

    def _permute_blake2b(self, x: int) -> int:
        half, mask = self._half, self._mask
        left, right = x >> half, x & mask
        for base in self._rounds:
            h = base.copy()
            h.update(right.to_bytes(2, "little"))
            left, right = right, left ^ (int.from_bytes(h.digest(), "little") & mask)
        return (left << half) | right

    def allocate(self) -> int:
        x = self._next
        if x >= self._size:
            self._take_block()
            x = 0
        self._next = x + 1
        size = self._size
        if self._tables:  # the pass unrolled, on the tables (the hot path: no call)
            half, mask = self._half, self._mask
            t0, t1, t2 = self._tables
            while True:
                r0 = x & mask
                r1 = (x >> half) ^ (t0[r0] & mask)
                r2 = r0 ^ (t1[r1] & mask)
                x = (r2 << half) | (r1 ^ (t2[r2] & mask))
                if x < size:  # else cycle walking: a permutation of [0, size) too
                    return self._block.start + x
        x = self._permute_blake2b(x)
        while x >= size:
            x = self._permute_blake2b(x)
        return self._block.start + x

    @property
    def block(self) -> range:
        """The block ids are drawn from now."""
        return self._block
