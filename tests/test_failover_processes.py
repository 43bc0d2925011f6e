"""
Failover with real processes (issue 14): a throwaway PostgreSQL, two
C{twistd -n mgcpswitch --no-simulator} agents sharing it (one INI, two
ports), and two simulated gateways of 500 lines each in a process of
their own whose call agent list names both agents
(L{tests.support.failover_phones}).  200 calls talk and 20 ring when the
active is killed (SIGKILL), frozen (SIGSTOP, then SIGCONT), or the
database restarts under load.

What each test asserts is the outcome the issue asks for.  When the
active is killed or frozen: the other agent takes over; every endpoint
ends up sending to it, idle lines armed; every talking call is still
connected and is released normally afterwards with one complete CDR; the
ringing calls are cleared with no connection left.  When the database
restarts: the active keeps its term and every call, and the store
catches up.  Always: no gateway ever received one transaction id twice
from two sources (or for two commands).  Times are printed and
bounded only generously here; benchmarks/bench_failover.py measures them.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import unittest
from typing import Any, Callable

from mgcpswitch.config import load_settings

from .support.failover import ACTIVE, LEASE, PairRig
from .support.postgres import PostgresCase

TALKING = 200
RINGING = 20
#: Generous bounds (the issue's targets are 2 s and 5 s; the benchmark gives the figures).
DETECTION_BOUND = 10.0
RECOVERY_BOUND = 20.0


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll C{predicate} (every 50 ms, on an Event, not a sleep of the test's logic) until it holds."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        pause.wait(0.05)


class PairCase(PostgresCase):
    """The pair with 200 calls talking and 20 ringing, then one failure."""

    lease = LEASE

    def setUp(self) -> None:
        super().setUp()
        self.rig = PairRig(self.dsn, lines=500, lease=self.lease)
        self.addCleanup(shutil.rmtree, self.rig.directory, True)
        self.addCleanup(self.rig.stop)
        self.rig.start()
        assert self.rig.phones is not None
        self.phones = self.rig.phones
        talk = self.phones.ask(f"talk {TALKING}")
        self.assertEqual(talk["talking"], TALKING, talk)
        self.assertEqual(self.phones.ask(f"setup {RINGING}")["ringing"], RINGING)
        # A call answered less than a flush before a crash has no checkpoint
        # yet (docs/FAILOVER.md): wait until the database holds them all.
        wait_for(lambda: self.count("calls") >= TALKING, 10.0, "the talking calls' checkpoints written")

    def count(self, table: str) -> int:
        return int(self.server.query(self.dsn, f"SELECT count(*) FROM {table}")[0][0])

    def takeover(self, new: Any, since: float) -> dict[str, Any]:
        """The standby said it is active; every endpoint is re-homed to it and the lines recovered."""
        detected = new.wait(ACTIVE, DETECTION_BOUND, since=since)
        self.assertIsNotNone(detected, f"the standby did not take over:\n{new.log_tail()}")
        watched = self.phones.ask(f"watch 127.0.0.1:{new.port}")
        self.assertIsNotNone(watched["rehomed"], f"not every endpoint re-homed: {watched}\n{new.log_tail()}")
        self.assertIsNotNone(watched["recovered"], f"lines not recovered: {watched}\n{new.log_tail()}")
        self.assertEqual(watched["talking_lines"], 2 * TALKING, "every talking call still connected")
        self.assertEqual(watched["setup_connections"], 0, "the ringing calls' connections deleted")
        self.assertEqual(watched["idle_not_armed"], 0, "every idle line armed")
        self.assertLess(watched["recovered"] - since, RECOVERY_BOUND)
        print(f"\ndetection {detected - since:.3f} s, re-homed {watched['rehomed'] - since:.3f} s, "
              f"recovered {watched['recovered'] - since:.3f} s")
        return watched

    def release_and_check(self, calls: int = TALKING) -> None:
        """Hang everything up: every call released normally, one complete CDR each, nothing left."""
        self.assertEqual(self.phones.ask("hangup-setup")["failures"], 0)
        released = self.phones.ask("release")
        self.assertEqual((released["released"], released["failures"]), (self.pending_release, 0), released)
        stats = self.phones.ask("stats")
        self.assertEqual(stats["connections"], 0, "no connection left on the gateways")
        self.assertEqual(stats["not_armed"], 0, "every line idle and armed")
        self.assertEqual(stats["txid_reuse"], [], "no transaction id reused across agents")
        wait_for(lambda: self.count("cdr WHERE answer IS NOT NULL") >= calls, 15.0, f"{calls} CDRs written")
        rows = self.server.query(self.dsn, 'SELECT call_id, cause, answer, "end", start FROM cdr WHERE answer IS NOT NULL')
        self.assertEqual(len(rows), calls, "one record per answered call")
        self.assertEqual({r[1] for r in rows}, {"normal"})
        self.assertTrue(all(r[4] <= r[2] <= r[3] for r in rows), "complete records")
        self.assertEqual(self.count("calls"), 0, "no checkpoint left")

    pending_release = TALKING


class ActiveFails(PairCase, unittest.TestCase):
    """The active agent dies or freezes (the [cluster] defaults: lease 1 s)."""

    def test_kill_the_active(self) -> None:
        """SIGKILL of the active: B takes over, keeps the 200 talking calls, clears the 20 ringing ones."""
        old = self.rig.active()
        new = self.rig.other(old)
        at = old.signal(signal.SIGKILL)
        self.takeover(new, at)
        self.release_and_check()

    def test_freeze_the_active(self) -> None:
        """
        SIGSTOP of the active: the standby takes over once the frozen
        one's session is ended; thawed (SIGCONT), the old active fences
        itself, sends no command any more, and stands by: it takes over in
        turn when the new active is killed.
        """
        old = self.rig.active()
        new = self.rig.other(old)
        at = old.signal(signal.SIGSTOP)
        self.takeover(new, at)
        before = self.phones.ask("stats")["commands"].get(f"127.0.0.1:{old.port}", 0)
        thawed = old.signal(signal.SIGCONT)
        self.assertIsNotNone(old.wait("no longer active", 10.0, since=at), old.log_tail())
        self.release_and_check()
        after = self.phones.ask("stats")["commands"].get(f"127.0.0.1:{old.port}", 0)
        self.assertEqual(after, before, "the thawed agent commanded no gateway")
        # It stands by: kill the new active and it takes over again.
        killed = new.signal(signal.SIGKILL)
        self.assertIsNotNone(old.wait(ACTIVE, DETECTION_BOUND, since=max(killed, thawed)), old.log_tail())
        watched = self.phones.ask(f"watch 127.0.0.1:{old.port}")
        self.assertIsNotNone(watched["recovered"], watched)

class DatabaseRestarts(PairCase, unittest.TestCase):
    """
    PostgreSQL restarts under load.  A lease of 3 s (heartbeat 0.5 s,
    idle_timeout 4 s): an outage shorter than the lease is not a takeover,
    and a restart on this shared machine can take more than the default
    1 s; the price is a frozen active detected in 4 s rather than 1.5 s.
    """

    lease = (0.5, 3.0, 4.0)

    def test_restart_postgresql_under_load(self) -> None:
        """
        The database restarts (fast shutdown, then start: shorter than the
        lease) while 100 calls end and 50 new ones are placed and answered.
        The active keeps its term (nobody fences, nobody takes over), every
        call goes on, and the store catches up: 250 complete CDRs.
        """
        active = self.rig.active()
        began = time.time()
        self.phones.send("release 100")
        self.phones.send("talk 50")
        restart = time.time()
        self.server.restart()
        print(f"\nPostgreSQL restarted in {time.time() - restart:.3f} s")
        logs = "\n".join(a.log_tail(15) for a in self.rig.agents)
        self.assertEqual(self.phones.answer("release 100")["failures"], 0, logs)
        self.assertEqual(self.phones.answer("talk 50")["talking"], 50, logs)
        for agent in self.rig.agents:
            self.assertIsNone(agent.wait("no longer active", 0.0, since=began), agent.log_tail())
            self.assertIsNone(agent.wait(ACTIVE, 0.0, since=began), agent.log_tail())
        self.assertIs(self.rig.active(), active)
        wait_for(lambda: self.count("cdr") >= 100, 20.0, "the CDRs of the restart written")
        self.pending_release = TALKING - 100 + 50
        self.release_and_check(calls=TALKING + 50)


class PairExample(unittest.TestCase):
    """etc/pair-a.ini and etc/pair-b.ini, the README's pair."""

    def test_the_two_files_form_a_pair(self) -> None:
        """They load, share the store, the cluster settings and the gateways, and name two agents."""
        etc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc")
        a, b = (load_settings(os.path.join(etc, f"pair-{x}.ini")) for x in "ab")
        self.assertEqual((a.store, a.cluster, a.gateways), (b.store, b.cluster, b.gateways))
        self.assertTrue(a.store.url.startswith("postgresql://"))
        self.assertNotEqual(a.cluster.member_name(a.switch), b.cluster.member_name(b.switch))
        self.assertEqual(a.simulator.gateways, ())
