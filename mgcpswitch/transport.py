# -*- test-case-name: tests.test_transport -*-
"""
The two MGCP datagram protocols: thin shells that hand datagrams to the
shared L{TransactionLayer} and give it the transport to write to.

L{CallAgentProtocol} listens on UDP 2727 by default and
L{GatewayProtocol} on 2427 (RFC 3435 §3.5); the only difference between
them is how duplicates are keyed (L{Role}).  On Twisted's own UDP port
they read with L{reader} and write with the socket's C{sendto}
(L{direct_sendto}), which cost the real process less per datagram than
the port's own C{doRead} and C{write}.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from typing import Any, Callable

from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, ISystemHandle, IUDPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.udp import Port
from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import ICommandHandler, IPeerListener, ITransactionSender
from .mgcp import Command, Response
from .transaction import Address, Role, TransactionConfig, TransactionLayer, Waiter

__all__ = [
    "MGCPProtocol", "CallAgentProtocol", "GatewayProtocol", "CALL_AGENT_PORT", "GATEWAY_PORT", "direct_sendto",
    "plain_address", "connect_address", "reader",
]

CALL_AGENT_PORT = 2727
GATEWAY_PORT = 2427


def plain_address(address: Address) -> Address:
    """
    C{address} with an IPv4-mapped IPv6 host (C{::ffff:127.0.0.1}) written
    as the IPv4 address it is; any other address as it is.

    Why: a socket bound to C{::} also receives IPv4 datagrams (unless the
    host sets C{bindv6only}), and reports their source v4-mapped.  Gateways
    are configured, keyed and filtered by their plain IPv4 address, so the
    transport hands every layer above it one spelling of each peer.
    """
    host = address[0]
    if not host.lower().startswith("::ffff:"):
        return address
    try:
        mapped = ipaddress.IPv6Address(host).ipv4_mapped
    except ValueError:
        return address
    return address if mapped is None else (str(mapped), address[1])


def connect_address(interface: str, local: str | None = None) -> str:
    """
    Where a gateway bound to C{local} reaches a call agent listening on
    C{interface}: the interface itself, or for a wildcard the loopback of
    the gateway's family.  An agent on C{::} takes IPv4 datagrams too (as
    v4-mapped: see L{plain_address}), so an IPv4 gateway aims at
    C{127.0.0.1} -- an IPv4 socket cannot send to C{::1}.
    """
    if interface in ("", "0.0.0.0"):
        return "127.0.0.1"
    if interface == "::":
        return "127.0.0.1" if local is not None and ":" not in local else "::1"
    return interface


def direct_sendto(transport: object) -> Callable[[bytes, Address], Any] | None:
    """
    The C{sendto} of the datagram socket under C{transport}, when the
    transport is a UDP port on a real socket that is not connected to a
    peer; else None (then write through the transport).

    Why: C{udp.Port.write} checks the address three times per datagram
    (C{isIPAddress}), which showed as 3 % of the call agent's time under
    load.  Our addresses are IP literals (the configuration requires them;
    the others come from received datagrams), and send errors are
    OSErrors, which the transaction layer counts as losses.

    How, with public interfaces only: the transport provides
    C{IUDPTransport} and C{ISystemHandle} (so C{getHandle()} is its
    socket), the handle is a datagram socket, and C{getpeername()} says it
    has no peer (a connected port takes no address: its writes must go
    through the transport).  Checked once, when the protocol starts.
    """
    if not (IUDPTransport.providedBy(transport) and ISystemHandle.providedBy(transport)):
        return None
    handle = transport.getHandle()
    if not isinstance(handle, socket.socket) or handle.type != socket.SOCK_DGRAM:
        return None
    try:
        handle.getpeername()
    except OSError:
        return handle.sendto  # not connected
    return None


#: Datagrams read in one turn of the reactor at most (L{reader} says why):
#: some 5 ms of the agent's work, a quarter of the overload guard's probe
#: interval.
READ_TURN = 32

#: recvfrom errors that end a read without harm, as for Twisted's udp.Port:
#: nothing (more) queued, a signal, an ICMP error reported to the socket.
_READ_LATER = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED))

if sys.platform == "linux":
    import fcntl
    import termios

    _FIONREAD: int | None = termios.FIONREAD
else:  # FIONREAD's answer for a datagram socket is Linux's (the next datagram's size) only checked there
    _FIONREAD = None


def reader(
    port: Port, deliver: Callable[[bytes, Address], None], log: Logger
) -> Callable[[], None]:
    """
    A C{doRead} for Twisted's UDP C{port} that hands each datagram to
    C{deliver}.

    Why: at low and medium rates every datagram is its own reactor
    wake-up, and Twisted's C{Port.doRead} reads until C{recvfrom} fails
    with C{EAGAIN}: one Python exception per wake-up (a C{BlockingIOError}
    with its C{strerror} message), the most expensive step of the read.
    This one reads a datagram, then asks the kernel whether another is
    queued (C{FIONREAD}: the next datagram's size, 0 when none), which
    costs a system call and no exception.  When one is queued (a burst,
    or saturation) it reads on until C{EAGAIN} (or L{READ_TURN}), so a
    batch pays one question and one exception, not one per datagram.

    At most L{READ_TURN} datagrams per call, where Twisted reads up to
    C{port.maxThroughput} (256 KiB: some 1,700 MGCP datagrams).  Why:
    under a backlog (a surge past the knee, a registration storm, a core
    shared with other work) the queue refills as fast as it is read, the
    read went on for hundreds of milliseconds (779 ms in one turn at 4x
    the knee, the agent slowed by instrumentation), and no timer ran
    meanwhile: the agent's retransmissions, its calls' timers, the
    overload guard's probe (with a busy process beside the switch, the
    admitted calls' p99 setup at 4x was 167 and 636 ms; 98 and 132 ms
    with this bound).  The reactor polls level-triggered, so the rest of
    the queue is read at once after the turn's timers, at the cost of one
    poll per L{READ_TURN} datagrams.  A backlog then no longer makes the
    reactor late: with the system's receive buffer (about as much of the
    agent's work as the guard's lateness target) it shows as drops.

    The rest is Twisted's: at most C{port.maxThroughput} bytes per call
    (the reactor's other work is not starved), the same errors ignored,
    any other error raised (the reactor logs it and drops the port), an
    exception from C{deliver} logged and the next datagram read.  A
    zero-length datagram reads as "nothing queued": the reactor polls
    level-triggered and calls again at once.
    """
    sock = port.socket
    recvfrom = sock.recvfrom
    size = port.maxPacketSize
    budget = port.maxThroughput
    fd = sock.fileno()
    fionread = _FIONREAD
    assert fionread is not None  # installed on Linux only (L{MGCPProtocol.startProtocol})
    ioctl = fcntl.ioctl
    queued = bytearray(4)  # FIONREAD's answer, an int
    nothing = bytes(4)

    def do_read() -> None:
        read = 0
        ask = True
        left = READ_TURN
        while left and read < budget:
            left -= 1
            try:
                datagram, address = recvfrom(size)
            except OSError as e:
                if e.errno in _READ_LATER:
                    return
                raise
            read += len(datagram)
            try:
                deliver(datagram, address)
            except BaseException:
                log.failure("delivering a datagram from {address}", address=address)
            if ask:
                ioctl(fd, fionread, queued, True)
                if queued == nothing:
                    return
                ask = False

    return do_read


@implementer(ITransactionSender)
class MGCPProtocol(DatagramProtocol):
    """
    An MGCP endpoint on a UDP port.  C{transactions} is its
    L{TransactionLayer}; C{send_command} is a shortcut to it.
    """

    role: Role
    default_port: int
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        handler: ICommandHandler,
        config: TransactionConfig = TransactionConfig(),
        listener: IPeerListener | None = None,
        accept: Callable[[Address], bool] | None = None,
        **layer_options: Any,
    ) -> None:
        """
        @param accept: a source filter: datagrams from addresses it refuses
            are dropped (and counted by it) before any parsing, the call
            agent's "firewall to known gateways".
        """
        self.transactions = TransactionLayer(
            clock, self._write, handler, self.role, config, listener, **layer_options
        )
        self._accept = accept

    _sendto: Callable[[bytes, Address], Any] | None = None
    _ipv6 = False  # listening on an IPv6 socket: IPv4 peers are written v4-mapped

    def _write(self, datagram: bytes, address: Address) -> None:
        if self._ipv6 and ":" not in address[0]:
            address = ("::ffff:" + address[0], address[1])
        sendto = self._sendto
        if sendto is not None:
            sendto(datagram, address)
        elif self.transport is None:
            raise OSError("not listening")
        else:
            self.transport.write(datagram, address)

    def startProtocol(self) -> None:  # noqa: N802
        transport = self.transport
        assert transport is not None  # Twisted starts a protocol once it has its port
        self._sendto = direct_sendto(transport)
        self._ipv6 = isinstance(transport.getHost(), IPv6Address)
        if self._sendto is not None and type(transport) is Port and _FIONREAD is not None:
            # Twisted's own unconnected UDP port: read it with L{reader}.
            transport.doRead = reader(transport, self._deliverer(), self.log)  # type: ignore[method-assign]

    def _deliverer(self) -> Callable[[bytes, Address], None]:
        """
        What L{reader} hands each datagram and its source (as C{recvfrom}
        gives it: from an IPv6 socket a 4-tuple) to: what
        L{datagramReceived} does, without its Python call per datagram;
        a subclass's own C{datagramReceived} gets the (host, port) Twisted
        would give it.
        """
        if type(self).datagramReceived is not MGCPProtocol.datagramReceived:
            own = self.datagramReceived
            return own if not self._ipv6 else lambda datagram, addr: own(datagram, addr[:2])
        received = self.transactions.datagram_received
        accept = self._accept
        if self._ipv6:
            def deliver(datagram: bytes, addr: Any) -> None:
                host = addr[0]
                addr = plain_address((host, addr[1])) if host.startswith("::ffff:") else (host, addr[1])
                if accept is None or accept(addr):
                    received(datagram, addr)
            return deliver
        if accept is None:
            return received

        def deliver_v4(datagram: bytes, addr: Address) -> None:
            if accept(addr):
                received(datagram, addr)
        return deliver_v4

    def datagramReceived(self, datagram: bytes, addr: Address) -> None:  # noqa: N802
        if addr[0].startswith("::ffff:"):  # an IPv4 peer of an IPv6 socket
            addr = plain_address(addr)
        if self._accept is not None and not self._accept(addr):
            return
        self.transactions.datagram_received(datagram, addr)

    def stopProtocol(self) -> None:  # noqa: N802
        self._sendto = None
        self.transactions.stop()

    def send_command(self, command: Command, address: Address) -> Deferred[Response]:
        return self.transactions.send_command(command, address)

    def send(self, command: Command, address: Address, waiter: Waiter) -> None:
        self.transactions.send(command, address, waiter)

    def allocate_transaction_id(self) -> int:
        return self.transactions.allocate_transaction_id()


class CallAgentProtocol(MGCPProtocol):
    """The call agent's side: commands from gateways arrive on 2727."""

    role = Role.CALL_AGENT
    default_port = CALL_AGENT_PORT


class GatewayProtocol(MGCPProtocol):
    """The gateway's side: commands from call agents arrive on 2427."""

    role = Role.GATEWAY
    default_port = GATEWAY_PORT
