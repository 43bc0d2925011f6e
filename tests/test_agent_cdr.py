"""
CDRs in SQLite through twisted.enterprise.adbapi (a real database file in
the test's temporary directory, a real thread pool), batched.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from mgcpswitch.agent.cdr import SQLiteCDRWriter
from mgcpswitch.agent.model import CallEnded, CallRecord, CallStarted, ReleaseCause
from mgcpswitch.interfaces import ICallObserver


def record(n: int, cause: ReleaseCause = ReleaseCause.NORMAL) -> CallRecord:
    return CallRecord(
        call_id=f"c{n}", caller="1001", callee="2003", caller_endpoint="aaln/1@rgw1",
        callee_endpoint="aaln/3@rgw2", caller_connection="A1", callee_connection="B2",
        codec="PCMU", start=100.0 + n, answer=101.0 + n, end=110.0 + n, cause=cause,
        caller_stats={"PS": 5, "OS": 800}, callee_stats={"PS": 4},
    )


class SQLiteCDR(TestCase):
    timeout = 30

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="cdr.")
        self.addCleanup(lambda: __import__("shutil").rmtree(directory, ignore_errors=True))
        self.path = os.path.join(directory, "cdr.sqlite")
        self.clock = Clock()
        self.writer = SQLiteCDRWriter(self.clock, self.path, batch_size=3, flush_interval=1.0)
        self.writer.startService()
        self.addCleanup(lambda: self.writer.stopService() if self.writer.running else None)

    def test_interface(self) -> None:
        """The writer is an ICallObserver."""
        verifyObject(ICallObserver, self.writer)

    @inlineCallbacks
    def test_batches_and_reads_back(self) -> Any:
        """Records wait for a batch (size or interval) and are then all on disk."""
        self.writer.call_event(CallStarted(None))  # ignored: only ended calls make records
        for n in range(2):
            self.writer.call_event(CallEnded(None, record(n)))
        self.assertEqual(self.writer.written, 0)
        self.clock.advance(1.0)  # the interval flushes the two
        rows = yield self.writer.records()
        self.assertEqual([r["call_id"] for r in rows], ["c0", "c1"])
        self.assertEqual(rows[0]["cause"], "normal")
        self.assertEqual(rows[0]["caller_stats"], '{"OS": 800, "PS": 5}')
        for n in range(2, 5):
            self.writer.call_event(CallEnded(None, record(n, ReleaseCause.BUSY)))
        rows = yield self.writer.records()
        self.assertEqual(len(rows), 5)
        self.assertEqual(self.writer.written, 5)

    @inlineCallbacks
    def test_stop_flushes(self) -> Any:
        """Stopping the service writes what is pending, then closes the pool."""
        self.writer.call_event(CallEnded(None, record(7)))
        yield self.writer.stopService()
        with sqlite3.connect(self.path) as db:
            self.assertEqual(db.execute("SELECT call_id, codec FROM cdr").fetchall(), [("c7", "PCMU")])
