# -*- test-case-name: tests.test_cluster_store -*-
"""
L{PostgresStore}: the store seam (L{IStore}) in PostgreSQL, for agents
that share their state.

It keeps L{SQLiteStore}'s contract (rows queued, written in batches every
C{flush_interval} seconds or C{batch_size} rows; C{load} returns the
gateways and the talking calls; CDRs) and adds what a cluster needs:

- B{Writes conditional on an epoch.}  While C{epoch} is set (the cluster
  service sets it when its agent becomes active), each batch first reads
  the cluster's epoch row C{FOR SHARE} in its transaction: a takeover
  (which updates that row) waits for the batches in flight, and a batch
  of an older epoch is refused (L{StaleEpoch}); the store then tells
  C{on_refused} and counts the rows as refused.
- B{Retries with a bound.}  A batch that fails because the server is gone
  or restarting is tried again after a backoff on the injected clock, with
  the rows queued since folded in, at most C{max_attempts} times; then its
  rows are counted as lost.  Every write is idempotent (upserts, deletes,
  CDRs keyed by CallId), so retrying a batch whose commit was in fact done
  changes nothing.  Batches are written one at a time, in order.
A batch is one transaction of at most six statements whatever its size:
each kind of row travels as one JSON array that PostgreSQL unpacks
(C{jsonb_array_elements}), which measured cheaper for the agent's CPU than
psycopg's C{executemany} or C{unnest} of arrays (docs/FAILOVER.md).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Callable, Optional

import psycopg
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..agent.model import CallCheckpoint, CallRecord, GatewayRecord, LineRecord, StoredState
from ..interfaces import IStore
from .db import Session, StaleEpoch, check_epoch, is_transient

__all__ = ["PostgresStore", "STORE_SETTINGS"]

#: The store session's settings: a commit is durable before the store says
#: so, whatever the server's default; and a writer frozen inside a
#: transaction (SIGSTOP) loses it, and the epoch row it holds FOR SHARE,
#: within the time a standby waits for a frozen active's lease anyway.
STORE_SETTINGS = (
    "SET synchronous_commit = on",
    "SET idle_in_transaction_session_timeout = 1500",
)

_CDR_COLUMNS = (
    "call_id", "caller", "callee", "caller_endpoint", "callee_endpoint", "caller_connection",
    "callee_connection", "codec", "start", "answer", '"end"', "cause", "caller_stats", "callee_stats",
    "forwarded_from", "transferred_by", "related",
)
_CDR_VALUES = (
    ["j->>%d" % i for i in range(8)]
    + ["(j->>%d)::double precision" % i for i in (8, 9, 10)]
    + ["j->>11", "j->12", "j->13", "j->>14", "j->>15", "j->>16"]
)
_INSERT_CDR = (
    f"INSERT INTO cdr ({', '.join(_CDR_COLUMNS)}, epoch) "
    f"SELECT {', '.join(_CDR_VALUES)}, %(epoch)s FROM jsonb_array_elements(%(rows)s::jsonb) AS j "
    "ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _CDR_COLUMNS[1:] + ("epoch",))
)
_UPSERT_CALLS = (
    "INSERT INTO calls (call_id, checkpoint, epoch) "
    "SELECT j->>0, j->1, %(epoch)s FROM jsonb_array_elements(%(rows)s::jsonb) AS j "
    "ON CONFLICT (call_id) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, epoch = EXCLUDED.epoch"
)
_DELETE_CALLS = "DELETE FROM calls WHERE call_id = ANY(%(ids)s)"
_UPSERT_GATEWAYS = (
    "INSERT INTO gateways (name, record, epoch) "
    "SELECT j->>0, j->1, %(epoch)s FROM jsonb_array_elements(%(rows)s::jsonb) AS j "
    "ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, epoch = EXCLUDED.epoch"
)
_UPSERT_LINES = (
    "INSERT INTO lines (endpoint, services, epoch) "
    "SELECT j->>0, j->1, %(epoch)s FROM jsonb_array_elements(%(rows)s::jsonb) AS j "
    "ON CONFLICT (endpoint) DO UPDATE SET services = EXCLUDED.services, epoch = EXCLUDED.epoch"
)


# The JSON of what is stored, built by hand: dataclasses.asdict (the
# models' to_json) costs several times more, and this runs for every row.
# A test checks that both agree.


def gateway_json(record: GatewayRecord) -> dict[str, Any]:
    return {
        "name": record.name, "host": record.host, "port": record.port, "state": record.state.value,
        "last_rsip": record.last_rsip, "last_rsip_at": record.last_rsip_at,
    }


def checkpoint_json(checkpoint: CallCheckpoint) -> dict[str, Any]:
    return {
        "call_id": checkpoint.call_id, "dialled": checkpoint.dialled, "started": checkpoint.started,
        "answered": checkpoint.answered, "codec": checkpoint.codec,
        "legs": [
            {"endpoint": leg.endpoint, "originating": leg.originating, "connection_id": leg.connection_id,
             "mode": leg.mode, "call_id": leg.call_id}
            for leg in checkpoint.legs
        ],
    }


def _cdr_row(record: CallRecord) -> list[Any]:
    return [
        record.call_id, record.caller, record.callee, record.caller_endpoint, record.callee_endpoint,
        record.caller_connection, record.callee_connection, record.codec, record.start, record.answer,
        record.end, record.cause.value, record.caller_stats, record.callee_stats,
        record.forwarded_from, record.transferred_by, " ".join(record.related) or None,
    ]


class _Batch:
    """
    What one transaction writes: the frozen values themselves (turned into
    JSON in the session's thread, off the reactor's); C{upto} is the
    store's change count when it was taken.
    """

    __slots__ = ("cdrs", "calls", "ended", "gateways", "lines", "upto")

    def __init__(self) -> None:
        self.cdrs: list[CallRecord] = []
        self.calls: dict[str, CallCheckpoint] = {}
        self.ended: list[str] = []
        self.gateways: dict[str, GatewayRecord] = {}
        self.lines: dict[str, LineRecord] = {}
        self.upto = 0

    def __len__(self) -> int:
        return len(self.cdrs) + len(self.calls) + len(self.ended) + len(self.gateways) + len(self.lines)

    def absorb(self, newer: _Batch) -> None:
        """Fold in rows queued after this batch, as if they had been queued into it."""
        self.gateways.update(newer.gateways)
        self.lines.update(newer.lines)
        for call_id in newer.ended:
            self.calls.pop(call_id, None)
        self.ended.extend(newer.ended)
        self.calls.update(newer.calls)
        self.cdrs.extend(newer.cdrs)

    def write(self, connection: psycopg.Connection[Any], epoch: Optional[int]) -> None:
        """One transaction; the JSON is encoded here, in the session's thread."""
        with connection.transaction():
            check_epoch(connection, epoch)
            if self.gateways:
                rows = [(name, gateway_json(record)) for name, record in self.gateways.items()]
                connection.execute(_UPSERT_GATEWAYS, {"epoch": epoch, "rows": json.dumps(rows)})
            if self.lines:
                rows = [(endpoint, record.services.to_json()) for endpoint, record in self.lines.items()]
                connection.execute(_UPSERT_LINES, {"epoch": epoch, "rows": json.dumps(rows)})
            if self.calls:
                rows = [(call_id, checkpoint_json(checkpoint)) for call_id, checkpoint in self.calls.items()]
                connection.execute(_UPSERT_CALLS, {"epoch": epoch, "rows": json.dumps(rows)})
            if self.ended:
                connection.execute(_DELETE_CALLS, {"ids": self.ended})
            if self.cdrs:
                connection.execute(_INSERT_CDR, {"epoch": epoch, "rows": json.dumps([_cdr_row(r) for r in self.cdrs])})


@implementer(IStore)
class PostgresStore(Service):
    """
    The shared store.  C{epoch} (None outside a cluster) is the epoch the
    writes are conditional on.

    @param session: the PostgreSQL session to write through (not closed by
        the store: its owner closes it).
    @param on_refused: told C{on_refused(epoch)} when the database refused
        a write because C{epoch} is over.
    @param max_attempts: tries of a batch that fails for want of a server.
    @param max_pending: CDRs kept waiting while the server is unreachable;
        more are dropped and counted as lost.
    """

    name = "store-postgresql"
    log = Logger()

    def __init__(
        self, clock: IReactorTime, session: Session, batch_size: int = 200, flush_interval: float = 1.0,
        max_attempts: int = 10, retry_delay: float = 0.1, max_retry_delay: float = 2.0,
        max_pending: int = 100_000, on_refused: Optional[Callable[[int], None]] = None,
    ) -> None:
        self._clock = clock
        self._session = session
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.max_pending = max_pending
        self.on_refused = on_refused
        self.epoch: Optional[int] = None
        self._queue = _Batch()
        self._writing: Optional[_Batch] = None  # in flight, or waiting to be tried again
        self._attempts = 0
        self._timer: Optional[IDelayedCall] = None
        self._retry: Optional[IDelayedCall] = None
        self._queued_changes = 0  # changes queued since the start (a sequence number)
        self._settled_changes = 0  # every change up to this one is written, refused or lost
        self._waiters: list[tuple[int, Deferred[None]]] = []
        # Counters, for tests, benchmarks and the faces.
        self.written = 0  # CDRs written
        self.rows_written = 0
        self.batches = 0  # transactions committed
        self.failures = 0  # attempts that failed and were tried again or given up
        self.lost_rows = 0
        self.lost_cdrs = 0
        self.refused_rows = 0

    # -- IStore ---------------------------------------------------------------

    def gateway_changed(self, record: GatewayRecord) -> None:
        self._queue.gateways[record.name] = record
        self._queued()

    def call_answered(self, checkpoint: CallCheckpoint) -> None:
        self._queue.calls[checkpoint.call_id] = checkpoint
        self._queued()

    def line_changed(self, record: LineRecord) -> None:
        self._queue.lines[record.endpoint.lower()] = record
        self._queued()

    def call_ended(self, record: CallRecord) -> None:
        queue = self._queue
        # The checkpoint may have been written, or may be in a batch whose
        # commit is in doubt: the row is deleted whatever happened to it.
        queue.calls.pop(record.call_id, None)
        queue.ended.append(record.call_id)
        waiting = len(queue.cdrs) + (len(self._writing.cdrs) if self._writing is not None else 0)
        if waiting >= self.max_pending:
            self.lost_rows += 1
            self.lost_cdrs += 1
            self.log.warn("CDR of {call_id} dropped: {count} are waiting for the database",
                          call_id=record.call_id, count=waiting)
        else:
            queue.cdrs.append(record)
        self._queued()

    def flush(self) -> Deferred[None]:
        """Write what is queued; fires when it is written (or refused, or given up: see the counters)."""
        self._cancel_timer()
        if self._settled_changes >= self._queued_changes:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append((self._queued_changes, d))
        self._pump()
        return d

    def load(self) -> Deferred[StoredState]:
        def read(connection: psycopg.Connection[Any]) -> StoredState:
            gateways = connection.execute("SELECT record FROM gateways ORDER BY name").fetchall()
            calls = connection.execute("SELECT checkpoint FROM calls ORDER BY call_id").fetchall()
            lines = connection.execute("SELECT endpoint, services FROM lines ORDER BY endpoint").fetchall()
            return StoredState(
                tuple(GatewayRecord.from_json(row[0]) for row in gateways),
                tuple(CallCheckpoint.from_json(row[0]) for row in calls),
                tuple(LineRecord.from_json(row[0], row[1]) for row in lines),
            )

        return self.flush().addCallback(lambda _: self._session.run(read, retry_stale=True))

    def stats(self) -> dict[str, Any]:
        """The faces' counters, named as L{SQLiteStore.stats} names them, and the cluster's own."""
        waiting = len(self._queue) + (len(self._writing) if self._writing is not None else 0)
        return {
            "kind": "postgresql", "epoch": self.epoch, "waiting": waiting, "rows_written": self.rows_written,
            "batches_written": self.batches, "batches_failed": self.failures, "rows_lost": self.lost_rows,
            "cdrs_lost": self.lost_cdrs, "rows_refused": self.refused_rows,
        }

    # -- beyond IStore ----------------------------------------------------------

    def records(self) -> Deferred[list[dict[str, Any]]]:
        """Every CDR, oldest first, shaped as L{SQLiteStore.records} gives them."""

        def read(connection: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            cursor = connection.execute(f"SELECT {', '.join(_CDR_COLUMNS)} FROM cdr ORDER BY start, call_id")
            rows = []
            for row in cursor.fetchall():
                record = dict(zip((c.strip('"') for c in _CDR_COLUMNS), row))
                for key in ("caller_stats", "callee_stats"):
                    record[key] = json.dumps(record[key], sort_keys=True)
                rows.append(record)
            return rows

        return self.flush().addCallback(lambda _: self._session.run(read, retry_stale=True))

    @property
    def pending(self) -> int:
        """Changes (registrations, answers, ends) queued and not yet written, refused or lost."""
        return self._queued_changes - self._settled_changes

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        return self.flush()

    # -- batching -----------------------------------------------------------------

    def _queued(self) -> None:
        self._queued_changes += 1
        if len(self._queue) >= self.batch_size:
            self._cancel_timer()
            self._pump()  # or, if a batch is in flight, when it is settled
        elif self._timer is None:
            self._timer = self._clock.callLater(self.flush_interval, self._interval)

    def _interval(self) -> None:
        self._timer = None
        self._pump()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _pump(self) -> None:
        """Start the next batch unless one is in flight or waiting for its retry."""
        if self._writing is not None or not len(self._queue):
            return
        batch, self._queue = self._queue, _Batch()
        batch.upto = self._queued_changes
        self._writing = batch
        self._attempt(batch)

    def _attempt(self, batch: _Batch) -> None:
        epoch = self.epoch
        d = self._session.run(partial(batch.write, epoch=epoch))
        d.addCallbacks(self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch, epoch))

    def _written(self, _: None, batch: _Batch) -> None:
        self.batches += 1
        self.rows_written += len(batch)
        self.written += len(batch.cdrs)
        self._settled(batch)

    def _failed(self, failure: Failure, batch: _Batch, epoch: Optional[int]) -> None:
        if isinstance(failure.value, StaleEpoch):
            self.refused_rows += len(batch)
            self.log.warn("{count} rows refused: {error}", count=len(batch), error=failure.value)
            self._tell_refused(failure.value)  # first: whoever waits for the flush finds it fenced
            self._settled(batch)
            return
        self.failures += 1
        self._attempts += 1
        if not is_transient(failure.value) or self._attempts >= self.max_attempts:
            self.lost_rows += len(batch)
            self.lost_cdrs += len(batch.cdrs)
            self.log.failure("{count} rows lost after {attempts} attempts", failure,
                             count=len(batch), attempts=self._attempts)
            self._settled(batch)
            return
        delay = min(self.retry_delay * 2 ** (self._attempts - 1), self.max_retry_delay)
        self.log.info("database unavailable ({error}); {count} rows tried again in {delay:.1f} s",
                      error=str(failure.value).strip(), count=len(batch), delay=delay)
        self._retry = self._clock.callLater(delay, self._try_again)

    def _try_again(self) -> None:
        self._retry = None
        batch = self._writing
        assert batch is not None
        if len(self._queue):
            batch.absorb(self._queue)
            self._queue = _Batch()
            batch.upto = self._queued_changes
        self._attempt(batch)

    def _settled(self, batch: _Batch) -> None:
        self._writing = None
        self._attempts = 0
        settled = self._settled_changes = batch.upto
        ready = [d for upto, d in self._waiters if upto <= settled]
        self._waiters = [(upto, d) for upto, d in self._waiters if upto > settled]
        if self._waiters or len(self._queue) >= self.batch_size:
            self._pump()
        elif len(self._queue) and self._timer is None:
            self._timer = self._clock.callLater(self.flush_interval, self._interval)
        for d in ready:  # last: a waiter may queue or flush again
            d.callback(None)

    def _tell_refused(self, error: StaleEpoch) -> None:
        if self.on_refused is not None:
            self.on_refused(error.epoch)
