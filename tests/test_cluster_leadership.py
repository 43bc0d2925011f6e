"""
Leadership against a real PostgreSQL server, with the timers (heartbeats,
the lease, retries) on a task.Clock: one member becomes active, renews
its lease, fences itself when it cannot, takes its lock back after losing
its session, yields to nobody across a restart of the server, and hands
over to a standby when it dies (its backend ended here; real processes
are killed in test_cluster_processes) or stops.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from mgcpswitch.cluster.db import LOCK_KEY
from mgcpswitch.cluster.leadership import LeaseSettings, Leadership, LossReason, Role

from .support.postgres import PostgresCase

SETTINGS = LeaseSettings(heartbeat=0.25, lease=1.0, idle_timeout=1.5, wait_slice=0.2, retry=0.5)


class Events:
    """What a member was told, and a way to wait for it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def became_active(self, epoch: int) -> None:
        self._add(("active", epoch))

    def lost_leadership(self, reason: LossReason) -> None:
        self._add(("lost", reason))

    def _add(self, event: tuple[str, Any]) -> None:
        self.seen.append(event)
        ready = [d for n, d in self._waiting if len(self.seen) >= n]
        self._waiting = [(n, d) for n, d in self._waiting if len(self.seen) < n]
        for d in ready:
            d.callback(None)

    def count(self, n: int) -> Deferred[None]:
        """Fires once C{n} events were seen."""
        d: Deferred[None] = Deferred()
        if len(self.seen) >= n:
            d.callback(None)
        else:
            self._waiting.append((n, d))
        return d


class LeadershipCase(PostgresCase, TestCase):
    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()

    def member(self, name: str, settings: LeaseSettings = SETTINGS) -> tuple[Leadership, Events]:
        events = Events()
        member = Leadership(self.clock, reactor, self.dsn, name, settings, events.became_active, events.lost_leadership)
        self.addCleanup(member.stop)
        member.start()
        return member, events

    def end_holders_session(self) -> None:
        """The holder's backend is ended (as an operator's pg_terminate_backend would)."""
        [(ended,)] = self.server.query(
            self.dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted",
            (LOCK_KEY,),
        )
        self.assertTrue(ended)

    def lease_row(self) -> tuple[Any, ...]:
        [row] = self.server.query(self.dsn, "SELECT epoch, holder FROM cluster_lease")
        return row

    @inlineCallbacks
    def beat(self, member: Leadership, times: int = 1) -> Any:
        """Let C{times} heartbeats go out and come back."""
        for _ in range(times):
            self.clock.advance(member.settings.heartbeat)
            yield member.session.drained()


class Alone(LeadershipCase):
    @inlineCallbacks
    def test_the_first_member_becomes_active(self) -> Any:
        """Alone, a member takes the lock and the first epoch, and says so in the lease row."""
        a, events = self.member("a")
        yield events.count(1)
        self.assertEqual(events.seen, [("active", 1)])
        self.assertEqual((a.role, a.epoch, a.holder, a.takeovers), (Role.ACTIVE, 1, "a", 1))
        self.assertEqual(self.lease_row(), (1, "a"))
        self.assertEqual(a.view().to_json()["role"], "active")

    @inlineCallbacks
    def test_heartbeats_renew_the_lease(self) -> Any:
        """Renewals every heartbeat keep the lease young for as long as the database answers."""
        a, events = self.member("a")
        yield events.count(1)
        yield self.beat(a, 12)  # three leases long
        self.assertEqual(a.counters["renewals"], 12)
        self.assertEqual(a.lease_age, 0.0)  # the last renewal was sent at the clock's present
        self.assertTrue(a.holds_lease())
        self.assertEqual(events.seen, [("active", 1)])

    @inlineCallbacks
    def test_an_active_that_cannot_renew_fences_itself_and_comes_back(self) -> Any:
        """
        With the server gone, renewals fail; at the end of the lease the
        active stops by itself, and once the server is back it becomes
        active again in a new epoch.
        """
        a, events = self.member("a")
        yield events.count(1)
        self.server.stop()
        self.addCleanup(lambda: self.server.start() if self.server.pid is None else None)
        yield self.beat(a, 3)
        self.assertEqual((a.role, events.seen), (Role.ACTIVE, [("active", 1)]))
        yield self.beat(a, 1)  # a whole lease since the last renewal
        self.assertEqual(events.seen, [("active", 1), ("lost", LossReason.LEASE_EXPIRED)])
        self.assertEqual(a.role, Role.STANDBY)
        self.assertFalse(a.holds_lease())
        self.server.start()
        while len(events.seen) < 3:
            self.clock.advance(SETTINGS.retry)
            yield a.session.drained()
        self.assertEqual(events.seen[2], ("active", 2))

    @inlineCallbacks
    def test_a_lost_session_is_taken_back_within_the_lease(self) -> Any:
        """The active's session ends; its next heartbeat takes the lock back, in the same epoch."""
        a, events = self.member("a")
        yield events.count(1)
        self.end_holders_session()
        yield self.beat(a, 2)
        self.assertEqual((a.role, a.epoch), (Role.ACTIVE, 1))
        self.assertEqual(a.session.connects, 2)
        self.assertGreaterEqual(a.counters["renewals"], 1)
        self.assertEqual(events.seen, [("active", 1)])

    @inlineCallbacks
    def test_a_thawed_active_fences_before_its_timers_run(self) -> Any:
        """
        Time jumps past the lease with no timer run (a process thawed after
        SIGSTOP that reads its sockets first): the check before a command
        says no, and fences at once.
        """
        a, events = self.member("a")
        yield events.count(1)
        self.clock.rightNow += SETTINGS.lease
        self.assertFalse(a.holds_lease())
        self.assertEqual(events.seen, [("active", 1), ("lost", LossReason.LEASE_EXPIRED)])
        self.assertEqual(a.role, Role.STANDBY)

    def test_lease_settings_are_checked(self) -> None:
        """A lease that a frozen active could outlive is refused, with the three times named."""
        with self.assertRaisesRegex(ValueError, "heartbeat .* < lease .* < idle_timeout"):
            LeaseSettings(heartbeat=0.5, lease=2.0, idle_timeout=1.5)


class Pair(LeadershipCase):
    @inlineCallbacks
    def test_a_standby_takes_over_when_the_holders_session_ends(self) -> Any:
        """
        The standby gets the lock as soon as the holder's session is gone
        and takes the next epoch; the old active learns it was superseded
        at its next heartbeat.
        """
        a, a_events = self.member("a")
        yield a_events.count(1)
        b, b_events = self.member("b")
        self.assertEqual(b.role, Role.STANDBY)
        self.end_holders_session()
        yield b_events.count(1)
        self.assertEqual(b_events.seen, [("active", 2)])
        self.assertEqual(self.lease_row(), (2, "b"))
        yield self.beat(a)
        self.assertEqual(a_events.seen, [("active", 1), ("lost", LossReason.SUPERSEDED)])
        self.assertEqual((a.role, b.role), (Role.STANDBY, Role.ACTIVE))

    @inlineCallbacks
    def test_stop_hands_over_at_once(self) -> Any:
        """An active that stops says so; the standby takes over without waiting for the lease."""
        a, a_events = self.member("a")
        yield a_events.count(1)
        b, b_events = self.member("b")
        yield a.stop()
        yield b_events.count(1)
        self.assertEqual(b_events.seen, [("active", 2)])
        self.assertEqual(a_events.seen, [("active", 1), ("lost", LossReason.STOPPED)])
        self.assertEqual(a.role, Role.STOPPED)

    @inlineCallbacks
    def test_a_restart_of_the_server_keeps_the_active(self) -> Any:
        """
        After a restart of the server the standby, first to the lock, sees
        that the active's lease may still run and lets it go; the active
        takes its lock back at its next heartbeat and keeps its epoch.
        """
        a, a_events = self.member("a")
        yield a_events.count(1)
        b, b_events = self.member("b", LeaseSettings(heartbeat=0.25, lease=1.0, idle_timeout=1.5, wait_slice=0.2,
                                                     retry=0.1))
        yield self.beat(a)
        self.server.restart()
        yield b.session.drained()  # b's wait was cut short: it retries after 0.1 s
        self.clock.advance(0.1)
        yield b.session.drained()  # b had the lock for a moment, and let it go
        self.assertEqual(b.role, Role.STANDBY)
        yield self.beat(a)  # a takes its lock back
        self.assertEqual(a.session.connects, 2)
        for _ in range(8):  # two leases: b waits, a renews
            yield self.beat(a)
        yield b.session.drained()  # b's last wait for the lock is over
        self.assertEqual((a.role, a.epoch, b.role), (Role.ACTIVE, 1, Role.STANDBY))
        self.assertEqual((a_events.seen, b_events.seen), ([("active", 1)], []))
        self.assertEqual((b.epoch, b.holder), (1, "a"))  # what b saw while it waited
