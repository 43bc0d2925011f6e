"""
Leadership with real processes: a member in a process of its own holds
the leadership and is killed (SIGKILL) or frozen (SIGSTOP) by its PID,
while a member in this process stands by.  The standby takes over in a
new epoch; a frozen-then-thawed active fences itself, writes nothing
after the takeover, and rejoins as a standby.  Times are real here (the
processes are); benchmarks/bench_store.py measures them.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from mgcpswitch.cluster.leadership import LeaseSettings, LossReason, Role
from mgcpswitch.cluster.service import ClusterService, MemberSettings

from .support.cluster_member import MemberProcess
from .support.postgres import PostgresCase
from .test_cluster_leadership import Events


class Processes(PostgresCase, TestCase):
    timeout = 60

    def child(self, name: str) -> MemberProcess:
        member = MemberProcess(reactor, self.dsn, name)
        self.addCleanup(member.stop)
        return member

    def standby(self, name: str) -> tuple[ClusterService, Events]:
        events = Events()
        member = ClusterService(
            reactor, reactor, MemberSettings(self.dsn, name, LeaseSettings()), events.became_active,
            events.lost_leadership,
        )
        member.startService()
        self.addCleanup(member.stopService)
        return member, events

    def member_row(self, name: str) -> tuple[Any, ...]:
        [row] = self.server.query(
            self.dsn, "SELECT (record->>'last_rsip_at')::float8, epoch FROM gateways WHERE name = %s",
            (f"member-{name}",),
        )
        return row

    @inlineCallbacks
    def test_kill_9_of_the_active(self) -> Any:
        """The active's process is killed: the standby takes the next epoch."""
        a = self.child("a")
        line = yield a.next_line("active")
        self.assertEqual(line.split()[1], "1")
        yield a.next_line("written")
        b, events = self.standby("b")
        a.signal(signal.SIGKILL)
        yield events.count(1)
        self.assertEqual(events.seen, [("active", 2)])
        self.assertEqual(a.process.wait(), -signal.SIGKILL)
        self.assertEqual(self.server.query(self.dsn, "SELECT epoch, holder FROM cluster_lease"), [(2, "b")])
        self.assertEqual(self.member_row("a")[1], 1)  # what it wrote while it was active

    @inlineCallbacks
    def test_sigstop_then_sigcont_of_the_active(self) -> Any:
        """
        The active is frozen: PostgreSQL ends its idle session, the standby
        takes over.  Thawed, the old active fences itself, and nothing it
        had queued is written under its old epoch; it rejoins as a standby
        and takes over again when the new active leaves.
        """
        a = self.child("a")
        yield a.next_line("active 1")
        yield a.next_line("written")
        b, events = self.standby("b")
        a.signal(signal.SIGSTOP)
        yield events.count(1)
        self.assertEqual(events.seen, [("active", 2)])
        frozen = self.member_row("a")
        lost = a.next_line("lost")
        a.signal(signal.SIGCONT)
        line = yield lost
        self.assertIn(line.split()[1], {LossReason.LEASE_EXPIRED.value, LossReason.SUPERSEDED.value})
        yield b.store.flush()
        self.assertEqual(self.member_row("a"), frozen)
        self.assertEqual((b.role, b.epoch), (Role.ACTIVE, 2))
        again = a.next_line("active")
        yield b.stopService()
        line = yield again
        self.assertEqual(line.split()[1], "3")
