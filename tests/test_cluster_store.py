"""
The PostgreSQL store against a real, throwaway PostgreSQL server: the same
contract as the SQLite store (batches, load, CDRs), writes conditional on
the cluster's epoch, and bounded retries across a server restart.  Timers run on a task.Clock; the database work
runs for real in the session's thread.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from dataclasses import replace
from typing import Any

import psycopg
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from mgcpswitch.agent.model import (
    GatewayRecord,
    GatewayState,
    LegCheckpoint,
    LineRecord,
    LineServices,
)
from mgcpswitch.agent.store import SQLiteStore
from mgcpswitch.cluster.db import Session, StaleEpoch, check_epoch, ensure_schema
from mgcpswitch.cluster.store import (
    STORE_SETTINGS,
    PostgresStore,
    checkpoint_json,
    gateway_json,
)
from mgcpswitch.interfaces import IStore

from .support.postgres import PostgresCase
from .test_agent_store import GW, checkpoint, record


class StoreCase(PostgresCase, TestCase):
    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        self.refused: list[int] = []
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            ensure_schema(connection)

    def session(self, name: str = "store") -> Session:
        session = Session(reactor, self.dsn, name, STORE_SETTINGS, on_connect=ensure_schema)
        self.addCleanup(session.close)
        return session

    def open(self, session: Session | None = None, **options: Any) -> PostgresStore:
        store = PostgresStore(self.clock, session or self.session(), on_refused=self.refused.append, **options)
        store.startService()
        return store

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.server.query(self.dsn, sql)

    def take_over(self) -> int:
        """What a takeover does to the epoch row (the leadership's part, done by hand here)."""
        [(epoch,)] = self.rows("UPDATE cluster_leader SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch")
        return int(epoch)


class Shapes(SynchronousTestCase):
    def test_the_json_stored_is_the_models(self) -> None:
        """The store's hand-made JSON (cheaper than asdict) is what the models' to_json gives, field for field."""
        self.assertEqual(gateway_json(GW), GW.to_json())
        self.assertEqual(checkpoint_json(checkpoint(7)), checkpoint(7).to_json())
        transferred = replace(checkpoint(7), codec="PCMA", legs=(
            LegCheckpoint("aaln/1@rgw1", True, "A7", "sendrecv", call_id="c6"),))
        self.assertEqual(checkpoint_json(transferred), transferred.to_json())


class Contract(StoreCase):
    """What the SQLite store does, the PostgreSQL store does."""

    def test_interface(self) -> None:
        """The PostgreSQL store provides IStore."""
        verifyObject(IStore, self.open())

    @inlineCallbacks
    def test_batches_by_interval_and_size(self) -> Any:
        """Writes wait for the interval or a full batch; nothing is written per row."""
        store = self.open(batch_size=5, flush_interval=1.0)
        store.call_ended(record(1))  # a CDR and the deletion of a checkpoint: two rows
        store.call_ended(record(2))
        yield store._session.drained()
        self.assertEqual((store.written, store.batches), (0, 0))
        self.clock.advance(1.0)  # the interval
        yield store._session.drained()
        self.assertEqual((store.written, store.batches), (2, 1))
        for n in (3, 4, 5):
            store.call_ended(record(n))  # the sixth row fills the batch
        yield store._session.drained()
        self.assertEqual((store.written, store.batches), (5, 2))
        rows = yield store.records()
        self.assertEqual([r["call_id"] for r in rows], ["c1", "c2", "c3", "c4", "c5"])

    @inlineCallbacks
    def test_same_state_as_sqlite(self) -> Any:
        """
        One sequence of registrations, answers and ends (some within one
        batch, some across batches) leaves the same loaded state and the
        same CDRs in SQLite and in PostgreSQL.
        """
        directory = tempfile.mkdtemp(prefix="store.")
        self.addCleanup(shutil.rmtree, directory, True)
        sqlite = SQLiteStore(self.clock, os.path.join(directory, "switch.sqlite"))
        sqlite.startService()
        self.addCleanup(lambda: sqlite.stopService() if sqlite.running else None)
        postgres = self.open()
        down = GatewayRecord("rgw1", "127.0.0.2", 2427, GatewayState.DOWN, None, None)
        forwarded = replace(record(4), forwarded_from="aaln/2@rgw1", transferred_by="aaln/4@rgw1",
                            related=("c1", "c2"))
        for store in (sqlite, postgres):
            store.gateway_changed(GW)
            store.line_changed(LineRecord("aaln/1@rgw1", LineServices(dnd=True)))
            store.call_answered(checkpoint(1))
            store.call_answered(checkpoint(2))
            yield store.flush()
            store.call_ended(record(2))  # its checkpoint was written in an earlier batch
            store.call_answered(checkpoint(3))
            store.call_ended(record(3))  # answered and ended within one batch
            store.gateway_changed(down)
            store.gateway_changed(GW)  # the last registration wins
            store.line_changed(LineRecord("aaln/1@rgw1", LineServices(forward_busy="2005", name="Ada")))
            store.line_changed(LineRecord("aaln/2@rgw1", LineServices(message_waiting=True)))
            store.call_answered(replace(checkpoint(4), codec="PCMA"))
            store.call_ended(forwarded)
        sqlite_state = yield sqlite.load()
        postgres_state = yield postgres.load()
        self.assertEqual(postgres_state, sqlite_state)
        self.assertEqual((postgres_state.gateways, postgres_state.calls), ((GW,), (checkpoint(1),)))
        self.assertEqual(postgres_state.lines, (
            LineRecord("aaln/1@rgw1", LineServices(forward_busy="2005", name="Ada")),
            LineRecord("aaln/2@rgw1", LineServices(message_waiting=True)),
        ))
        sqlite_rows = yield sqlite.records()
        postgres_rows = yield postgres.records()
        self.assertEqual(postgres_rows, sqlite_rows)
        self.assertEqual([r["call_id"] for r in postgres_rows], ["c2", "c3", "c4"])
        self.assertEqual(
            (postgres_rows[-1]["forwarded_from"], postgres_rows[-1]["transferred_by"], postgres_rows[-1]["related"]),
            ("aaln/2@rgw1", "aaln/4@rgw1", "c1 c2"),
        )

    @inlineCallbacks
    def test_a_restarted_agent_loads_what_was_left(self) -> Any:
        """A new store on a new session loads what the stopped one wrote."""
        store = self.open()
        store.gateway_changed(GW)
        store.call_answered(checkpoint(1))
        yield store.stopService()  # flushes
        again = self.open(self.session("again"))
        state = yield again.load()
        self.assertEqual((state.gateways, state.calls), ((GW,), (checkpoint(1),)))


class Epochs(StoreCase):
    """An active's writes are conditional on its epoch."""

    @inlineCallbacks
    def test_a_stale_active_is_refused_and_told(self) -> Any:
        """After a takeover, the old epoch's batch writes nothing, is counted, and the store says so."""
        store = self.open()
        store.epoch = self.take_over()  # this agent is active at epoch 1
        store.call_answered(checkpoint(1))
        yield store.flush()
        self.assertEqual(self.rows("SELECT call_id, epoch FROM calls"), [("c1", 1)])
        self.take_over()  # another agent: epoch 2
        store.call_ended(record(1))
        store.gateway_changed(GW)
        yield store.flush()
        self.assertEqual(self.rows("SELECT call_id FROM calls"), [("c1",)])  # not deleted
        self.assertEqual(self.rows("SELECT count(*) FROM cdr"), [(0,)])
        self.assertEqual((store.refused_rows, store.lost_rows, self.refused), (3, 0, [1]))

    @inlineCallbacks
    def test_line_services_are_conditional_too(self) -> Any:
        """A line's services are written by the active of the current epoch only."""
        store = self.open()
        store.epoch = self.take_over()
        store.line_changed(LineRecord("aaln/1@rgw1", LineServices(dnd=True, forward_always="2003")))
        yield store.flush()
        self.take_over()
        store.line_changed(LineRecord("aaln/1@rgw1", LineServices()))
        yield store.flush()
        self.assertEqual((store.refused_rows, self.refused), (1, [1]))
        state = yield store.load()
        self.assertEqual(state.lines, (LineRecord("aaln/1@rgw1", LineServices(dnd=True, forward_always="2003")),))

    def test_a_takeover_waits_for_a_write_in_flight(self) -> None:
        """
        The epoch check keeps the epoch row locked until the write commits:
        a takeover cannot slip in between; after it, the old epoch is refused.
        """
        with psycopg.connect(self.dsn, autocommit=True) as writer, psycopg.connect(self.dsn, autocommit=True) as rival:
            ensure_schema(writer)
            rival.execute("SET lock_timeout = '100ms'")
            with writer.transaction():
                check_epoch(writer, 0)
                with self.assertRaises(psycopg.errors.LockNotAvailable):
                    rival.execute("UPDATE cluster_leader SET epoch = epoch + 1 WHERE id = 1")
            rival.execute("UPDATE cluster_leader SET epoch = epoch + 1 WHERE id = 1")
            with self.assertRaises(StaleEpoch):
                with writer.transaction():
                    check_epoch(writer, 0)


class Outages(StoreCase):
    """The server goes away and comes back: batches are retried, with a bound."""

    @inlineCallbacks
    def test_a_restart_under_load_loses_nothing(self) -> Any:
        """
        A batch in flight when the server stops, and every row queued while
        it is down, are written once it is back: counted, none lost.
        """
        store = self.open(batch_size=50)
        store.gateway_changed(GW)
        for n in range(500):
            store.call_answered(checkpoint(n))
        # Ten batches of fifty were handed to the session; stop the server
        # under them (fast shutdown: sessions ended, transactions rolled back).
        self.server.stop()
        for n in range(500):
            store.call_ended(record(n))  # queued while the server is down
        yield store._session.drained()  # the batch in flight is settled,
        yield store._session.drained()  # and the next one was tried
        self.assertGreater(store.failures, 0)
        self.server.start()
        done = store.flush()
        while not done.called:  # each retry waits on the clock
            self.clock.advance(store.max_retry_delay)
            yield store._session.drained()
        self.assertEqual(store.lost_rows, 0)
        self.assertEqual(self.rows("SELECT count(*) FROM cdr"), [(500,)])
        self.assertEqual(self.rows("SELECT count(*) FROM calls"), [(0,)])
        self.assertEqual(self.rows("SELECT count(*) FROM gateways"), [(1,)])
        self.assertEqual(store.pending, 0)

    @inlineCallbacks
    def test_retries_are_bounded_and_lost_rows_counted(self) -> Any:
        """With the server gone for good, a batch is tried max_attempts times, then counted as lost."""
        store = self.open(max_attempts=3)
        self.server.stop()
        self.addCleanup(self.server.start)
        store.call_ended(record(1))
        done = store.flush()
        while not done.called:
            yield store._session.drained()
            self.clock.advance(store.max_retry_delay)
        self.assertEqual((store.failures, store.lost_rows, store.written), (3, 2, 0))
        [logged] = self.flushLoggedErrors(psycopg.OperationalError)  # the loss is logged as an error

    @inlineCallbacks
    def test_cdrs_waiting_for_the_server_are_bounded(self) -> Any:
        """While the server is away, CDRs beyond max_pending are dropped and counted as lost."""
        store = self.open(max_pending=3, batch_size=1000)
        self.server.stop()
        for n in range(5):
            store.call_ended(record(n))
        self.assertEqual(store.lost_rows, 2)
        self.server.start()
        yield store.flush()
        self.assertEqual(self.rows("SELECT count(*) FROM cdr"), [(3,)])

    @inlineCallbacks
    def test_a_crashed_server_comes_back_with_what_was_committed(self) -> Any:
        """After an immediate shutdown (a crash), what the store said was written is there."""
        store = self.open()
        for n in range(20):
            store.call_ended(record(n))
        yield store.flush()
        self.server.stop(signal.SIGQUIT)
        self.server.start()
        rows = yield store.records()
        self.assertEqual(len(rows), 20)
