#!/usr/bin/env python3
"""
Benchmark of the stores and of leadership takeover (issue 14).  A
benchmark, not a test: it asserts nothing, it prints figures.

    PYTHONPATH=. python benchmarks/bench_store.py [--calls 5000] [--rate 300] \\
        [--seconds 4] [--takeovers 10] [--skip-stores] [--skip-takeovers]

Run from the repository root (the takeover runs start
tests/support/cluster_member.py with -m).  PostgreSQL is a throwaway
server (tests/support/postgres.py) with fsync and synchronous_commit on,
as SQLite's default is durable too.

Stores.  Each variant runs in a process of its own, with the workload of
call control: per call a checkpoint when answered and, 100 calls later,
its end (the deletion of the checkpoint and a CDR): three rows per call.

  sqlite           SQLiteStore (adbapi thread pool), the embedded default
  postgres         PostgresStore: psycopg 3 (C build) in a session thread
  postgres-python  the same with psycopg's pure-Python build (PSYCOPG_IMPL=python)
  postgres-asyncio the same batches through psycopg's AsyncConnection on
                   Twisted's asyncio reactor, all on the reactor thread
  row-at-a-time    the baseline: psycopg, one INSERT and one commit per row,
                   no batching (no reactor)

Per variant: (1) throughput: every call queued at once, then flushed:
rows/s, CPU of the process and of the reactor thread per row; (2) a
steady rate (--rate calls/s for --seconds, queued in 10 ms ticks) with a
1 ms probe timer: the reactor's lateness (p99 and max), CPU per row.

Takeovers.  --takeovers times each: a member process holds the
leadership, another stands by (waiting for the lock); the holder is sent
SIGKILL, or SIGSTOP and later SIGCONT.  Detection is the time from the
signal to the standby's "active" line; for SIGSTOP also the time from
SIGCONT to the thawed holder's fence.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks._common import Child, machine_info, pct, print_machine  # noqa: E402


class Member(Child):
    """A member process whose lines are read from the descriptor, so that none waits in a buffer."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(argv, env)
        self._buffer = b""

    def read_line(self, timeout: float = 10.0) -> str:
        import select

        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no line from pid %d within %.0f s" % (self.pid, timeout))
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("pid %d exited (status %s)" % (self.pid, self.process.poll()))
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", "replace")

VARIANTS = ("sqlite", "postgres", "postgres-python", "postgres-asyncio", "row-at-a-time")


def workload(calls: int) -> list[tuple[str, Any]]:
    """The store calls of C{calls} calls: answered, and ended 100 calls later."""
    from mgcpswitch.agent.model import CallCheckpoint, CallRecord, LegCheckpoint, ReleaseCause

    def checkpoint(n: int) -> CallCheckpoint:
        return CallCheckpoint(
            call_id=f"call{n}", dialled="2003", started=100.0 + n, answered=101.0 + n,
            legs=(LegCheckpoint("aaln/1@rgw1", True, f"A{n}", "sendrecv"),
                  LegCheckpoint("aaln/3@rgw2", False, f"B{n}", "sendrecv")), codec="PCMU",
        )

    def record(n: int) -> CallRecord:
        return CallRecord(
            call_id=f"call{n}", caller="1001", callee="2003", caller_endpoint="aaln/1@rgw1",
            callee_endpoint="aaln/3@rgw2", caller_connection=f"A{n}", callee_connection=f"B{n}", codec="PCMU",
            start=100.0 + n, answer=101.0 + n, end=110.0 + n, cause=ReleaseCause.NORMAL,
            caller_stats={"PS": 1000, "OS": 160000, "PR": 998, "OR": 159680, "PL": 2, "JI": 3},
            callee_stats={"PS": 998, "OS": 159680, "PR": 1000, "OR": 160000, "PL": 0, "JI": 2},
        )

    ops: list[tuple[str, Any]] = []
    for n in range(calls + 100):
        if n < calls:
            ops.append(("call_answered", checkpoint(n)))
        if n >= 100:
            ops.append(("call_ended", record(n - 100)))
    return ops


# -- one variant, in a process of its own ------------------------------------------------


def run_variant(variant: str, dsn: str, calls: int, rate: int, seconds: float) -> dict[str, Any]:
    if variant == "row-at-a-time":
        return run_row_at_a_time(dsn, calls)
    if variant == "postgres-asyncio":
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import defer, reactor, task

    results: dict[str, Any] = {}
    directory = tempfile.mkdtemp(prefix="bench-store.")

    def open_store(name: str) -> Any:
        if variant == "sqlite":
            from mgcpswitch.agent.store import SQLiteStore

            return SQLiteStore(reactor, os.path.join(directory, f"{name}.sqlite"))
        if variant == "postgres-asyncio":
            return AsyncioStore(reactor, dsn)
        from mgcpswitch.cluster.db import Session, ensure_schema
        from mgcpswitch.cluster.store import STORE_SETTINGS, PostgresStore

        return PostgresStore(reactor, Session(reactor, dsn, name, STORE_SETTINGS, on_connect=ensure_schema))

    @defer.inlineCallbacks
    def main() -> Any:
        # (1) throughput
        store = open_store("throughput")
        yield store.load()  # connected, schema made
        ops = workload(calls)
        rows = 3 * calls
        wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
        for method, value in ops:
            getattr(store, method)(value)
        queued_thread = time.thread_time() - thread
        yield store.flush()
        wall, cpu, thread = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - thread
        results["throughput"] = {
            "rows": rows, "rows_per_s": rows / wall, "cpu_us_per_row": cpu / rows * 1e6,
            "reactor_cpu_us_per_row": thread / rows * 1e6, "queue_us_per_row": queued_thread / rows * 1e6,
        }
        # (2) a steady rate, with a probe of the reactor's lateness
        store = open_store("rate")
        yield store.load()
        ops = workload(int(rate * seconds))
        late: list[float] = []
        probe_last = [time.perf_counter()]

        def probe() -> None:
            now = time.perf_counter()
            late.append(max(0.0, now - probe_last[0] - 0.001))
            probe_last[0] = now

        per_tick = max(1, round(len(ops) / (seconds / 0.01)))
        position = [0]
        done: defer.Deferred[None] = defer.Deferred()

        def tick() -> None:
            chunk = ops[position[0]:position[0] + per_tick]
            position[0] += per_tick
            for method, value in chunk:
                getattr(store, method)(value)
            if position[0] >= len(ops):
                feeder.stop()
                store.flush().chainDeferred(done)

        probe_call = task.LoopingCall(probe)
        probe_call.start(0.001)
        # The probe alone first: its own CPU is subtracted below.
        base_wall, base_cpu = time.perf_counter(), time.process_time()
        yield task.deferLater(reactor, seconds, lambda: None)
        probe_cpu_per_s = (time.process_time() - base_cpu) / (time.perf_counter() - base_wall)
        del late[:]
        wall, cpu = time.perf_counter(), time.process_time()
        feeder = task.LoopingCall(tick)
        feeder.start(0.01)
        yield done
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        probe_call.stop()
        cpu -= probe_cpu_per_s * wall
        late.sort()
        rows = 3 * int(rate * seconds)
        results["rate"] = {
            "calls_per_s": rate, "rows": rows, "seconds": wall, "cpu_us_per_row": cpu / rows * 1e6,
            "cpu_percent": cpu / wall * 100, "late_p99_ms": pct(late, 0.99) * 1e3, "late_max_ms": late[-1] * 1e3,
        }

    def finish(outcome: Any) -> None:
        if isinstance(outcome, Exception) or hasattr(outcome, "getTraceback"):
            results["error"] = str(outcome)
        reactor.stop()

    reactor.callWhenRunning(lambda: main().addBoth(finish))
    reactor.run()
    shutil.rmtree(directory, ignore_errors=True)
    return results


class AsyncioStore:
    """
    The PostgreSQL store's batches through psycopg's AsyncConnection on the
    asyncio reactor (the alternative docs/FAILOVER.md weighs): the same
    queueing, the same SQL, every byte on the reactor thread.
    """

    def __init__(self, reactor: Any, dsn: str, batch_size: int = 200) -> None:
        from mgcpswitch.cluster import store

        self._store = store
        self._reactor = reactor
        self._dsn = dsn
        self.batch_size = batch_size
        self._queue = store._Batch()
        self._connection: Any = None
        self._last: Any = None

    def _defer(self, coroutine: Any) -> Any:
        import asyncio

        from twisted.internet.defer import Deferred

        return Deferred.fromFuture(asyncio.ensure_future(coroutine))

    async def _connect(self) -> Any:
        import psycopg

        from mgcpswitch.cluster.db import SCHEMA

        if self._connection is None:
            self._connection = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
            await self._connection.execute("SET synchronous_commit = on")
            for statement in SCHEMA:
                await self._connection.execute(statement)
        return self._connection

    def call_answered(self, checkpoint: Any) -> None:
        self._queue.calls[checkpoint.call_id] = checkpoint
        self._queued()

    def call_ended(self, record: Any) -> None:
        self._queue.calls.pop(record.call_id, None)
        self._queue.ended.append(record.call_id)
        self._queue.cdrs.append(record)
        self._queued()

    def _queued(self) -> None:
        if len(self._queue) >= self.batch_size:
            self.flush()

    async def _write(self, batch: Any, previous: Any) -> None:
        if previous is not None:
            await previous
        connection = await self._connect()
        store = self._store
        async with connection.transaction():
            if batch.calls:
                rows = [(k, store.checkpoint_json(v)) for k, v in batch.calls.items()]
                await connection.execute(store._UPSERT_CALLS, {"epoch": None, "rows": json.dumps(rows)})
            if batch.ended:
                await connection.execute(store._DELETE_CALLS, {"ids": batch.ended})
            if batch.cdrs:
                rows = [store._cdr_row(r) for r in batch.cdrs]
                await connection.execute(store._INSERT_CDR, {"epoch": None, "rows": json.dumps(rows)})

    def flush(self) -> Any:
        import asyncio

        batch, self._queue = self._queue, self._store._Batch()
        if len(batch) or self._last is None:
            self._last = asyncio.ensure_future(self._write(batch, self._last))
        return self._defer(asyncio.shield(self._last))

    def load(self) -> Any:
        return self.flush()


def run_row_at_a_time(dsn: str, calls: int) -> dict[str, Any]:
    """The baseline the issue quotes: one INSERT and one commit per row."""
    import psycopg

    from mgcpswitch.cluster.db import ensure_schema
    from mgcpswitch.cluster.store import _cdr_row

    calls = min(calls, 2000)
    with psycopg.connect(dsn, autocommit=True) as connection:
        ensure_schema(connection)
        connection.execute("SET synchronous_commit = on")
        rows = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for method, value in workload(calls):
            if method == "call_answered":
                connection.execute(
                    "INSERT INTO calls (call_id, checkpoint) VALUES (%s, %s::jsonb) ON CONFLICT (call_id) "
                    "DO UPDATE SET checkpoint = EXCLUDED.checkpoint", (value.call_id, json.dumps(value.to_json())))
                rows += 1
            else:
                connection.execute("DELETE FROM calls WHERE call_id = %s", (value.call_id,))
                row = _cdr_row(value)
                row[12:14] = [json.dumps(row[12]), json.dumps(row[13])]
                connection.execute(
                    'INSERT INTO cdr (call_id, caller, callee, caller_endpoint, callee_endpoint, caller_connection, '
                    'callee_connection, codec, start, answer, "end", cause, caller_stats, callee_stats) VALUES '
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb) ON CONFLICT DO NOTHING", row)
                rows += 2
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"throughput": {"rows": rows, "rows_per_s": rows / wall, "cpu_us_per_row": cpu / rows * 1e6,
                           "reactor_cpu_us_per_row": None, "queue_us_per_row": None}}


# -- takeovers -------------------------------------------------------------------------


def takeovers(server: Any, runs: int) -> dict[str, list[float]]:
    import psycopg

    dsn = server.create_database()
    out: dict[str, list[float]] = {"kill": [], "stop": [], "fence_after_cont": []}
    env = dict(os.environ, PYTHONPATH=ROOT)

    def member(name: str) -> Member:
        return Member([sys.executable, "-m", "tests.support.cluster_member", dsn, name], env=env)

    def line(child: Member, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = child.read_line(max(0.1, deadline - time.monotonic()))
            if text.startswith(prefix):
                return text

    def standby_waiting() -> None:
        """Until the standby is blocked on the lock (a benchmark may poll)."""
        with psycopg.connect(dsn, autocommit=True) as c:
            for _ in range(1000):
                [(waiting,)] = c.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchall()
                if waiting:
                    return
                time.sleep(0.01)
        raise RuntimeError("the standby never waited for the lock")

    for kind in ("kill", "stop"):
        for run in range(runs):
            holder = member(f"{kind}{run}a")
            standby = None
            try:
                line(holder, "active")
                standby = member(f"{kind}{run}b")
                line(standby, "standby")
                standby_waiting()
                sent = time.time()
                holder.signal(signal.SIGKILL if kind == "kill" else signal.SIGSTOP)
                took = float(line(standby, "active").split()[2])
                out[kind].append(took - sent)
                if kind == "stop":
                    thawed = time.time()
                    holder.signal(signal.SIGCONT)
                    fenced = float(line(holder, "lost").split()[2])
                    out["fence_after_cont"].append(fenced - thawed)
            finally:
                holder.stop()
                if standby is not None:
                    standby.stop()
    return out


# -- the report ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=300, help="calls/s of the steady run")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--takeovers", type=int, default=10)
    parser.add_argument("--skip-stores", action="store_true")
    parser.add_argument("--skip-takeovers", action="store_true")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # one variant, in this process: print its JSON
        print(json.dumps(run_variant(args.variant, args.dsn, args.calls, args.rate, args.seconds)))
        return

    from tests.support.postgres import start_postgres

    info = machine_info(sys.argv)
    print_machine(info)
    server = start_postgres(durable=True)
    print("# postgres    %s, Unix socket, fsync on, synchronous_commit on" % server.bindir)
    try:
        if not args.skip_stores:
            print()
            print("Stores: %d calls (3 rows each) queued at once; then %d calls/s for %.0f s"
                  % (args.calls, args.rate, args.seconds))
            print("%-17s %10s %11s %13s %11s | %11s %8s %9s %9s" % (
                "variant", "rows/s", "cpu us/row", "reactor us/row", "queue us/row",
                "cpu us/row", "cpu %", "late p99", "late max"))
            baseline = None
            for variant in VARIANTS:
                env = dict(os.environ, PYTHONPATH=ROOT)
                if variant == "postgres-python":
                    env["PSYCOPG_IMPL"] = "python"
                proc = subprocess.run(
                    [sys.executable, __file__, "--variant", variant, "--dsn", server.create_database(),
                     "--calls", str(args.calls), "--rate", str(args.rate), "--seconds", str(args.seconds)],
                    capture_output=True, text=True, env=env, timeout=600,
                )
                try:
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
                except (IndexError, ValueError):
                    print("%-17s failed: %s" % (variant, proc.stderr.strip()[-500:]))
                    continue
                t, r = result.get("throughput", {}), result.get("rate")
                if variant == "sqlite":
                    baseline = t["cpu_us_per_row"]

                def num(value: Any, form: str) -> str:
                    return form % value if value is not None else "-"

                ratio = " (x%.2f)" % (t["cpu_us_per_row"] / baseline) if baseline else ""
                print("%-17s %10.0f %11.1f %13s %11s | %11s %8s %9s %9s%s" % (
                    variant, t["rows_per_s"], t["cpu_us_per_row"], num(t["reactor_cpu_us_per_row"], "%.1f"),
                    num(t["queue_us_per_row"], "%.1f"),
                    num(r and r["cpu_us_per_row"], "%.1f"), num(r and r["cpu_percent"], "%.1f"),
                    num(r and r["late_p99_ms"], "%.2f ms"), num(r and r["late_max_ms"], "%.2f ms"), ratio))
                if "error" in result:
                    print("    error: %s" % result["error"])
        if not args.skip_takeovers:
            print()
            print("Takeovers: %d runs each, LeaseSettings() defaults (heartbeat 0.25 s, lease 1.0 s, "
                  "idle_timeout 1.5 s)" % args.takeovers)
            found = takeovers(server, args.takeovers)
            for key, label in (("kill", "SIGKILL of the active -> standby active"),
                               ("stop", "SIGSTOP of the active -> standby active"),
                               ("fence_after_cont", "SIGCONT -> the thawed active fenced")):
                values = sorted(found[key])
                if values:
                    print("  %-42s median %7.1f ms  max %7.1f ms  (n=%d)" % (
                        label, statistics.median(values) * 1e3, values[-1] * 1e3, len(values)))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
