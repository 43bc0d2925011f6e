# -*- test-case-name: tests.test_agent_cdr -*-
"""
Call detail records in SQLite, through L{twisted.enterprise.adbapi}.

An L{ICallObserver}: each L{CallEnded} event becomes one row.  Rows are
written in batches (every C{flush_interval} seconds or C{batch_size}
records, whichever first), never per message, on adbapi's thread pool so
the reactor never blocks on the disk.  Stopping the service flushes.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from twisted.application.service import Service
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import ICallObserver
from .model import CallEnded, CallRecord

__all__ = ["SQLiteCDRWriter", "SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS cdr (
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
)
"""

_INSERT = (
    "INSERT OR REPLACE INTO cdr (call_id, caller, callee, caller_endpoint, callee_endpoint, "
    "caller_connection, callee_connection, codec, start, answer, end, cause, caller_stats, "
    "callee_stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _row(record: CallRecord) -> tuple[Any, ...]:
    return (
        record.call_id, record.caller, record.callee, record.caller_endpoint,
        record.callee_endpoint, record.caller_connection, record.callee_connection, record.codec,
        record.start, record.answer, record.end, record.cause.value,
        json.dumps(record.caller_stats, sort_keys=True),
        json.dumps(record.callee_stats, sort_keys=True),
    )


@implementer(ICallObserver)
class SQLiteCDRWriter(Service):
    name = "cdr-sqlite"
    log = Logger()

    def __init__(
        self, clock: Any, path: str, batch_size: int = 200, flush_interval: float = 1.0,
        pool: Optional[adbapi.ConnectionPool] = None,
    ) -> None:
        self._clock = clock
        self.path = path
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._pool = pool
        self._pending: list[tuple[Any, ...]] = []
        self._timer: Any = None
        self._flushing: Optional[Deferred[None]] = None
        self.written = 0

    def _get_pool(self) -> adbapi.ConnectionPool:
        if self._pool is None:
            self._pool = adbapi.ConnectionPool(
                "sqlite3", self.path, check_same_thread=False, cp_min=1, cp_max=1,
                cp_openfun=lambda conn: conn.execute(SCHEMA),
            )
        return self._pool

    def call_event(self, event: Any) -> None:
        if not isinstance(event, CallEnded):
            return
        self._pending.append(_row(event.record))
        if len(self._pending) >= self.batch_size:
            self.flush()
        elif self._timer is None:
            self._timer = self._clock.callLater(self.flush_interval, self.flush)

    def flush(self) -> Deferred[None]:
        """Write what is pending; fires when it is on disk."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        rows, self._pending = self._pending, []
        if not rows:
            return self._flushing if self._flushing is not None else succeed(None)

        def write(cursor: Any) -> None:
            cursor.execute(SCHEMA)
            cursor.executemany(_INSERT, rows)

        d = self._get_pool().runInteraction(write)

        def done(result: Any) -> None:
            self.written += len(rows)

        def failed(failure: Any) -> None:
            self.log.failure("cannot write {count} CDRs to {path}", failure, count=len(rows), path=self.path)

        d.addCallbacks(done, failed)
        self._flushing = d
        return d

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()
        d = self.flush()

        def close(_: Any) -> None:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

        return d.addBoth(close)

    def records(self) -> Deferred[list[dict[str, Any]]]:
        """Every CDR, oldest first (for tests and tools)."""

        def read(cursor: Any) -> list[dict[str, Any]]:
            cursor.execute(SCHEMA)
            cursor.execute("SELECT * FROM cdr ORDER BY start, call_id")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

        return self.flush().addCallback(lambda _: self._get_pool().runInteraction(read))
