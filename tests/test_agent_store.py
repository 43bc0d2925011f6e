"""
The store seam: what call control records at its stable points (a gateway
registered, a call answered, a call ended), in memory and in a real SQLite
file through adbapi's thread pool, in batches.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from mgcpswitch.agent.model import (
    CallCheckpoint,
    CallRecord,
    GatewayRecord,
    GatewayState,
    LegCheckpoint,
    ReleaseCause,
)
from mgcpswitch.agent.store import MemoryStore, SQLiteStore
from mgcpswitch.interfaces import IStore

from .support.switch import Switch


def checkpoint(n: int) -> CallCheckpoint:
    return CallCheckpoint(
        call_id=f"c{n}", dialled="2003", started=100.0 + n, answered=101.0 + n,
        legs=(
            LegCheckpoint("aaln/1@rgw1", True, f"A{n}", "sendrecv"),
            LegCheckpoint("aaln/3@rgw2", False, f"B{n}", "sendrecv"),
        ),
    )


def record(n: int) -> CallRecord:
    return CallRecord(
        call_id=f"c{n}", caller="1001", callee="2003", caller_endpoint="aaln/1@rgw1",
        callee_endpoint="aaln/3@rgw2", caller_connection=f"A{n}", callee_connection=f"B{n}",
        codec="PCMU", start=100.0 + n, answer=101.0 + n, end=110.0 + n, cause=ReleaseCause.NORMAL,
    )


GW = GatewayRecord("rgw1", "127.0.0.2", 2427, GatewayState.UP, "restart", 5.0)


class Memory(SynchronousTestCase):
    def test_interface(self) -> None:
        """The in-memory store provides IStore."""
        verifyObject(IStore, MemoryStore())

    def test_checkpoints_come_and_go(self) -> None:
        """A call's checkpoint is kept while it talks; its end drops it and keeps its record."""
        store = MemoryStore(keep=2)
        store.gateway_changed(GW)
        store.call_answered(checkpoint(1))
        state = self.successResultOf(store.load())
        self.assertEqual((state.gateways, state.calls), ((GW,), (checkpoint(1),)))
        for n in (1, 2, 3):
            store.call_ended(record(n))
        state = self.successResultOf(store.load())
        self.assertEqual(state.calls, ())
        self.assertEqual([r.call_id for r in store.records], ["c2", "c3"])  # bounded

    def test_call_control_writes_at_its_stable_points(self) -> None:
        """A real call: registrations when gateways come up, a checkpoint when answered, the record at the end."""
        s = Switch()
        self.addCleanup(s.stop)
        store = s.control.store
        self.assertEqual({g.state for g in store.gateways.values()}, {GatewayState.UP})
        caller = s.phone("1001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2003", gap=0.05)
        s.run(1.0)
        self.assertEqual(store.calls, {})  # ringing: not a stable point yet
        s.phone("2003").off_hook()
        s.run(0.5)
        [saved] = store.calls.values()
        self.assertEqual([(leg.endpoint, leg.originating) for leg in saved.legs],
                         [("aaln/1@rgw1", True), ("aaln/3@rgw2", False)])
        self.assertEqual({leg.connection_id for leg in saved.legs},
                         {c.connection_id for c in caller.connections + s.phone("2003").connections})
        caller.on_hook()
        s.run(0.5)
        self.assertEqual(store.calls, {})
        self.assertEqual([r.call_id for r in store.records], [saved.call_id])


class SQLite(TestCase):
    timeout = 30

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="store.")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "switch.sqlite")
        self.clock = Clock()

    def open(self, **options: Any) -> SQLiteStore:
        store = SQLiteStore(self.clock, self.path, **options)
        store.startService()
        self.addCleanup(lambda: store.stopService() if store.running else None)
        return store

    def test_interface(self) -> None:
        """The SQLite store provides IStore."""
        verifyObject(IStore, SQLiteStore(self.clock, self.path))

    @inlineCallbacks
    def test_batches_by_interval_and_size(self) -> Any:
        """Writes wait for the interval or a full batch; nothing is written per row."""
        store = self.open(batch_size=3, flush_interval=1.0)
        store.call_ended(record(1))
        store.call_ended(record(2))
        self.assertEqual(store.written, 0)
        self.clock.advance(1.0)  # the interval
        rows = yield store.records()
        self.assertEqual([r["call_id"] for r in rows], ["c1", "c2"])
        for n in (3, 4, 5):
            store.call_ended(record(n))  # the third fills the batch
        yield store.flush()
        self.assertEqual(store.written, 5)

    @inlineCallbacks
    def test_a_restarted_agent_loads_what_was_left(self) -> Any:
        """Gateways and talking calls survive a restart of the store; ended calls leave no checkpoint."""
        store = self.open()
        store.gateway_changed(GW)
        store.call_answered(checkpoint(1))
        store.call_answered(checkpoint(2))
        yield store.flush()
        store.call_ended(record(2))  # its checkpoint was written in an earlier batch
        store.call_answered(checkpoint(3))
        store.call_ended(record(3))  # answered and ended within one batch
        yield store.stopService()
        again = self.open()
        state = yield again.load()
        self.assertEqual(state.gateways, (GW,))
        self.assertEqual(state.calls, (checkpoint(1),))
        rows = yield again.records()
        self.assertEqual([r["call_id"] for r in rows], ["c2", "c3"])


class Durability(TestCase):
    """The database is checked at start, and a write it refuses is retried, not dropped (issue 16)."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="store.")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "switch.sqlite")

    def test_unusable_files_are_refused_at_start(self) -> None:
        """A file that is not a database, a corrupt one, or a missing directory: [store] url, at once."""
        from mgcpswitch.agent.store import build_store
        from mgcpswitch.config import StoreSettings
        from mgcpswitch.errors import ConfigError

        text = os.path.join(self.directory, "notes.txt")
        with open(text, "w") as f:
            f.write("these are not the rows you are looking for\n" * 100)
        corrupt = os.path.join(self.directory, "corrupt.sqlite")
        with open(corrupt, "wb") as f:
            f.write(b"SQLite format 3\x00" + b"\xff" * 4000)
        missing = os.path.join(self.directory, "no", "such", "dir", "x.sqlite")
        for path in (text, corrupt, missing):
            with self.assertRaises(ConfigError) as caught:
                build_store(Clock(), StoreSettings(url=f"sqlite:{path}"))
            self.assertEqual(caught.exception.path, ("store", "url"))
            self.assertIn(path, caught.exception.message)
        self.assertIsInstance(build_store(Clock(), StoreSettings(url=f"sqlite:{self.path}")), SQLiteStore)

    @inlineCallbacks
    def test_a_locked_database_delays_rows_without_losing_them(self) -> Any:
        """
        Another process holds the database locked: the batch fails, is
        kept with the rows queued after it, and written once the lock goes.
        """
        import sqlite3

        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        store = SQLiteStore(reactor, self.path, flush_interval=0.05, retry_for=30.0, busy_timeout=0.05)
        store.check()
        store.startService()
        self.addCleanup(lambda: store.stopService() if store.running else None)
        locker = sqlite3.connect(self.path, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")
        for n in range(3):
            store.call_ended(record(n))
        yield deferLater(reactor, 0.6, lambda: None)
        self.assertGreaterEqual(store.stats()["batches_failed"], 1)
        self.assertEqual(store.stats().get("rows_lost", 0), 0)
        store.call_ended(record(3))  # joins the waiting batch
        locker.rollback()
        locker.close()
        yield deferLater(reactor, 1.5, lambda: None)
        rows = yield store.records()
        self.assertEqual([r["call_id"] for r in rows], ["c0", "c1", "c2", "c3"])
        self.assertEqual(store.stats().get("rows_lost", 0), 0)

    @inlineCallbacks
    def test_rows_refused_for_too_long_are_counted_lost(self) -> Any:
        """Past retry_for, a refused batch is given up and its rows counted (for /api/stats and /metrics)."""
        import sqlite3

        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        store = SQLiteStore(reactor, self.path, flush_interval=0.05, retry_for=0.5, busy_timeout=0.05)
        store.check()
        store.startService()
        self.addCleanup(lambda: store.stopService() if store.running else None)
        locker = sqlite3.connect(self.path, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")
        self.addCleanup(locker.close)
        store.call_ended(record(1))
        store.call_ended(record(2))
        yield deferLater(reactor, 2.0, lambda: None)
        self.assertEqual(store.stats()["rows_lost"], 2)
        self.assertEqual(store.stats()["cdrs_lost"], 2)
