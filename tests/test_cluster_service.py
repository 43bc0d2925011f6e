"""
The cluster member as call control sees it: told when it became active
(with its id blocks in hand) and when it lost the leadership; its store
writing under its epoch, fencing it when the database refuses; what is
queued written before it hands over.  A real PostgreSQL server, timers
on a task.Clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from mgcpswitch.cluster.leadership import LeaseSettings, LossReason, Role
from mgcpswitch.cluster.service import ClusterService, MemberSettings
from mgcpswitch.interfaces import IStore

from .support.postgres import PostgresCase
from .test_agent_store import GW, checkpoint, record
from .test_cluster_leadership import Events

LEASE = LeaseSettings(heartbeat=0.25, lease=1.0, idle_timeout=1.5, wait_slice=0.2)


class Member(PostgresCase, TestCase):
    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()

    def member(self, name: str) -> tuple[ClusterService, Events]:
        events = Events()
        member = ClusterService(
            self.clock, reactor, MemberSettings(self.dsn, name, LEASE, txid_block_size=1000),
            events.became_active, events.lost_leadership,
        )
        member.startService()
        self.addCleanup(lambda: member.stopService() if member.running else None)
        return member, events

    @inlineCallbacks
    def test_active_with_its_ids_in_hand(self) -> Any:
        """When told it is active, the member has its epoch, a CallId prefix and transaction ids of its own."""
        a, events = self.member("a")
        verifyObject(IStore, a.store)
        yield events.count(1)
        self.assertEqual(events.seen, [("active", 1)])
        self.assertEqual((a.role, a.epoch, a.call_id_prefix), (Role.ACTIVE, 1, "000000000001"))
        self.assertEqual(a.ids.in_hand, 2)
        ids = [a.allocator.allocate() for _ in range(1500)]  # across two blocks
        self.assertEqual(len(set(ids)), 1500)
        self.assertEqual(self.server.query(self.dsn, "SELECT count(*) FROM txid_blocks WHERE holder = 'a'"), [(3,)])
        a.store.call_answered(checkpoint(1))
        yield a.store.flush()
        self.assertEqual(self.server.query(self.dsn, "SELECT call_id, epoch FROM calls"), [("c1", 1)])
        self.assertEqual(a.counters()["store_rows_written"], 1)
        self.assertEqual(a.view().to_json()["epoch"], 1)

    @inlineCallbacks
    def test_a_refused_write_fences_the_member(self) -> Any:
        """Another agent's takeover is learnt from the store as well: the member stops being active."""
        a, events = self.member("a")
        yield events.count(1)
        self.server.query(self.dsn, "UPDATE cluster_leader SET epoch = epoch + 1")  # what a takeover does
        a.store.call_ended(record(1))
        yield a.store.flush()
        self.assertEqual(events.seen, [("active", 1), ("lost", LossReason.REFUSED)])
        self.assertEqual((a.role, a.store.refused_rows, a.call_id_prefix), (Role.STANDBY, 2, None))
        self.assertEqual(self.server.query(self.dsn, "SELECT count(*) FROM cdr"), [(0,)])

    @inlineCallbacks
    def test_stop_writes_what_is_queued_then_hands_over(self) -> Any:
        """On stop, the queued rows are written under the member's epoch before the standby takes over."""
        a, a_events = self.member("a")
        yield a_events.count(1)
        b, b_events = self.member("b")
        a.store.gateway_changed(GW)
        a.store.call_ended(record(1))
        yield a.stopService()
        self.assertEqual((a.store.refused_rows, a.store.lost_rows), (0, 0))
        self.assertEqual(self.server.query(self.dsn, "SELECT call_id, epoch FROM cdr"), [("c1", 1)])
        yield b_events.count(1)
        self.assertEqual(b_events.seen, [("active", 2)])
        state = yield b.store.load()
        self.assertEqual(state.gateways, (GW,))
