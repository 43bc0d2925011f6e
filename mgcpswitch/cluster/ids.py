# -*- test-case-name: tests.test_cluster_ids -*-
"""
Transaction ids and CallIds that no two agents of a cluster share.

A gateway answers a command whose transaction id it has seen recently
from its cache, without executing it (RFC 3435 §3.2.1.2), so ids sent to
one gateway must be unique across every agent that commands it: an agent
that takes over must not reuse an id the old active used.  The cluster
hands out I{blocks}: the transaction-id space 1..999,999,999 cut into
blocks of C{txid_block_size} ids (the first agent's setting, kept in the
database: blocks of two sizes would overlap), handed out in turn by a
cycling sequence, each block to one agent, and not again within
C{reuse_after} seconds of its last hand-out (a handed-out block is also
skipped until every other block has been handed out: with the default
100,000 ids a block comes back after 999,800,000 other ids).

L{IdBlocks} is an iterator of such blocks (C{range}s) that keeps
C{reserve} blocks in hand, drawn ahead off the reactor thread, so that
taking the next block never waits for the database; it is what the
allocator of C{mgcpswitch/txid.py} draws from.  CallIds (and the
requests' X:) need no blocks: a prefix made of the epoch, unique to each
term of each active (L{call_id_prefix}).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterator, Optional

import psycopg
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..txid import MAX_TXID
from .db import SCHEMA_LOCK_KEY, Session, is_transient

__all__ = ["IdBlocks", "IdsExhausted", "call_id_prefix", "ensure_blocks"]


class IdsExhausted(RuntimeError):
    """No transaction-id block in hand (the database has been unreachable for a while)."""


def call_id_prefix(epoch: int) -> str:
    """
    The start of every CallId an active makes during C{epoch}: 12 hex
    digits, fixed width so that no prefix and counter can spell another's
    (a CallId holds up to 32 hex digits, RFC 3435 §3.2.2.4).
    """
    if not 0 <= epoch < 1 << 48:
        raise ValueError(f"epoch {epoch} does not fit in a CallId prefix")
    return f"{epoch:012x}"


def ensure_blocks(connection: psycopg.Connection[Any], txid_block_size: int) -> int:
    """Create the block sequence for the cluster's block size (the first agent's); return that size."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        connection.execute("INSERT INTO cluster_settings VALUES (1, %s) ON CONFLICT DO NOTHING", (txid_block_size,))
        row = connection.execute("SELECT txid_block_size FROM cluster_settings WHERE id = 1").fetchone()
        assert row is not None
        size = int(row[0])
        blocks = MAX_TXID // size
        if blocks < 2:
            raise ValueError(f"a transaction-id block of {size} ids leaves fewer than two blocks")
        connection.execute(
            f"CREATE SEQUENCE IF NOT EXISTS txid_block_seq MINVALUE 0 MAXVALUE {blocks - 1} START 0 CYCLE"
        )
    return size


_DRAW = (
    "INSERT INTO txid_blocks (block, holder, handed_at) VALUES (nextval('txid_block_seq'), %s, now()) "
    "ON CONFLICT (block) DO UPDATE SET holder = EXCLUDED.holder, handed_at = EXCLUDED.handed_at "
    "WHERE txid_blocks.handed_at < now() - make_interval(secs => %s) RETURNING block"
)


class IdBlocks:
    """
    An iterator of transaction-id blocks for agent C{name}, drawn from the
    cluster's database C{reserve} ahead.  C{next()} never waits: it
    raises L{IdsExhausted} when no block is in hand.
    """

    log = Logger()

    def __init__(
        self, clock: IReactorTime, session: Session, name: str, txid_block_size: int = 100_000,
        reserve: int = 2, reuse_after: float = 600.0, retry: float = 1.0,
    ) -> None:
        if reserve < 1:
            raise ValueError("keep at least one block in reserve")
        self._clock = clock
        self._session = session
        self.name = name
        self.requested_size = txid_block_size
        self.size: Optional[int] = None  # the cluster's, once known
        self.reserve = reserve
        self.reuse_after = reuse_after
        self.retry = retry
        self._blocks: deque[range] = deque()
        self._drawing = False
        self._retry_timer: Optional[IDelayedCall] = None
        self._waiters: list[Deferred[None]] = []
        self.handed = 0  # blocks taken by the allocator
        self.drawn = 0  # blocks drawn from the database

    def start(self) -> Deferred[None]:
        """Fires once the reserve is full."""
        if len(self._blocks) >= self.reserve:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        self._refill()
        return d

    @property
    def in_hand(self) -> int:
        return len(self._blocks)

    def __iter__(self) -> Iterator[range]:
        return self

    def __next__(self) -> range:
        if not self._blocks:
            self._refill()
            raise IdsExhausted(f"{self.name}: no transaction-id block in hand (is the database reachable?)")
        block = self._blocks.popleft()
        self.handed += 1
        self._refill()
        return block

    def stop(self) -> None:
        if self._retry_timer is not None and self._retry_timer.active():
            self._retry_timer.cancel()
        self._retry_timer = None

    def _refill(self) -> None:
        if self._drawing or len(self._blocks) >= self.reserve:
            return
        self._drawing = True
        self._session.run(self._draw).addCallbacks(self._drew, self._failed)

    def _draw(self, connection: psycopg.Connection[Any]) -> range:
        """In the session's thread: the next block not handed out within reuse_after."""
        if self.size is None:
            self.size = ensure_blocks(connection, self.requested_size)
        size = self.size
        for _ in range(MAX_TXID // size):
            row = connection.execute(_DRAW, (self.name, self.reuse_after)).fetchone()
            if row is not None:
                return range(1 + row[0] * size, 1 + (row[0] + 1) * size)
        raise IdsExhausted(f"every transaction-id block was handed out within {self.reuse_after:.0f} s")

    def _drew(self, block: range) -> None:
        self._drawing = False
        self.drawn += 1
        self._blocks.append(block)
        if len(self._blocks) >= self.reserve:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)
        self._refill()

    def _failed(self, failure: Failure) -> None:
        self._drawing = False
        if is_transient(failure.value):
            self.log.info("{name}: no transaction-id block yet ({error})", name=self.name,
                          error=str(failure.value).strip())
        else:
            self.log.failure("{name}: drawing a transaction-id block failed", failure, name=self.name)
        self._retry_timer = self._clock.callLater(self.retry, self._retried)

    def _retried(self) -> None:
        self._retry_timer = None
        self._refill()
