# -*- test-case-name: tests.test_agent_store -*-
"""
The store seam (L{IStore}): in memory, and in SQLite.

Call control writes at stable points only: a gateway's registration when
it changes, a call's checkpoint when it is answered, its record (CDR) when
it ends.  L{SQLiteStore} queues those and writes them in batches (every
C{flush_interval} seconds or C{batch_size} rows, whichever first) on
adbapi's thread pool, so the reactor never waits for the disk and the hot
path never pays one transaction per row.  The PostgreSQL store of agents
that share their state (L{mgcpswitch.cluster.store}) keeps the same
contract.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, deque
from typing import Any, Optional

from twisted.application.service import Service
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..config import StoreSettings
from ..interfaces import IStore
from ..mgcp import ConnectionMode
from .calls import Call
from .model import (
    CallCheckpoint,
    CallRecord,
    GatewayRecord,
    LegCheckpoint,
    LineRecord,
    StoredState,
)

__all__ = ["MemoryStore", "SQLiteStore", "StoreUnusable", "build_store", "checkpoint", "gateway_record", "SCHEMA"]


#: A mode's text by member: C{.value} of an enum member is a Python-level
#: descriptor call, twice per answered call here.
_MODE_TEXT = {mode: mode.value for mode in ConnectionMode}


def checkpoint(call: Call) -> CallCheckpoint:
    """What the store keeps of a talking call."""
    call_id = call.call_id
    return CallCheckpoint(
        call_id=call_id,
        dialled=call.dialled,
        started=call.started,
        answered=call.answered,
        legs=tuple([
            LegCheckpoint(
                endpoint=str(leg.line.endpoint.name) if leg.line is not None else leg.trunk.endpoint,
                originating=leg.originating,
                connection_id=leg.connection_id,
                mode=_MODE_TEXT[leg.mode] if leg.mode is not None else None,
                call_id=leg.mgcp_call_id if leg.mgcp_call_id != call_id else None,
            )
            for leg in call.legs
        ]),
        codec=call.codec,
    )


def gateway_record(gateway: Any) -> GatewayRecord:
    return GatewayRecord(
        name=gateway.name, host=gateway.address[0], port=gateway.address[1], state=gateway.state,
        last_rsip=gateway.last_rsip, last_rsip_at=gateway.last_rsip_at,
    )


@implementer(IStore)
class MemoryStore:
    """
    A store that lasts as long as the process: the current registrations
    and talking calls, and the last C{keep} records.
    """

    def __init__(self, keep: int = 100) -> None:
        self.gateways: dict[str, GatewayRecord] = {}
        self.calls: dict[str, CallCheckpoint] = {}
        self.lines: dict[str, LineRecord] = {}
        self.records: deque[CallRecord] = deque(maxlen=max(keep, 1))

    def gateway_changed(self, record: GatewayRecord) -> None:
        self.gateways[record.name] = record

    def call_answered(self, checkpoint: CallCheckpoint) -> None:
        self.calls[checkpoint.call_id] = checkpoint

    def call_ended(self, record: CallRecord) -> None:
        self.calls.pop(record.call_id, None)
        self.records.append(record)

    def line_changed(self, record: LineRecord) -> None:
        self.lines[record.endpoint.lower()] = record

    def load(self) -> Deferred[StoredState]:
        return succeed(StoredState(tuple(self.gateways.values()), tuple(self.calls.values()),
                                   tuple(self.lines.values())))

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def stats(self) -> dict[str, Any]:
        return {"kind": "memory", "calls": len(self.calls), "rows_lost": 0}


SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cdr (
    call_id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    callee TEXT,
    caller_endpoint TEXT NOT NULL,
    callee_endpoint TEXT,
    caller_connection TEXT,
    callee_connection TEXT,
    codec TEXT,
    start REAL NOT NULL,
    answer REAL,
    end REAL NOT NULL,
    cause TEXT NOT NULL,
    caller_stats TEXT NOT NULL,
    callee_stats TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS gateways (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS lines (
    endpoint TEXT PRIMARY KEY,
    services TEXT NOT NULL
)""",
)
# Columns added to cdr since its first version, added to older files when opened.
_CDR_COLUMNS = (("forwarded_from", "TEXT"), ("transferred_by", "TEXT"), ("related", "TEXT"))

_INSERT_CDR = (
    "INSERT OR REPLACE INTO cdr (call_id, caller, callee, caller_endpoint, callee_endpoint, "
    "caller_connection, callee_connection, codec, start, answer, end, cause, caller_stats, "
    "callee_stats, forwarded_from, transferred_by, related) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_LINE = "INSERT OR REPLACE INTO lines (endpoint, services) VALUES (?, ?)"
_UPSERT_CALL = "INSERT OR REPLACE INTO calls (call_id, checkpoint) VALUES (?, ?)"
_DELETE_CALL = "DELETE FROM calls WHERE call_id = ?"
_UPSERT_GATEWAY = "INSERT OR REPLACE INTO gateways (name, record) VALUES (?, ?)"


def _cdr_row(record: CallRecord) -> tuple[Any, ...]:
    return (
        record.call_id, record.caller, record.callee, record.caller_endpoint,
        record.callee_endpoint, record.caller_connection, record.callee_connection, record.codec,
        record.start, record.answer, record.end, record.cause.value,
        json.dumps(record.caller_stats, sort_keys=True),
        json.dumps(record.callee_stats, sort_keys=True),
        record.forwarded_from, record.transferred_by, " ".join(record.related) or None,
    )


def _create_schema(cursor: Any) -> None:
    for statement in SCHEMA:
        cursor.execute(statement)
    columns = {row[1] for row in cursor.execute("PRAGMA table_info(cdr)").fetchall()}
    for name, kind in _CDR_COLUMNS:
        if name not in columns:
            cursor.execute(f"ALTER TABLE cdr ADD COLUMN {name} {kind}")


class _Batch:
    """What is queued for the next write."""

    __slots__ = ("cdrs", "calls", "ended", "gateways", "lines")

    def __init__(self) -> None:
        self.cdrs: list[tuple[Any, ...]] = []
        self.calls: dict[str, str] = {}
        self.ended: list[tuple[str]] = []
        self.gateways: dict[str, str] = {}
        self.lines: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.cdrs) + len(self.calls) + len(self.ended) + len(self.gateways) + len(self.lines)

    def rows(self) -> int:
        """Rows of data (CDRs, checkpoints, registrations, lines), not counting deletions."""
        return len(self.cdrs) + len(self.calls) + len(self.gateways) + len(self.lines)

    def merge(self, later: _Batch) -> None:
        """Take the rows queued after this batch (a retry writes both, in order)."""
        self.cdrs += later.cdrs
        for call_id, text in later.calls.items():
            self.calls[call_id] = text
        for ended in later.ended:
            self.calls.pop(ended[0], None)
        self.ended += later.ended
        self.gateways.update(later.gateways)
        self.lines.update(later.lines)


class StoreUnusable(Exception):
    """The store's database cannot be used (not a database, no such directory, ...)."""


@implementer(IStore)
class SQLiteStore(Service):
    """
    The embedded store: one SQLite file, written through adbapi's thread
    pool (one connection: SQLite serialises writers anyway).  A batch the
    database refuses (locked by another process, disk full) is kept and
    retried, with backoff, for C{retry_for} seconds; the rows queued
    meanwhile join it; what is still unwritten then is counted lost.
    """

    name = "store-sqlite"
    log = Logger()

    def __init__(
        self, clock: IReactorTime, path: str, batch_size: int = 200, flush_interval: float = 1.0,
        pool: Optional[adbapi.ConnectionPool] = None, retry_for: float = 60.0,
        busy_timeout: float = 5.0,
    ) -> None:
        """
        @param busy_timeout: how long one write waits for another process's
            lock before it fails (and is retried later).
        """
        self._clock = clock
        self.path = path
        self.busy_timeout = busy_timeout
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_for = retry_for
        self._pool = pool
        self._batch = _Batch()
        self._timer: Optional[IDelayedCall] = None
        self._flushing: Optional[Deferred[None]] = None
        self._failed: Optional[_Batch] = None  # a batch waiting to be written again
        self._failing_since: Optional[float] = None
        self._retry_delay = 0.0
        self.written = 0  # CDRs on disk
        self.counters: Counter[str] = Counter()

    def check(self) -> None:
        """
        Open the database now, in this thread, and make its tables: a file
        that is not an SQLite database, or a directory that does not exist,
        is refused at start (L{StoreUnusable}) rather than at the first write.
        """
        try:
            connection = sqlite3.connect(self.path)
            try:
                _create_schema(connection.cursor())
                connection.execute("SELECT count(*) FROM cdr").fetchone()
                connection.commit()
            finally:
                connection.close()
        except sqlite3.Error as e:
            raise StoreUnusable(f"{self.path}: {e}") from None

    def _get_pool(self) -> adbapi.ConnectionPool:
        if self._pool is None:
            self._pool = adbapi.ConnectionPool(
                "sqlite3", self.path, check_same_thread=False, timeout=self.busy_timeout,
                cp_min=1, cp_max=1, cp_openfun=_create_schema,
            )
        return self._pool

    def _queued(self) -> None:
        if len(self._batch) >= self.batch_size and self._failed is None:
            self.flush()
        elif self._timer is None and self._failed is None:
            self._timer = self._clock.callLater(self.flush_interval, self.flush)

    def gateway_changed(self, record: GatewayRecord) -> None:
        self._batch.gateways[record.name] = json.dumps(record.to_json(), sort_keys=True)
        self._queued()

    def call_answered(self, checkpoint: CallCheckpoint) -> None:
        self._batch.calls[checkpoint.call_id] = json.dumps(checkpoint.to_json(), sort_keys=True)
        self._queued()

    def line_changed(self, record: LineRecord) -> None:
        self._batch.lines[record.endpoint.lower()] = json.dumps(record.services.to_json(), sort_keys=True)
        self._queued()

    def call_ended(self, record: CallRecord) -> None:
        batch = self._batch
        if batch.calls.pop(record.call_id, None) is None:
            batch.ended.append((record.call_id,))
        batch.cdrs.append(_cdr_row(record))
        self._queued()

    def flush(self) -> Deferred[None]:
        """Write what is queued; fires when it is on disk (or, failing, kept for a retry)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        batch, self._batch = self._batch, _Batch()
        if self._failed is not None:
            self._failed.merge(batch)
            batch, self._failed = self._failed, None
        if not len(batch):
            return self._flushing if self._flushing is not None else succeed(None)

        def write(cursor: Any) -> None:
            _create_schema(cursor)
            if batch.gateways:
                cursor.executemany(_UPSERT_GATEWAY, batch.gateways.items())
            if batch.lines:
                cursor.executemany(_UPSERT_LINE, batch.lines.items())
            if batch.calls:
                cursor.executemany(_UPSERT_CALL, batch.calls.items())
            if batch.ended:
                cursor.executemany(_DELETE_CALL, batch.ended)
            if batch.cdrs:
                cursor.executemany(_INSERT_CDR, batch.cdrs)

        d: Deferred[None] = self._get_pool().runInteraction(write)
        d.addCallbacks(self._written, self._write_failed, (batch,), errbackArgs=(batch,))
        self._flushing = d
        return d

    def _written(self, _: Any, batch: _Batch) -> None:
        self.written += len(batch.cdrs)
        self.counters["rows_written"] += batch.rows()
        self.counters["batches_written"] += 1
        self._failing_since = None
        self._retry_delay = 0.0

    def _write_failed(self, failure: Any, batch: _Batch) -> None:
        now = self._clock.seconds()
        self.counters["batches_failed"] += 1
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since >= self.retry_for:
            self.counters["rows_lost"] += batch.rows()
            self.counters["cdrs_lost"] += len(batch.cdrs)
            self.log.error(
                "gave up writing {count} rows to {path} after {seconds} s: {error}",
                count=batch.rows(), path=self.path, seconds=self.retry_for, error=failure.getErrorMessage(),
            )
            self._failing_since = None
            self._retry_delay = 0.0
            return
        self._retry_delay = min(max(self._retry_delay * 2, 0.5), 10.0)
        self.log.warn(
            "cannot write {count} rows to {path} ({error}); again in {delay} s",
            count=len(batch), path=self.path, error=failure.getErrorMessage(), delay=self._retry_delay,
        )
        self._failed = batch
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(self._retry_delay, self.flush)

    def stats(self) -> dict[str, Any]:
        """Rows written, failed batches, rows lost (given up on), rows waiting."""
        waiting = self._batch.rows() + (self._failed.rows() if self._failed is not None else 0)
        return {"kind": "sqlite", "path": self.path, "waiting": waiting, **self.counters}

    def load(self) -> Deferred[StoredState]:
        def read(cursor: Any) -> StoredState:
            _create_schema(cursor)
            cursor.execute("SELECT record FROM gateways ORDER BY name")
            gateways = tuple(GatewayRecord.from_json(json.loads(row[0])) for row in cursor.fetchall())
            cursor.execute("SELECT checkpoint FROM calls ORDER BY call_id")
            calls = tuple(CallCheckpoint.from_json(json.loads(row[0])) for row in cursor.fetchall())
            cursor.execute("SELECT endpoint, services FROM lines ORDER BY endpoint")
            lines = tuple(LineRecord.from_json(row[0], json.loads(row[1])) for row in cursor.fetchall())
            return StoredState(gateways, calls, lines)

        return self.flush().addCallback(lambda _: self._get_pool().runInteraction(read))

    def records(self) -> Deferred[list[dict[str, Any]]]:
        """Every CDR, oldest first (for tests and tools)."""

        def read(cursor: Any) -> list[dict[str, Any]]:
            _create_schema(cursor)
            cursor.execute("SELECT * FROM cdr ORDER BY start, call_id")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

        return self.flush().addCallback(lambda _: self._get_pool().runInteraction(read))

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        d = self.flush()

        def close(_: Any) -> None:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            if self._failed is not None:  # stopping: what is still refused is lost
                self.counters["rows_lost"] += self._failed.rows()
                self.counters["cdrs_lost"] += len(self._failed.cdrs)
                self._failed = None
            if self._pool is not None:
                self._pool.close()
                self._pool = None

        return d.addBoth(close)


def build_store(clock: IReactorTime, settings: StoreSettings) -> IStore:
    """
    The store C{[store]} asks for (a L{mgcpswitch.config.StoreSettings}),
    checked now: an SQLite file that cannot be used is a L{ConfigError}
    naming C{[store] url}.
    """
    from ..errors import ConfigError

    url = settings.url
    if url == "memory":
        return MemoryStore()
    if url.startswith("sqlite:"):
        store = SQLiteStore(clock, url[len("sqlite:"):], settings.batch_size, settings.flush_interval,
                            retry_for=settings.retry_for)
        try:
            store.check()
        except StoreUnusable as e:
            raise ConfigError(("store", "url"), f"cannot use {url!r}: {e}") from None
        return store
    raise ConfigError(("store", "url"), f"{url!r}: a PostgreSQL store is a cluster's (mgcpswitch.tap.build_member)")
