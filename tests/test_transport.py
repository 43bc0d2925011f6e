"""
The datagram protocols over real UDP on 127.0.0.1 (port 0): one call agent
and one gateway exchange real transactions, piggybacked ones included; and
the direct socket send and the reader they use on such ports.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any, Callable

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from mgcpswitch.interfaces import ICommandHandler
from mgcpswitch.mgcp import Command, Response, Verb
from mgcpswitch.testing import MemoryReactor
from mgcpswitch.transaction import Role
from mgcpswitch.transport import (
    CALL_AGENT_PORT, GATEWAY_PORT, READ_TURN, CallAgentProtocol, GatewayProtocol, direct_sendto, reader,
)


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


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class Reading(TestCase):
    """
    The agent's and the gateways' own read of Twisted's UDP port
    (L{mgcpswitch.transport.reader}): one datagram and a question to the
    kernel per wake-up, reading on through a burst; over real sockets.
    """

    timeout = 30

    def setUp(self) -> None:
        if not sys.platform.startswith("linux"):
            raise SkipTest("the reader is installed on Linux only")
        self.handler = Echo()
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.sender.close)
        self.sender.bind(("127.0.0.1", 0))

    def listen(self, protocol: Any, interface: str = "127.0.0.1") -> Any:
        port = reactor.listenUDP(0, protocol, interface=interface)
        self.addCleanup(port.stopListening)
        return port

    def until(self, predicate: Callable[[], Any]) -> Deferred[Any]:
        """Fire when predicate() holds, polling on the reactor (the datagrams are on their way)."""

        def check() -> None:
            if predicate():
                loop.stop()

        loop = task.LoopingCall(check)
        loop.clock = reactor
        return loop.start(0.005, now=True).addTimeout(10, reactor)

    @staticmethod
    def auep(n: int) -> bytes:
        return b"AUEP %d aaln/%d@gw MGCP 1.0\r\n" % (n, n)

    def transaction_ids(self) -> list[int]:
        return [command.transaction_id for command, _ in self.handler.seen]

    @inlineCallbacks
    def test_installed_on_a_plain_port(self) -> Any:
        """A listening MGCP protocol reads its port with the reader; another protocol keeps Twisted's."""
        port = self.listen(CallAgentProtocol(reactor, self.handler))
        self.assertIn("doRead", vars(port))
        other = self.listen(DatagramProtocol())
        self.assertNotIn("doRead", vars(other))
        self.sender.sendto(self.auep(1), ("127.0.0.1", port.getHost().port))
        yield self.until(lambda: self.handler.seen)
        self.assertEqual(self.handler.seen[0][1], self.sender.getsockname())

    @inlineCallbacks
    def test_burst_delivered_in_order(self) -> Any:
        """A burst queued before the reactor reads again is delivered whole and in order."""
        port = self.listen(CallAgentProtocol(reactor, self.handler))
        self.sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        address = ("127.0.0.1", port.getHost().port)
        for n in range(1, 101):
            self.sender.sendto(self.auep(n), address)
        yield self.until(lambda: len(self.handler.seen) >= 100)
        self.assertEqual(self.transaction_ids(), list(range(1, 101)))
        for n in range(101, 104):  # and single datagrams after it
            self.sender.sendto(self.auep(n), address)
            yield self.until(lambda: len(self.handler.seen) >= n)
        self.assertEqual(self.transaction_ids(), list(range(1, 104)))

    @inlineCallbacks
    def test_gone_peer_does_not_stop_reading(self) -> Any:
        """A datagram written to a port nobody holds any more costs the next datagram nothing."""
        agent = CallAgentProtocol(reactor, self.handler)
        port = self.listen(agent)
        gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        gone.bind(("127.0.0.1", 0))
        gone_address = gone.getsockname()
        gone.close()
        agent._write(b"200 1 OK\r\n", gone_address)
        self.sender.sendto(self.auep(7), ("127.0.0.1", port.getHost().port))
        yield self.until(lambda: self.handler.seen)
        self.assertEqual(self.transaction_ids(), [7])
        self.assertTrue(port.connected)

    def test_read_errors(self) -> None:
        """
        As Twisted's port does: ECONNREFUSED (an ICMP error reported to the
        socket) and EAGAIN end the read quietly, the next read goes on;
        any other error is raised (the reactor logs it and drops the port).
        """
        idle = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # FIONREAD asks its empty queue
        self.addCleanup(idle.close)
        script: list[Any] = [
            OSError(errno.ECONNREFUSED, "refused"), (b"one", ("127.0.0.1", 1)),
            BlockingIOError(errno.EAGAIN, "again"), OSError(errno.EBADF, "bad"),
        ]

        class Socket:
            def fileno(self) -> int:
                return idle.fileno()

            def recvfrom(self, size: int) -> Any:
                step = script.pop(0)
                if isinstance(step, BaseException):
                    raise step
                return step

        class FakePort:
            socket = Socket()
            maxPacketSize = 8192
            maxThroughput = 256 * 1024

        delivered: list[Any] = []
        do_read = reader(FakePort(), lambda d, a: delivered.append((d, a)), Logger())  # type: ignore[arg-type]
        do_read()
        do_read()
        self.assertEqual(delivered, [(b"one", ("127.0.0.1", 1))])
        do_read()
        self.assertRaises(OSError, do_read)

    def test_a_turn_reads_at_most_read_turn_datagrams(self) -> None:
        """
        A backlog is read L{READ_TURN} datagrams a reactor turn, not until
        Twisted's 256 KiB, so that timers run between; the next call reads
        on where the last stopped, and the last one ends at C{EAGAIN}.
        """
        if not sys.platform.startswith("linux"):
            raise SkipTest("the reader is installed on Linux only")
        queue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(queue.close)
        queue.bind(("127.0.0.1", 0))
        queue.setblocking(False)
        backlog = 2 * READ_TURN + 5
        for n in range(backlog):
            self.sender.sendto(b"%d" % n, queue.getsockname())

        class FakePort:
            socket = queue
            maxPacketSize = 8192
            maxThroughput = 256 * 1024

        delivered: list[bytes] = []
        do_read = reader(FakePort(), lambda d, a: delivered.append(d), Logger())  # type: ignore[arg-type]
        turns = []
        while len(delivered) < backlog and len(turns) < 10:
            do_read()
            turns.append(len(delivered) - sum(turns))
        self.assertEqual(turns, [READ_TURN, READ_TURN, 5])
        self.assertEqual(delivered, [b"%d" % n for n in range(backlog)])
        do_read()  # nothing queued: ends at EAGAIN
        self.assertEqual(len(delivered), backlog)

    @inlineCallbacks
    def test_handler_error_is_logged_and_reading_goes_on(self) -> Any:
        """An exception out of the datagram's handling is logged; the port stays up and reads the next."""
        failures = []

        class Fragile(CallAgentProtocol):
            def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
                if not failures:
                    failures.append(datagram)
                    raise RuntimeError("a bug")
                super().datagramReceived(datagram, addr)

        port = self.listen(Fragile(reactor, self.handler))
        address = ("127.0.0.1", port.getHost().port)
        self.sender.sendto(self.auep(1), address)
        self.sender.sendto(self.auep(2), address)
        yield self.until(lambda: self.handler.seen)
        self.assertEqual(self.transaction_ids(), [2])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @inlineCallbacks
    def test_accept_filter(self) -> Any:
        """Datagrams from a refused source never reach the transaction layer."""
        refused = []

        def accept(address: Any) -> bool:
            if address[1] == self.sender.getsockname()[1]:
                refused.append(address)
                return False
            return True

        port = self.listen(CallAgentProtocol(reactor, self.handler, accept=accept))
        self.sender.sendto(self.auep(1), ("127.0.0.1", port.getHost().port))
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(other.close)
        other.sendto(self.auep(2), ("127.0.0.1", port.getHost().port))
        yield self.until(lambda: self.handler.seen)
        self.assertEqual((self.transaction_ids(), len(refused)), ([2], 1))

    @inlineCallbacks
    def test_listen_again(self) -> Any:
        """
        A protocol that stops listening and listens again (as the service
        does on restart) reads its new port with a new reader.  (Its
        transaction layer stays stopped, as it did before: the datagram is
        seen at the accept filter.)
        """
        seen: list[Any] = []
        protocol = CallAgentProtocol(reactor, self.handler, accept=lambda a: bool(seen.append(a)) or True)
        first = reactor.listenUDP(0, protocol, interface="127.0.0.1")
        number = first.getHost().port
        yield first.stopListening()
        port = self.listen_on(number, protocol)
        self.assertIsNot(vars(port)["doRead"], vars(first)["doRead"])
        self.sender.sendto(self.auep(3), ("127.0.0.1", number))
        yield self.until(lambda: seen)
        self.assertEqual(seen, [self.sender.getsockname()])

    def listen_on(self, number: int, protocol: Any) -> Any:
        port = reactor.listenUDP(number, protocol, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port

    @inlineCallbacks
    def test_ipv6_socket_sees_ipv4_peers_plain(self) -> Any:
        """On ::, an IPv4 peer's source arrives as its plain IPv4 address, an IPv6 one as (host, port)."""
        if not _ipv6_loopback():
            raise SkipTest("no IPv6 loopback")
        port = self.listen(CallAgentProtocol(reactor, self.handler), interface="::")
        number = port.getHost().port
        self.sender.sendto(self.auep(1), ("127.0.0.1", number))
        yield self.until(lambda: self.handler.seen)
        sender6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(sender6.close)
        sender6.sendto(self.auep(2), ("::1", number))
        yield self.until(lambda: len(self.handler.seen) == 2)
        self.assertEqual(
            [source for _, source in self.handler.seen],
            [self.sender.getsockname(), ("::1", sender6.getsockname()[1])],
        )

    @inlineCallbacks
    def test_subclass_reading_kept(self) -> Any:
        """
        A subclass's own datagramReceived (the fault-injecting gateway's)
        still gets every datagram, with the (host, port) Twisted gives:
        v4-mapped on an IPv6 socket.
        """
        got: list[Any] = []

        class Own(CallAgentProtocol):
            def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
                got.append(addr)
                super().datagramReceived(datagram, addr)

        port = self.listen(Own(reactor, self.handler))
        self.sender.sendto(self.auep(1), ("127.0.0.1", port.getHost().port))
        yield self.until(lambda: self.handler.seen)
        self.assertEqual(got, [self.sender.getsockname()])
        if not _ipv6_loopback():
            return
        port6 = self.listen(Own(reactor, self.handler), interface="::")
        self.sender.sendto(self.auep(2), ("127.0.0.1", port6.getHost().port))
        yield self.until(lambda: len(self.handler.seen) == 2)
        self.assertEqual(got[1], ("::ffff:127.0.0.1", self.sender.getsockname()[1]))
        self.assertEqual(self.handler.seen[1][1], self.sender.getsockname())
