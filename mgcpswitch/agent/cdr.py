# -*- test-case-name: tests.test_agent_cdr -*-
"""
Call detail records in SQLite: the C{cdr-sqlite} observer.

An L{ICallObserver} whose every L{CallEnded} event becomes one row of an
L{SQLiteStore} (its C{cdr} table), written in batches on adbapi's thread
pool; stopping the service flushes.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.application.service import IService, Service
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..interfaces import ICallObserver
from .model import CallEnded
from .store import SQLiteStore

__all__ = ["SQLiteCDRWriter"]


@implementer(ICallObserver)
class SQLiteCDRWriter(Service):
    name = "cdr-sqlite"

    def __init__(
        self, clock: IReactorTime, path: str, batch_size: int = 200, flush_interval: float = 1.0,
        pool: Optional[adbapi.ConnectionPool] = None,
    ) -> None:
        self.store = SQLiteStore(clock, path, batch_size, flush_interval, pool)
        self.path = path

    @property
    def written(self) -> int:
        return self.store.written

    def call_event(self, event: Any) -> None:
        if isinstance(event, CallEnded):
            self.store.call_ended(event.record)

    def flush(self) -> Deferred[None]:
        """Write what is pending; fires when it is on disk."""
        return self.store.flush()

    def records(self) -> Deferred[list[dict[str, Any]]]:
        """Every CDR, oldest first (for tests and tools)."""
        return self.store.records()

    def startService(self) -> None:  # noqa: N802
        super().startService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        IService(self.store).startService()

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        return self.store.stopService()
