"""
The datagram protocols over real UDP on 127.0.0.1 (port 0): one call agent
and one gateway exchange real transactions, piggybacked ones included.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from mgcpswitch.interfaces import ICommandHandler
from mgcpswitch.mgcp import Command, Response, Verb
from mgcpswitch.transaction import Role
from mgcpswitch.transport import CALL_AGENT_PORT, GATEWAY_PORT, CallAgentProtocol, GatewayProtocol


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
