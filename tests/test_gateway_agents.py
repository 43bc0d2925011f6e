"""
The simulated gateway's call agent list (RFC 3435 §4.3): a gateway
provisioned with several call agent addresses sends to the first; after
Max2 repetitions of a command to one address, the endpoints that were
sending there move to the next address of the list (their notified
entity follows, and their unanswered NTFYs go there at once, under the
same transaction ids); a command's C{N:} still moves an endpoint anywhere
(§4.1).  In memory, on the harness's clock.
"""

from __future__ import annotations

from twisted.python import usage

from mgcpswitch.gwtap import Options
from mgcpswitch.mgcp import NotifiedEntity, Verb
from mgcpswitch.transaction import TransactionConfig

from .support.gateway import CA, GatewayTestCase, ScriptedAgent

BACKUP = ("127.0.0.1", 2737)
#: Fast retransmissions: Max1 after 2 repetitions, Max2 after 3.
FAST = TransactionConfig(initial_rto=0.1, min_rto=0.1, rto_max=0.4, max1=2, max2=3, t_max=20.0)


class CallAgentList(GatewayTestCase):
    """Two call agents: the provisioned one and a backup, on one clock."""

    harness_options = {"backup_agents": (BACKUP,), "transaction": FAST}

    def setUp(self) -> None:
        super().setUp()
        self.backup = ScriptedAgent()
        self.backup_port = self.h.reactor.listenUDP(BACKUP[1], self.backup, interface=BACKUP[0])
        self.addCleanup(self.backup_port.stopListening)
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)")

    def silence_primary(self) -> None:
        self.h.agent.answer = lambda command: None

    def test_ntfy_moves_to_the_backup_after_max2(self) -> None:
        """The primary is silent: after Max2 repetitions the same NTFY (same txid) goes to the backup, which answers."""
        self.silence_primary()
        self.h.line(1).off_hook()
        self.h.pump()
        [first] = self.h.ntfys()
        self.assertEqual(self.backup.commands(), [])
        self.h.advance(3.0)
        [moved] = self.backup.commands(Verb.NTFY)
        self.assertEqual(moved.transaction_id, first.transaction_id)
        self.assertEqual(self.h.gateway.endpoints[0].sent, [], "the backup's answer completed it")
        self.assertEqual(self.h.line(1).notified_entity, NotifiedEntity(None, "127.0.0.1", 2737))
        self.assertEqual(self.h.gateway.provisioned_entity, NotifiedEntity(None, "127.0.0.1", 2737))

    def test_only_endpoints_sending_there_move(self) -> None:
        """An endpoint whose N: names another agent stays with it when the primary goes."""
        self.rqnt("aaln/2", "X: 2", "R: L/hd(N)", "N: ca@127.0.0.1:2747")
        self.silence_primary()
        self.h.line(1).off_hook()
        self.h.advance(3.0)
        self.assertEqual(self.h.line(1).notified_entity.port, 2737)
        self.assertEqual(self.h.line(2).notified_entity, NotifiedEntity.parse("ca@127.0.0.1:2747"))
        self.assertEqual(self.h.line(3).notified_entity.port, 2737, "idle endpoints of the dead agent follow")

    def test_n_moves_an_endpoint_and_the_list_wraps(self) -> None:
        """N: to the backup moves the endpoint (§4.1); when the backup dies in turn, it goes back to the first."""
        self.h.request("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 3", "R: L/hd(N)", "N: ca2@127.0.0.1:2737")
        self.backup.answer = lambda command: None
        self.h.line(1).off_hook()
        self.h.pump()
        [sent] = self.backup.commands(Verb.NTFY)
        self.h.advance(3.0)
        self.assertEqual([c.transaction_id for c in self.h.ntfys()], [sent.transaction_id])
        self.assertEqual(self.h.line(1).notified_entity, NotifiedEntity(None, "127.0.0.1", 2727))

    def test_an_agent_outside_the_list_moves_nothing(self) -> None:
        """Max2 towards an address that is not in the list (an N: elsewhere) leaves the endpoint there."""
        self.h.request("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 4", "R: L/hd(N)", "N: ca@127.0.0.1:2747")
        self.h.line(1).off_hook()
        self.h.advance(3.0)
        self.assertEqual(self.h.line(1).notified_entity, NotifiedEntity.parse("ca@127.0.0.1:2747"))
        self.assertEqual(self.h.gateway.provisioned_entity, NotifiedEntity(None, "127.0.0.1", 2727))


class SingleCallAgent(GatewayTestCase):
    """Without a list, nothing moves: today's behaviour."""

    harness_options = {"transaction": FAST}

    def test_a_lone_agent_keeps_its_endpoints(self) -> None:
        """Max2 towards the only agent: the endpoint stays (and goes disconnected on the timeout, §4.4.7)."""
        self.h.agent.answer = lambda command: None
        self.h.line(1).off_hook()
        self.h.advance(3.0)
        self.assertEqual(self.h.line(1).notified_entity, NotifiedEntity(None, "127.0.0.1", 2727))


class CallAgentOption(GatewayTestCase):
    """C{mgcpgateway --call-agent A,B}."""

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_a_list(self) -> None:
        """The first address is provisioned, the others are backups, in order."""
        config = self.parse("--call-agent", "127.0.0.1:2727, 127.0.0.1:2737,[::1]")["config"]
        self.assertEqual(config.call_agent, CA)
        self.assertEqual(config.backup_agents, (BACKUP, ("::1", 2727)))
        self.assertEqual(config.call_agents, (CA, BACKUP, ("::1", 2727)))

    def test_a_bad_entry_names_itself(self) -> None:
        """A bad address anywhere in the list is a usage error naming it."""
        with self.assertRaises(usage.UsageError) as caught:
            self.parse("--call-agent", "127.0.0.1:2727,host:port")
        self.assertIn("--call-agent port must be 1-65535", str(caught.exception))
