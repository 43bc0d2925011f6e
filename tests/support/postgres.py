"""
A throwaway PostgreSQL server for tests and benchmarks: C{initdb} in a
fresh temporary directory, the server (C{postgres}, in the foreground, so
we hold its real PID) listening only on a Unix socket in that directory,
stopped by that PID, the directory removed afterwards.

initdb refuses to run as root, and so does the server: when the tests run
as root (CI does), both run as Debian's C{postgres} user, which owns the
directory; the tests connect through the socket with trust authentication
as the database user C{postgres}.  Debian keeps the binaries under
C{/usr/lib/postgresql/<version>/bin}; scripts/run-tests installs the
C{postgresql} package when it is missing, and a machine without it skips
the calling tests loudly.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import unittest
from collections import deque
from typing import Any, Optional

__all__ = ["PostgresServer", "PostgresCase", "shared_postgres", "start_postgres", "postgres_bindir"]

#: Settings for a test server: small, no listening on the network, and no
#: fsync (a test never survives a power cut; a benchmark passes durable=True).
TEST_SETTINGS = {
    "listen_addresses": "",
    "unix_socket_permissions": "0777",
    "max_connections": "40",
    "shared_buffers": "16MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

READY = "database system is ready to accept connections"
STOPPED = "database system is shut down"


def postgres_bindir() -> Optional[str]:
    """The newest Debian PostgreSQL's bin directory, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0,
    )
    return os.path.dirname(found[-1]) if found else None


def _server_user() -> Optional[pwd.struct_passwd]:
    """Whom to run initdb and the server as: None for ourselves, Debian's postgres user under root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise unittest.SkipTest(
            "SKIPPED LOUDLY: running as root and there is no 'postgres' user to run PostgreSQL as "
            "(apt-get install postgresql creates it; scripts/run-tests does this as root)"
        ) from None


class PostgresServer:
    """
    One server and its directory.  L{start} and L{stop} may be called
    again (a restart keeps the data); L{destroy} stops it and removes
    everything.
    """

    _databases = itertools.count(1)

    def __init__(self, bindir: str, settings: dict[str, str]) -> None:
        self.bindir = bindir
        self.settings = settings
        self.user = _server_user()
        self.directory = tempfile.mkdtemp(prefix="pg.")
        self.data = os.path.join(self.directory, "data")
        self.socket_dir = os.path.join(self.directory, "sock")
        os.mkdir(self.socket_dir)
        if self.user is not None:
            for path in (self.directory, self.socket_dir):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        self.port = 5432  # only names the socket file: nothing listens on TCP
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.log: deque[str] = deque(maxlen=400)
        self._ready = threading.Event()
        self._initdb()

    # -- processes -----------------------------------------------------------

    def _popen(self, argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
        as_user: dict[str, Any] = {}
        if self.user is not None:
            as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return subprocess.Popen(argv, cwd=self.directory, env=env, stdin=subprocess.DEVNULL, **as_user, **options)

    def _initdb(self) -> None:
        process = self._popen(
            [os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-sync", "--no-instructions"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        out, _ = process.communicate(timeout=120)
        if process.returncode:
            self.destroy()
            raise RuntimeError(f"initdb failed ({process.returncode}):\n{out.decode(errors='replace')}")

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and return once it accepts connections."""
        assert self.process is None or self.process.poll() is not None, "already running"
        argv = [os.path.join(self.bindir, "postgres"), "-D", self.data, "-k", self.socket_dir, "-p", str(self.port)]
        for name, value in self.settings.items():
            argv += ["-c", f"{name}={value}"]
        self._ready.clear()
        self.process = self._popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._drain, args=(self.process,), name="postgres-log", daemon=True).start()
        # The server says when it is ready; we wait for that line (or its exit).
        if not self._ready.wait(timeout) or self.process.poll() is not None:
            text = "\n".join(self.log)
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start within {timeout:.0f} s:\n{text}")

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        """Keep the server's log (so its pipe never fills) and notice readiness."""
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            if READY in line:
                self._ready.set()
        self._ready.set()  # it exited: start() looks at poll()

    @property
    def pid(self) -> Optional[int]:
        """The postmaster's PID while it runs."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def stop(self, mode: int = signal.SIGINT, timeout: float = 60.0) -> None:
        """
        Stop our server by its PID: SIGINT is PostgreSQL's fast shutdown
        (sessions are ended, open transactions rolled back), SIGQUIT its
        immediate shutdown (a crash: recovery at the next start).
        """
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, mode)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
        if process.stdout is not None:
            process.stdout.close()

    def restart(self, mode: int = signal.SIGINT) -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- connecting -----------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for one of the server's databases."""
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def connect(self, dbname: str = "postgres") -> Any:
        """An autocommit psycopg connection, for tests that look at what was written."""
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=True)

    def create_database(self) -> str:
        """A fresh, empty database; its DSN."""
        name = f"test_{os.getpid()}_{next(self._databases)}"
        with self.connect() as admin:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY FILE_COPY")
        return self.dsn(name)

    def query(self, dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement in its own connection and return its rows (tests' eyes on the database)."""
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description is not None else []


def start_postgres(settings: Optional[dict[str, str]] = None, durable: bool = False) -> PostgresServer:
    """
    A running throwaway server; skips the calling test loudly when
    PostgreSQL is not installed.
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise unittest.SkipTest(
            "SKIPPED LOUDLY: PostgreSQL is not installed (apt-get install postgresql; "
            "scripts/run-tests does this as root)"
        )
    chosen = dict(TEST_SETTINGS)
    if durable:
        chosen.update(DURABLE)
    chosen.update(settings or {})
    server = PostgresServer(bindir, chosen)
    try:
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server


_shared: Optional[PostgresServer] = None


def shared_postgres() -> PostgresServer:
    """
    One server for every test of this process (initdb and a start cost
    seconds on a busy machine), destroyed when the process exits.
    """
    global _shared
    if _shared is None:
        _shared = start_postgres()
        atexit.register(_shared.destroy)
    return _shared


class PostgresCase:
    """
    A mixin for test cases: the process's server (L{shared_postgres}) and
    a fresh database for each test (C{self.dsn}).
    """

    server: PostgresServer

    @classmethod
    def setUpClass(cls) -> None:  # noqa: N802
        cls.server = shared_postgres()

    def setUp(self) -> None:  # noqa: N802
        if self.server.pid is None:  # a test stopped it and failed before starting it again
            self.server.start()
        self.dsn = self.server.create_database()
