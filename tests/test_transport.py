"""
The datagram protocols over real UDP on 127.0.0.1 (port 0): one call agent
and one gateway exchange real transactions, piggybacked ones included; and
the direct socket send they use on such ports.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from mgcpswitch.interfaces import ICommandHandler
from mgcpswitch.mgcp import Command, Response, Verb
from mgcpswitch.testing import MemoryReactor
from mgcpswitch.transaction import Role
from mgcpswitch.transport import CALL_AGENT_PORT, GATEWAY_PORT, CallAgentProtocol, GatewayProtocol, direct_sendto


@implementer(ICommandHandler)
class Echo:
    def __init__(self) -> None:
        self.seen: list[tuple[Command, Any]] = []

    def command_received(self, command: Command, source: Any) -> Response:
        self.seen.append((command, source))
        return Response.create(200, command.transaction_id, "OK", request_id=command.request_id)


class RealUDP(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.agent_handler, self.gateway_handler = Echo(), Echo()
        self.agent = CallAgentProtocol(reactor, self.agent_handler)
        self.gateway = GatewayProtocol(reactor, self.gateway_handler)
        self.agent_port = reactor.listenUDP(0, self.agent, interface="127.0.0.1")
        self.gateway_port = reactor.listenUDP(0, self.gateway, interface="127.0.0.1")
        self.addCleanup(self.agent_port.stopListening)
        self.addCleanup(self.gateway_port.stopListening)

    def address(self, port: Any) -> tuple[str, int]:
        return ("127.0.0.1", port.getHost().port)

    def test_roles_and_default_ports(self) -> None:
        """The protocols know their role and RFC 3435 default port."""
        self.assertEqual((self.agent.role, self.agent.default_port), (Role.CALL_AGENT, CALL_AGENT_PORT))
        self.assertEqual((self.gateway.role, self.gateway.default_port), (Role.GATEWAY, GATEWAY_PORT))

    @inlineCallbacks
    def test_transactions_both_ways(self) -> Any:
        """The agent sends an RQNT and the gateway an NTFY; each gets its 200 over real UDP."""
        rqnt = Command.create(Verb.RQNT, 0, "aaln/1@gw", request_id="1", requested_events="L/hd(N)")
        response = yield self.agent.send_command(rqnt, self.address(self.gateway_port)).addTimeout(10, reactor)
        self.assertEqual((response.code, response.request_id), (200, "1"))
        ntfy = Command.create(Verb.NTFY, 0, "aaln/1@gw", request_id="1", observed_events="L/hd")
        response = yield self.gateway.send_command(ntfy, self.address(self.agent_port)).addTimeout(10, reactor)
        self.assertEqual(response.code, 200)
        [(received, source)] = self.agent_handler.seen
        self.assertEqual(received.params, ntfy.with_transaction_id(received.transaction_id).params)
        self.assertEqual(source, self.address(self.gateway_port))

    @inlineCallbacks
    def test_piggybacked_commands(self) -> Any:
        """Two piggybacked commands in one real datagram both get answered."""
        commands = [
            Command.create(Verb.AUEP, 0, f"aaln/{n}@gw") for n in (1, 2)
        ]
        ds = self.agent.transactions.send_commands(commands, self.address(self.gateway_port))
        responses = yield gatherResults([d.addTimeout(10, reactor) for d in ds])
        self.assertEqual([r.code for r in responses], [200, 200])
        self.assertEqual(len(self.gateway_handler.seen), 2)


class DirectSend(TestCase):
    """The one shortcut past Twisted's UDP port: its socket's sendto, found through public interfaces."""

    timeout = 30

    def listen(self, protocol: Any) -> Any:
        port = reactor.listenUDP(0, protocol, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port

    @inlineCallbacks
    def test_unconnected_port_sends_with_its_socket(self) -> Any:
        """On a listening port the protocol writes with the socket's own sendto, and datagrams arrive."""
        agent = CallAgentProtocol(reactor, Echo())
        gateway_handler = Echo()
        gateway = GatewayProtocol(reactor, gateway_handler)
        port = self.listen(agent)
        gateway_port = self.listen(gateway)
        self.assertEqual(direct_sendto(port), port.getHandle().sendto)
        self.assertEqual(agent._sendto, port.getHandle().sendto)
        auep = Command.create(Verb.AUEP, 0, "aaln/1@gw")
        response = yield agent.send_command(auep, ("127.0.0.1", gateway_port.getHost().port)).addTimeout(10, reactor)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(gateway_handler.seen), 1)

    def test_connected_port_is_left_to_the_transport(self) -> None:
        """A port connected to a peer takes no address: no shortcut."""
        port = self.listen(DatagramProtocol())
        port.connect("127.0.0.1", 9)
        self.assertIsNone(direct_sendto(port))

    def test_memory_transport_is_left_alone(self) -> None:
        """A transport without a socket handle (the in-memory network) gets no shortcut."""
        memory = MemoryReactor()
        protocol = CallAgentProtocol(memory, Echo())
        memory.listenUDP(2727, protocol, interface="127.0.0.1")
        self.assertIsNone(direct_sendto(protocol.transport))
        self.assertIsNone(protocol._sendto)
