# -*- test-case-name: tests.test_cluster_store -*-
"""
PostgreSQL sessions off the reactor thread, and the cluster's schema.

A L{Session} is one PostgreSQL connection used by one worker thread of its
own (psycopg 3's blocking API, which releases the GIL while it waits for
the server): the reactor hands it work and gets a Deferred back, so the
reactor thread never waits for the database.  One thread per session keeps
a session's work in order and pins session state (an advisory lock, SET
parameters) to one connection; a lost connection is dropped, and the next
piece of work connects again.  docs/FAILOVER.md gives the figures that
chose this over psycopg's async API under Twisted's asyncio reactor.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, TypeVar

import psycopg
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool


__all__ = ["Session", "StaleEpoch", "check_epoch", "is_transient", "ensure_schema", "SCHEMA", "LOCK_KEY", "SCHEMA_LOCK_KEY"]

T = TypeVar("T")

#: The session advisory lock whose holder is the active agent ('MGCP').
LOCK_KEY = 0x4D474350
#: The transaction-scoped lock that serialises schema creation between agents.
SCHEMA_LOCK_KEY = 0x4D474351

SCHEMA = (
    # The epoch: bumped by every takeover, checked (FOR SHARE) by every write
    # of an active, so that a takeover waits for the old active's writes in
    # flight and refuses its later ones.
    """CREATE TABLE IF NOT EXISTS cluster_leader (
    id integer PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    holder text,
    taken_at timestamptz
)""",
    "INSERT INTO cluster_leader VALUES (1, 0, NULL, NULL) ON CONFLICT DO NOTHING",
    # The lease, renewed by the active's heartbeat: a row of its own, so that
    # renewals never wait for writes holding the epoch row FOR SHARE.
    """CREATE TABLE IF NOT EXISTS cluster_lease (
    id integer PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    holder text,
    renewed_at timestamptz
)""",
    "INSERT INTO cluster_lease VALUES (1, 0, NULL, NULL) ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS cluster_settings (
    id integer PRIMARY KEY CHECK (id = 1),
    txid_block_size integer NOT NULL CHECK (txid_block_size > 0)
)""",
    """CREATE TABLE IF NOT EXISTS txid_blocks (
    block integer PRIMARY KEY,
    holder text NOT NULL,
    handed_at timestamptz NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS gateways (
    name text PRIMARY KEY,
    record jsonb NOT NULL,
    epoch bigint
)""",
    """CREATE TABLE IF NOT EXISTS calls (
    call_id text PRIMARY KEY,
    checkpoint jsonb NOT NULL,
    epoch bigint
)""",
    """CREATE TABLE IF NOT EXISTS cdr (
    call_id text PRIMARY KEY,
    caller text NOT NULL,
    callee text,
    caller_endpoint text NOT NULL,
    callee_endpoint text,
    caller_connection text,
    callee_connection text,
    codec text,
    start double precision NOT NULL,
    answer double precision,
    "end" double precision NOT NULL,
    cause text NOT NULL,
    caller_stats jsonb NOT NULL,
    callee_stats jsonb NOT NULL,
    forwarded_from text,
    transferred_by text,
    related text,
    epoch bigint
)""",
    """CREATE TABLE IF NOT EXISTS lines (
    endpoint text PRIMARY KEY,
    services jsonb NOT NULL,
    epoch bigint
)""",
)


class StaleEpoch(Exception):
    """A write of an active whose epoch another agent's takeover ended."""

    def __init__(self, epoch: int, current: int) -> None:
        super().__init__(f"epoch {epoch} is over (the cluster is at epoch {current})")
        self.epoch = epoch
        self.current = current


def check_epoch(connection: psycopg.Connection[Any], epoch: Optional[int]) -> None:
    """
    Inside a transaction: refuse it unless C{epoch} is the cluster's (no
    check when it is None: a store not in a cluster).  The row stays
    locked FOR SHARE until the transaction ends, so a takeover cannot
    slip in between the check and the commit.
    """
    if epoch is None:
        return
    row = connection.execute("SELECT epoch FROM cluster_leader WHERE id = 1 FOR SHARE").fetchone()
    current = int(row[0]) if row is not None else 0
    if current != epoch:
        raise StaleEpoch(epoch, current)


def is_transient(error: Optional[BaseException]) -> bool:
    """A failure worth trying again: the server is gone, restarting, or ended our session."""
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


def ensure_schema(connection: psycopg.Connection[Any]) -> None:
    """Create what is missing (agents may start together: one at a time, under a transaction lock)."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        for statement in SCHEMA:
            connection.execute(statement)


class Session:
    """
    One connection to PostgreSQL, used from one worker thread of its own.

    @param reactor: for the worker thread's results (C{callFromThread}).
    @param dsn: a libpq connection string or URL.
    @param settings: C{SET} statements run on every new connection.
    @param on_connect: called in the worker thread with every new
        connection, after C{settings} (schema creation).
    """

    log = Logger()

    def __init__(
        self, reactor: Any, dsn: str, name: str, settings: Sequence[str] = (),
        on_connect: Optional[Callable[[psycopg.Connection[Any]], None]] = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self._reactor = reactor
        self.dsn = dsn
        self.name = name
        self._settings = tuple(settings)
        self._on_connect = on_connect
        self._connect_timeout = connect_timeout
        self._connection: Optional[psycopg.Connection[Any]] = None
        self.connects = 0  # connections made: the first, then one per reconnect
        # Its thread starts with the first piece of work: building a session
        # (twistd's makeService, a test) leaves no thread behind.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"postgres-{name}")
        self._closed = False
        # The thread would keep the process alive after the reactor stops:
        # a session its owner did not close is closed when the reactor
        # shuts down (after the services stopped), as adbapi's pool is.
        self._shutdown: Any = reactor.addSystemEventTrigger("during", "shutdown", self._final_close)

    def run(self, work: Callable[[psycopg.Connection[Any]], T], retry_stale: bool = False) -> Deferred[T]:
        """
        Run C{work(connection)} in the session's thread; its result or
        failure comes back as a Deferred.  With C{retry_stale}, work that
        may safely run twice (reads) is run once more on a new connection
        when a connection made earlier turns out to be dead (the server
        restarted since).
        """
        if self._closed:
            raise RuntimeError(f"the {self.name} session is closed")
        if not self._pool.started:
            self._pool.start()
        return deferToThreadPool(self._reactor, self._pool, self._in_thread, work, retry_stale)

    def _in_thread(self, work: Callable[[psycopg.Connection[Any]], T], retry_stale: bool) -> T:
        connection = self._connection
        reused = connection is not None and not connection.closed and not connection.broken
        if not reused:
            connection = self._connection = self._connect()
        assert connection is not None
        try:
            return work(connection)
        except BaseException as e:
            if not (is_transient(e) or connection.broken):
                raise
            self._drop()
            if not (retry_stale and reused):
                raise
        connection = self._connection = self._connect()
        return work(connection)

    def drained(self) -> Deferred[None]:
        """Fires once the work queued before it is done and its results delivered (it never connects)."""
        if not self._pool.started:
            self._pool.start()
        return deferToThreadPool(self._reactor, self._pool, lambda: None)

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(
            self.dsn, autocommit=True, connect_timeout=max(1, round(self._connect_timeout)),
            application_name=f"mgcpswitch-{self.name}",
            # Over TCP, a server that vanished without a word (a partition)
            # is noticed in seconds, not when the kernel gives up.
            keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=3, tcp_user_timeout=5000,
        )
        try:
            for statement in ("SET client_min_messages = warning",) + self._settings:
                connection.execute(statement)
            if self._on_connect is not None:
                self._on_connect(connection)
        except BaseException:
            connection.close()
            raise
        self.connects += 1
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # closing a dead connection: nothing more to do
                pass

    def _final_close(self) -> None:
        self._shutdown = None  # firing: not to be removed
        if not self._closed:
            self._closed = True
            self._pool.stop()  # waits for the work in hand, if any
            self._drop()

    def close(self) -> Deferred[None]:
        """Close the connection and stop the thread, once the work queued before is done."""
        if self._closed:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        self._closed = True
        if self._shutdown is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown)
            self._shutdown = None
        if not self._pool.started:  # it never worked: nothing to close
            return succeed(None)
        d = deferToThreadPool(self._reactor, self._pool, self._drop)

        def stop(result: Any) -> Any:
            self._pool.stop()  # the thread is idle now: joining it does not wait
            return result

        return d.addBoth(stop)
