"""
Call control in a cluster, on the in-memory network: two agents share a
store and the gateways; one is active.  The leadership here is a double
driven by the test (the real one, with its lease and epochs, is tested
against PostgreSQL in test_cluster_*, and the whole pair with real
processes in test_cluster_failover): these tests show what call control
does with what the leadership tells it.  A standby redirects RSIPs to the
active and leaves the rest unanswered; an agent that takes over re-homes
every endpoint with its own N:, keeps the talking calls and clears those
in setup; an agent whose lease lapses sends nothing more and writes
nothing more.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Optional

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mgcpswitch.agent.dialplan import StaticDialPlan
from mgcpswitch.agent.model import CallState, ClusterView, LineState, ReleaseCause, Role
from mgcpswitch.agent.service import CallControlService
from mgcpswitch.agent.store import MemoryStore
from mgcpswitch.cluster.ids import call_id_prefix
from mgcpswitch.errors import StandbyError
from mgcpswitch.interfaces import IClusterMember
from mgcpswitch.mgcp import NotifiedEntity, ParamCode, decode

from .support.switch import Switch, talking

A = ("127.0.0.1", 2727)
B = ("127.0.0.4", 2727)


class Cluster:
    """The leadership, played by the test: who is active, in which epoch."""

    def __init__(self) -> None:
        self.epoch = 0
        self.active: Optional[Member] = None

    def elect(self, member: Member) -> None:
        """C{member} takes over (the last active, if alive, hears it lost)."""
        old = self.active
        if old is not None:
            old.role = Role.STANDBY
            if old.alive and old.lost_leadership is not None:
                old.lost_leadership("superseded")
        self.epoch += 1
        self.active = member
        member.role = Role.ACTIVE
        member.lease_runs = True
        member.became_active(self.epoch)


@implementer(IClusterMember)
class Member:
    def __init__(self, cluster: Cluster, name: str, store: Any) -> None:
        self.cluster = cluster
        self.name = self.member_name = name
        self.store = store
        self.role = Role.STANDBY
        self.lease_runs = False
        self.alive = True
        self.became_active: Any = None
        self.lost_leadership: Any = None

    @property
    def call_id_prefix(self) -> Optional[str]:
        return call_id_prefix(self.cluster.epoch) if self.role is Role.ACTIVE else None

    def holds_lease(self) -> bool:
        if self.role is not Role.ACTIVE:
            return False
        if not self.lease_runs:  # as the real one does: found expired, it fences at once
            self.role = Role.STANDBY
            self.lost_leadership("lease-expired")
            return False
        return True

    def view(self) -> ClusterView:
        active = self.cluster.active
        return ClusterView(self.member_name, self.role, self.cluster.epoch,
                           active.member_name if active else None, 0.1, None, 0)


class Pair(Switch):
    """Agents A (127.0.0.1, provisioned in the gateways) and B (127.0.0.4), one store."""

    def __init__(self, **options: Any) -> None:
        self.cluster = Cluster()
        self.shared = MemoryStore()
        self.members: dict[str, Member] = {}
        super().__init__(start=False, keepalive=0, store=self.shared, **options)
        self.a = self.service
        self.b = self.agent("B", B)
        self.b.startService()
        self.start()

    def _agent(self) -> CallControlService:
        return self.agent("A", A)

    def agent(self, label: str, address: tuple[str, int]) -> CallControlService:
        member = Member(self.cluster, f"ca-{label.lower()}@{address[0]}:{address[1]}", self.shared)
        self.members[label] = member
        settings = replace(self.settings, switch=replace(self.settings.switch, interface=address[0]))
        return CallControlService(
            self.reactor, settings, StaticDialPlan.from_settings(settings), self.profiles, [self.recorder],
            random_source=random.Random(self.seed + len(self.members)), cluster=member,
        )

    def elect(self, label: str) -> None:
        self.cluster.elect(self.members[label])
        self.service = self.a if label == "A" else self.b
        self.control = self.service.control

    def kill(self, label: str) -> None:
        """The agent's process dies: its socket closes and nothing of it runs again."""
        service = self.a if label == "A" else self.b
        self.members[label].alive = False
        service.port.stopListening()
        service.protocol.transactions.stop()
        service.control.stop()

    def sent_by(self, address: tuple[str, int], since: int = 0) -> list[Any]:
        """Every message the agent at C{address} sent from C{since}."""
        return [m for d in self.network.log[since:] if tuple(d.source) == address for m in decode(d.data)]


class Standby(SynchronousTestCase):
    def pair(self) -> Pair:
        s = Pair()
        self.addCleanup(s.stop)
        s.elect("A")
        s.run(3.0)
        self.assertTrue(s.registered())
        return s

    def test_members_provide_the_interface(self) -> None:
        s = self.pair()
        verifyObject(IClusterMember, s.members["B"])
        self.assertEqual(s.b.cluster(), s.members["B"].view())
        self.assertIsNone(Switch(start=False).service.cluster())

    def test_a_standby_commands_nothing(self) -> None:
        """While A is active, B sends no command to any gateway."""
        s = self.pair()
        s.run(10.0)
        self.assertEqual([m for m in s.sent_by(B) if getattr(m, "verb", None) is not None], [])
        self.assertTrue(s.idle())

    def test_an_rsip_reaching_the_standby_is_redirected(self) -> None:
        """
        A gateway provisioned with the standby's address restarts: B answers
        521 with A's name in N:, and the gateway restarts towards A.
        """
        s = self.pair()
        since = s.mark()
        for endpoint in s.gw2.endpoints:
            endpoint.notified_entity = NotifiedEntity(None, B[0], B[1])
            endpoint.ne_address = None
        s.gw2.provisioned_entity = NotifiedEntity(None, B[0], B[1])
        s.gw2.restart()
        s.run(3.0)
        answers = [m for m in s.sent_by(B, since) if getattr(m, "code", None) is not None]
        self.assertTrue(answers)
        self.assertEqual({(int(m.code), str(m.params[ParamCode.NOTIFIED_ENTITY])) for m in answers},
                         {(521, "ca-a@127.0.0.1:2727")})
        self.assertTrue(s.registered())
        self.assertGreaterEqual(s.b.control.counters["standby_redirects"], 1)

    def test_a_notification_waits_for_the_takeover(self) -> None:
        """
        An NTFY reaching the standby is left unanswered (the gateway goes on
        retransmitting); once B takes over, a retransmission is answered
        and the caller gets dial tone.
        """
        s = self.pair()
        phone = s.phone("1001")
        endpoint = s.gw1.endpoints[0]
        endpoint.notified_entity = NotifiedEntity("ca-b", B[0], B[1])
        endpoint.ne_address = None
        since = s.mark()
        s.kill("A")
        phone.off_hook()
        s.run(1.0)
        self.assertEqual(s.sent_by(B, since), [])  # not even a provisional response
        self.assertGreaterEqual(s.b.protocol.transactions.counters["unanswered"], 1)
        s.elect("B")
        s.run(5.0)
        self.assertIn("L/dl", phone.signals)
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.COLLECTING)

    def test_the_standby_admin_is_read_only(self) -> None:
        """Changes asked of a standby fail, naming the active; it still shows what it knows."""
        s = self.pair()
        failures = []
        for d in (s.b.originate("1001", "2001"), s.b.hangup("c1"), s.b.audit_endpoint("aaln/1@rgw1"),
                  s.b.set_gateway_in_service("rgw1", False), s.b.set_line_services("1001", {"dnd": True})):
            failures.append(self.failureResultOf(d, StandbyError).value)
        self.assertEqual({f.active for f in failures}, {"ca-a@127.0.0.1:2727"})
        self.assertIn("make changes at the active agent (ca-a@127.0.0.1:2727)", str(failures[0]))
        self.assertRaises(StandbyError, s.b.set_message_waiting, "1001", True)
        self.assertEqual(len(s.b.list_gateways()), 2)


class Takeover(SynchronousTestCase):
    def test_the_n_is_the_members_name_not_its_service_name(self) -> None:
        """
        The real member is a Twisted service named "cluster" (its C{name});
        the agent's N: must be the member's name of its view (found by the
        failover test with processes: gateways looked up the host "cluster").
        """
        s = Pair()
        self.addCleanup(s.stop)
        s.members["B"].name = "cluster"  # as tap.build_member's setName("cluster") does
        s.elect("A")
        s.run(3.0)
        s.kill("A")
        s.elect("B")
        s.run(5.0)
        entity = NotifiedEntity("ca-b", "127.0.0.4", 2727)
        self.assertEqual({ep.notified_entity for gw in (s.gw1, s.gw2) for ep in gw.endpoints}, {entity})

    def test_kill_the_active(self) -> None:
        """
        A dies with two calls talking, one ringing and one line at dial
        tone.  B takes over: within 5 s every endpoint has B as notified
        entity and a request of B's; the talking calls are kept and end
        normally with one record each; the ringing call is cleared, with no
        connection left; B's CallIds and X:s carry its epoch's prefix.
        """
        s = Pair()
        self.addCleanup(s.stop)
        s.elect("A")
        s.run(3.0)
        pairs = [talking(s, "1001", "2001"), talking(s, "1002", "2002")]
        before = {c.call_id for c in s.a.list_calls()}
        caller, ringing = s.phone("1003"), s.phone("2003")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2003", gap=0.05)
        s.run(1.0)
        self.assertIn("L/rg", ringing.signals)
        dialling = s.phone("1004")
        dialling.off_hook()
        s.run(0.5)
        s.kill("A")
        s.elect("B")
        s.run(5.0)
        prefix = call_id_prefix(2)
        entity = NotifiedEntity("ca-b", "127.0.0.4", 2727)
        for gateway in (s.gw1, s.gw2):
            for endpoint in gateway.endpoints:
                self.assertEqual(endpoint.notified_entity, entity, endpoint.name)
                self.assertTrue(endpoint.request_id and endpoint.request_id.startswith(prefix), endpoint.name)
        self.assertEqual({c.call_id for c in s.b.list_calls() if c.state is CallState.CONNECTED}, before)
        self.assertEqual((caller.connections, ringing.connections), ((), ()))
        self.assertNotIn("L/rg", ringing.signals)
        for a, b in pairs:
            self.assertEqual(len(a.connections) + len(b.connections), 2)
        for a, b in pairs:
            a.on_hook()
            s.run(0.5)
            b.on_hook()
            s.run(0.5)
        caller.on_hook()
        dialling.on_hook()
        s.run(1.0)
        ended = [r for r in s.shared.records if r.call_id in before]
        self.assertEqual(sorted((r.call_id, r.cause) for r in ended), sorted((c, ReleaseCause.NORMAL) for c in before))
        self.assertTrue(s.idle())
        a, b = talking(s, "1005", "2005")
        [new] = [c for c in s.b.list_calls() if c.state is CallState.CONNECTED]
        self.assertTrue(new.call_id.startswith(prefix))

    def test_a_lapsed_lease_stops_the_agent_at_once(self) -> None:
        """
        A's lease lapses (frozen, or cut off from the database): the next
        thing it would send is not sent, it stands by, what it had in
        flight is abandoned, and it writes nothing more to the store; B
        takes over and the call goes on.
        """
        s = Pair()
        self.addCleanup(s.stop)
        s.elect("A")
        s.run(3.0)
        a, b = talking(s, "1001", "2001")
        records = len(s.shared.records)
        s.members["A"].lease_runs = False
        since = s.mark()
        a.flash()  # A would answer it with a request: not sent
        s.run(1.0)
        self.assertFalse([m for m in s.sent_by(A, since) if getattr(m, "verb", None) is not None])
        self.assertEqual(s.a.cluster().role, Role.STANDBY)
        self.assertGreaterEqual(s.a.protocol.transactions.counters["commands_refused"], 1)
        self.assertEqual(s.a.control.calls(), [])  # a fresh call control waits for the next term
        self.failureResultOf(s.a.originate("1002", "2002"), StandbyError)
        s.elect("B")
        s.run(5.0)
        self.assertEqual(len(s.shared.records), records)
        [call] = s.b.list_calls()
        self.assertIs(call.state, CallState.CONNECTED)
        a.on_hook()
        b.on_hook()
        s.run(1.0)
        self.assertEqual(len(s.shared.records), records + 1)
        self.assertTrue(s.idle())
