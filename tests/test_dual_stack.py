"""
Dual stack (issue 17): an agent listening on C{::} serves IPv4 and IPv6
gateways alike.  An IPv6 socket reports an IPv4 peer v4-mapped
(C{::ffff:127.0.0.1}) and cannot write to a plain IPv4 address, so the
transport speaks plain addresses to everything above it and maps them on
the way out; configured addresses have one spelling; the simulated
gateways aim at the loopback of their own family.  Then the whole switch
on loopback, agent on C{::}, one gateway on 127.0.0.1 and one on ::1, the
admin on ::1 and mgcpctl given C{http://[::1]:PORT}.
"""

from __future__ import annotations

import io
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from mgcpswitch import ctl
from mgcpswitch.config import parse_settings
from mgcpswitch.errors import TransactionAborted
from mgcpswitch.interfaces import ICommandHandler
from mgcpswitch.mgcp import Command, Response, Verb
from mgcpswitch.transport import CallAgentProtocol, connect_address, plain_address

from .support.live import LiveSwitch
from .support.web import require_ipv6


@implementer(ICommandHandler)
class _Handler:
    """Answers every command 200 and keeps (verb, source)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Verb, Any]] = []

    def command_received(self, command: Command, source: Any) -> Response:
        self.seen.append((command.verb, source))
        return Response.create(200, command.transaction_id, "OK")


class _Transport:
    """A datagram transport bound to C{host}: keeps what is written where."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.written: list[tuple[bytes, Any]] = []

    def getHost(self) -> Any:  # noqa: N802
        return self.host

    def write(self, data: bytes, address: Any) -> None:
        self.written.append((data, address))


def _protocol(host: Any, accepted: list[Any]) -> tuple[CallAgentProtocol, _Handler, _Transport]:
    from twisted.internet.task import Clock

    handler = _Handler()
    protocol = CallAgentProtocol(Clock(), handler, accept=lambda a: accepted.append(a) or a[0] == "127.0.0.3")  # type: ignore[arg-type]
    transport = _Transport(host)
    protocol.makeConnection(transport)
    return protocol, handler, transport


class Addresses(SynchronousTestCase):
    def test_plain_address(self) -> None:
        """A v4-mapped host is written as its IPv4 address; every other address is left as it is."""
        for given, plain in {
            ("::ffff:127.0.0.1", 2427): ("127.0.0.1", 2427),
            ("::FFFF:7f00:3", 2427): ("127.0.0.3", 2427),
            ("::1", 2427): ("::1", 2427),
            ("127.0.0.1", 2427): ("127.0.0.1", 2427),
            ("::ffff:zz", 2427): ("::ffff:zz", 2427),
        }.items():
            self.assertEqual(plain_address(given), plain, given)

    def test_an_ipv6_socket_speaks_plain_ipv4_to_the_layers_above(self) -> None:
        """
        On an IPv6 socket (the agent on ::), an IPv4 gateway's datagram
        arrives v4-mapped: the source filter and the handler see the plain
        address the gateway is configured with, and the answer goes back
        v4-mapped (an IPv6 socket takes no plain IPv4 address).
        """
        accepted: list[Any] = []
        protocol, handler, transport = _protocol(IPv6Address("UDP", "::", 2727), accepted)
        protocol.datagramReceived(b"RSIP 77 *@rgw2 MGCP 1.0\r\nRM: restart\r\n", ("::ffff:127.0.0.3", 2427))
        self.assertEqual(accepted, [("127.0.0.3", 2427)])
        self.assertEqual(handler.seen, [(Verb.RSIP, ("127.0.0.3", 2427))])
        [(data, address)] = transport.written
        self.assertTrue(data.startswith(b"200 77 "))
        self.assertEqual(address, ("::ffff:127.0.0.3", 2427))
        sent = [protocol.send_command(Command.create(Verb.AUEP, 5, "aaln/1@rgw2"), ("127.0.0.3", 2427)),
                protocol.send_command(Command.create(Verb.AUEP, 6, "aaln/1@rgw6"), ("::1", 2427))]
        self.assertEqual([a for _, a in transport.written[1:]], [("::ffff:127.0.0.3", 2427), ("::1", 2427)])
        protocol.stopProtocol()
        for d in sent:
            self.failureResultOf(d, TransactionAborted)

    def test_an_ipv4_socket_writes_ipv4(self) -> None:
        """On an IPv4 socket nothing is mapped: the datagram goes to the address given."""
        protocol, _, transport = _protocol(IPv4Address("UDP", "127.0.0.1", 2727), [])
        sent = protocol.send_command(Command.create(Verb.AUEP, 5, "aaln/1@rgw2"), ("127.0.0.3", 2427))
        self.assertEqual([a for _, a in transport.written], [("127.0.0.3", 2427)])
        protocol.stopProtocol()
        self.failureResultOf(sent, TransactionAborted)

    def test_configured_addresses_have_one_spelling(self) -> None:
        """A gateway written v4-mapped or with IPv6 zeros spelt out is keyed as sockets report it."""
        settings = parse_settings(
            "[switch]\ninterface = ::\nobservers =\n"
            "[gateway:a]\naddress = ::ffff:127.0.0.3\nlines = 1\nnumbers = 1001\n"
            "[gateway:b]\naddress = 0:0:0:0:0:0:0:1\nlines = 1\nnumbers = 2001\n"
        )
        self.assertEqual([g.address for g in settings.gateways], ["127.0.0.3", "::1"])

    def test_connect_address(self) -> None:
        """An agent on a wildcard is reached on the loopback of the gateway's own family."""
        for interface, local, host in (
            ("0.0.0.0", "127.0.0.3", "127.0.0.1"), ("", "127.0.0.3", "127.0.0.1"),
            ("::", "127.0.0.3", "127.0.0.1"), ("::", "::1", "::1"), ("::", None, "::1"),
            ("127.0.0.7", "127.0.0.3", "127.0.0.7"), ("::1", "::1", "::1"),
        ):
            self.assertEqual(connect_address(interface, local), host, (interface, local))


def _free(family: int, kind: int, host: str) -> int:
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


DUAL = """\
[switch]
interface = ::
port = {agent}
observers =
[store]
url = memory
[web]
listen = tcp6:{web}:interface=\\:\\:1
[gateway:rgw1]
address = 127.0.0.1
port = {gw1}
lines = 8
numbers = 1001-1008
[gateway:rgw2]
address = ::1
port = {gw2}
lines = 8
numbers = 2001-2008
[simulator]
gateways = rgw1, rgw2
"""


class DualStackSwitch(TestCase):
    timeout = 30

    async def test_ipv4_and_ipv6_gateways_on_one_agent(self) -> None:
        """
        The agent on ::, rgw1 on 127.0.0.1 and rgw2 on ::1 (real UDP): both
        register and every line is audited idle; a call from the IPv4
        gateway to the IPv6 one rings, is answered and ends; the admin on
        ::1 answers mgcpctl at http://[::1]:PORT with both gateways up.
        """
        require_ipv6()
        ports = {
            "agent": _free(socket.AF_INET6, socket.SOCK_DGRAM, "::"),
            "gw1": _free(socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1"),
            "gw2": _free(socket.AF_INET6, socket.SOCK_DGRAM, "::1"),
            "web": _free(socket.AF_INET6, socket.SOCK_STREAM, "::1"),
        }
        switch = LiveSwitch(parse_settings(DUAL.format(**ports), "<dual stack>"), ports)
        switch.url = f"http://[::1]:{ports['web']}"
        switch.service.startService()
        switch.running = True
        self.addCleanup(switch.stop)
        await switch.wait_until(switch.registered, 10, "both gateways up")
        self.assertEqual(switch.gateways["rgw1"].config.call_agent, ("127.0.0.1", ports["agent"]))
        self.assertEqual(switch.gateways["rgw2"].config.call_agent, ("::1", ports["agent"]))
        self.assertEqual(switch.control.control.counters["dropped_unknown_source"], 0)

        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        out, err = io.StringIO(), io.StringIO()
        code = await ctl.run(reactor, ["--url", switch.url, "gateways"], out, err, env={}, stdin=io.StringIO(""),
                             pool=pool)
        self.assertEqual((code, err.getvalue()), (0, ""))
        rows = [line.split() for line in out.getvalue().splitlines()[1:]]
        self.assertEqual(sorted((row[0], row[1], row[3]) for row in rows), [
            ("rgw1", "up", f"127.0.0.1:{ports['gw1']}"), ("rgw2", "up", f"[::1]:{ports['gw2']}"),
        ], out.getvalue())

        caller, callee = switch.phone("aaln/1@rgw1"), switch.phone("aaln/2@rgw2")
        caller.off_hook()
        await caller.when_signal("L/dl")
        await caller.dial("2002", gap=0.02)
        await callee.when(lambda line: line.ringing)
        callee.off_hook()
        await switch.wait_until(
            lambda: switch.control.get_endpoint("aaln/2@rgw2").state.value == "connected", 10, "answered")
        [a], [b] = caller.connections, callee.connections
        self.assertEqual((a.mode, b.mode), ("sendrecv", "sendrecv"))
        caller.on_hook()
        callee.on_hook()
        await switch.wait_until(switch.idle, 10, "every line idle")
        [call] = switch.control.list_calls()
        self.assertEqual(call.cause.value, "normal")
