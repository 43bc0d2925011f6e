"""
C{twistd mgcpgateway}: the options, the service it makes, the plugin, and
one gateway on real UDP (loopback, port 0) talking to a real call agent
protocol.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.service import IServiceMaker, MultiService
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mgcpswitch import gwtap
from mgcpswitch.gateway import FaultConfig, GatewayConfig, GatewayService, SimulatedGateway
from mgcpswitch.interfaces import ICommandHandler, IPeerListener
from mgcpswitch.mgcp import Command, ParamCode, Response, Verb
from mgcpswitch.testing import MemoryReactor
from mgcpswitch.transport import CallAgentProtocol


def parse(*args: str) -> gwtap.Options:
    options = gwtap.Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    """Options and their validation."""

    def test_defaults(self) -> None:
        """Without arguments: 8 lines on 127.0.0.1:2427, call agent 127.0.0.1:2727, no faults."""
        config = parse()["config"]
        self.assertEqual(config, GatewayConfig())

    def test_every_option(self) -> None:
        """Each option lands in the config."""
        config = parse(
            "--port", "0", "--interface", "127.0.0.5", "--domain", "gw.example", "--lines", "3",
            "--call-agent", "ca.example:2728", "--restart-delay", "2.5", "--drop", "0.1",
            "--duplicate", "0.2", "--delay", "0.3", "--delay-seconds", "0.7", "--slow", "0.4",
            "--slow-seconds", "2", "--seed", "42", "--no-rtp",
        )["config"]
        self.assertEqual((config.port, config.interface, config.domain, config.lines), (0, "127.0.0.5", "gw.example", 3))
        self.assertEqual((config.call_agent, config.restart_delay, config.rtp), (("ca.example", 2728), 2.5, False))
        self.assertEqual(config.faults, FaultConfig(0.1, 0.2, 0.3, 0.7, 0.4, 2.0, 42))
        self.assertEqual(parse("--call-agent", "10.0.0.1")["config"].call_agent, ("10.0.0.1", 2727))
        self.assertEqual(parse("--call-agent", "[::1]:2000")["config"].call_agent, ("::1", 2000))
        self.assertTrue(parse("--media")["config"].media)

    def test_errors_are_clear(self) -> None:
        """Bad values raise UsageError naming the option and the rule."""
        cases = {
            ("--drop", "1.5"): "--drop must be a fraction in [0, 1]",
            ("--slow", "x"): "--slow must be a fraction in [0, 1]",
            ("--call-agent", "host:port"): "--call-agent port must be 1-65535",
            ("--call-agent", ":2727"): "--call-agent must be HOST:PORT",
            ("--call-agent", "::1:2727"): "write an IPv6 address as [ADDRESS]:PORT",
            ("--port", "70000"): "--port must be a port number",
            ("--lines", "0"): "--lines must be a number of lines",
            ("--domain", "a@b"): "--domain must be a domain name",
            ("--restart-delay", "-1"): "--restart-delay must be a number of seconds",
            ("--seed", "x"): "--seed must be an integer",
            ("--media", "--no-rtp"): "--media needs RTP ports",
        }
        for args, message in cases.items():
            error = self.assertRaises(UsageError, parse, *args)
            self.assertIn(message, str(error), args)

    def test_make_service(self) -> None:
        """makeService gives a MultiService whose child is the named GatewayService."""
        service = gwtap.makeService(parse("--lines", "2", "--port", "0"))
        self.assertIsInstance(service, MultiService)
        child = service.getServiceNamed("mgcpgateway")
        self.assertIsInstance(child, GatewayService)
        self.assertEqual(child.gateway.config.lines, 2)

    def test_plugin_is_found(self) -> None:
        """twistd finds the mgcpgateway plugin, which points at mgcpswitch.gwtap."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("mgcpgateway", makers)
        self.assertIsInstance(makers["mgcpgateway"].options(), gwtap.Options)

    def test_service_starts_and_stops_the_gateway(self) -> None:
        """GatewayService listens and sends the RSIP on start; stop leaves no timer."""
        clock = MemoryReactor()
        gateway = SimulatedGateway(clock, GatewayConfig(lines=1))
        verifyObject(ICommandHandler, gateway)
        verifyObject(IPeerListener, gateway)
        service = GatewayService(gateway)
        service.startService()
        self.assertTrue(service.running)
        self.assertEqual(gateway.address, ("127.0.0.1", 2427))
        clock.network.pump()
        self.assertTrue(any(d.data.startswith(b"RSIP") for d in clock.network.log))
        self.successResultOf(service.stopService())
        clock.network.pump()
        self.assertEqual((clock.getDelayedCalls(), clock.network.ports), ([], {}))


@implementer(ICommandHandler)
class Agent:
    def __init__(self) -> None:
        self.received: list[Command] = []
        self.waiting: list[tuple[Verb, Deferred[Command]]] = []

    def command_received(self, command: Command, source: Any) -> Response:
        self.received.append(command)
        for verb, d in list(self.waiting):
            if verb is command.verb:
                self.waiting.remove((verb, d))
                d.callback(command)
        return Response.create(200, command.transaction_id)

    def next(self, verb: Verb) -> Deferred[Command]:
        for command in self.received:
            if command.verb is verb:
                self.received.remove(command)
                d: Deferred[Command] = Deferred()
                d.callback(command)
                return d
        d = Deferred()
        self.waiting.append((verb, d))
        return d


class RealUDP(TestCase):
    """The gateway on real sockets: RSIP, CRCX with a really bound RTP port, NTFY, DLCX."""

    timeout = 20

    @inlineCallbacks
    def test_call_agent_and_gateway_over_loopback(self) -> Any:
        """RSIP arrives; the CRCX's SDP names a port that is really bound; stop releases it."""
        agent = Agent()
        protocol = CallAgentProtocol(reactor, agent)
        agent_port = reactor.listenUDP(0, protocol, interface="127.0.0.1")
        self.addCleanup(agent_port.stopListening)
        config = GatewayConfig(lines=2, port=0, call_agent=("127.0.0.1", agent_port.getHost().port))
        gateway = SimulatedGateway(reactor, config)
        gateway.start()
        self.addCleanup(gateway.stop)
        rsip = yield agent.next(Verb.RSIP).addTimeout(10, reactor)
        self.assertEqual(rsip.endpoint, "*@rgw1")
        send = lambda command: protocol.send_command(command, gateway.address).addTimeout(10, reactor)  # noqa: E731
        crcx = yield send(Command.create(Verb.CRCX, 0, "aaln/1@rgw1", call_id="A1", mode="recvonly",
                                         request_id="1", requested_events="L/hd(N)"))
        self.assertEqual(crcx.code, 200)
        port = crcx.sdp.rtp_address[1]
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        self.assertRaises(OSError, probe.bind, ("127.0.0.1", port))
        answered = gateway.line(1).off_hook()
        ntfy = yield agent.next(Verb.NTFY).addTimeout(10, reactor)
        self.assertEqual((ntfy.request_id, str(ntfy.params[ParamCode.OBSERVED_EVENTS][0])), ("1", "L/hd"))
        response = yield answered
        self.assertEqual(response.code, 200)
        dlcx = yield send(Command.create(Verb.DLCX, 0, "aaln/1@rgw1", call_id="A1", connection_id=crcx.connection_id))
        self.assertEqual(dlcx.code, 250)
        probe.bind(("127.0.0.1", port))
