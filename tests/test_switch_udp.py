"""
The switch over real UDP on loopback: the call agent and two simulated
gateways built as twistd builds them (L{build_switch}), one full call.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from mgcpswitch.agent.model import CallState, GatewayState, LineState, ReleaseCause
from mgcpswitch.config import parse_settings
from mgcpswitch.tap import build_switch


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody holds right now (the gateways need fixed ports)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.01) -> Deferred[Any]:
    """Fire when predicate() is true, polling on the reactor; fail after timeout."""

    def check() -> Any:
        value = predicate()
        if value:
            loop.stop()
            return value
        return None

    loop = task.LoopingCall(check)
    loop.clock = reactor
    d = loop.start(step, now=True)
    d.addTimeout(timeout, reactor, onTimeoutCancel=lambda *a: loop.running and loop.stop())
    return d


class FullCallOverUDP(TestCase):
    timeout = 60

    def setUp(self) -> None:
        agent, gw1, gw2 = free_udp_port(), free_udp_port(), free_udp_port()
        self.settings = parse_settings(f"""
[switch]
interface = 127.0.0.1
port = {agent}
observers =
[store]
url = memory
[gateway:udp1]
address = 127.0.0.1
port = {gw1}
lines = 2
numbers = 3001-3002
[gateway:udp2]
address = 127.0.0.1
port = {gw2}
lines = 2
numbers = 4001-4002
[simulator]
gateways = udp1, udp2
""")
        self.switch = build_switch(reactor, self.settings, web=False)
        self.switch.startService()
        self.addCleanup(self.switch.stopService)
        self.control = self.switch.getServiceNamed("call-control")
        self.phones = {
            name: self.switch.getServiceNamed(f"gateway:{name}").gateway for name in ("udp1", "udp2")
        }

    @inlineCallbacks
    def test_one_full_call(self) -> Any:
        """Registration, then off-hook, digits, ringing, answer, talk, hang-up, over real sockets."""
        yield until(lambda: all(
            g.state is GatewayState.UP for g in self.control.list_gateways()
        ) and all(e.state is LineState.IDLE for e in self.control.list_endpoints()))
        caller = self.phones["udp1"].line(1)
        callee = self.phones["udp2"].line(2)
        yield caller.off_hook()
        yield caller.when_signal("L/dl")
        yield caller.dial("4002", gap=0.02)
        yield callee.when(lambda l: l.ringing)
        yield caller.when_signal("G/rt")
        yield callee.off_hook()
        yield until(lambda: self.control.get_endpoint("aaln/1@udp1").state is LineState.CONNECTED)
        self.assertEqual(self.control.list_calls()[0].state, CallState.CONNECTED)
        [a], [b] = caller.connections, callee.connections
        self.assertEqual((a.mode, b.mode), ("sendrecv", "sendrecv"))
        # Each side's remote SDP points at the other's real RTP socket.
        self.assertEqual(a.remote_sdp.rtp_address, ("127.0.0.1", b.rtp_port))
        self.assertEqual(b.remote_sdp.rtp_address, ("127.0.0.1", a.rtp_port))
        yield caller.on_hook()
        yield callee.when_signal("L/bz")
        yield callee.on_hook()
        yield until(lambda: all(e.state is LineState.IDLE for e in self.control.list_endpoints()))
        self.assertEqual(caller.connections + callee.connections, ())
        [call] = self.control.list_calls()
        self.assertEqual((call.state, call.cause), (CallState.ENDED, ReleaseCause.NORMAL))
        self.assertEqual(self.control.call_outcomes(), {"normal": 1})

    @inlineCallbacks
    def test_the_guard_reads_the_kernels_drops(self) -> Any:
        """
        The overload guard watches the agent's own socket: datagrams the
        kernel drops because its receive buffer is full (here made tiny,
        and flooded while the reactor cannot read) are counted at the next
        probe and shown in the stats.
        """
        import sys

        if not sys.platform.startswith("linux"):
            raise SkipTest("SO_MEMINFO is Linux's")
        yield until(lambda: all(g.state is GatewayState.UP for g in self.control.list_gateways()))
        service = self.switch.getServiceNamed("call-control")
        port = service.port
        self.assertEqual(service.transaction_stats()["overload"]["receive_dropped"], 0)
        port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(flood.close)
        for i in range(200):  # all before the reactor runs again: most cannot fit
            flood.sendto(b"000 %d\r\n" % i, port.socket.getsockname())
        yield until(lambda: service.transaction_stats()["overload"]["receive_dropped"] > 0)
        self.assertLess(service.transaction_stats()["overload"]["receive_dropped"], 200)

    @inlineCallbacks
    def test_receive_buffer(self) -> Any:
        """
        [switch] receive_buffer sizes the agent's socket: Linux gives twice
        what is asked (its bookkeeping), up to net.core.rmem_max; without
        the key the system's default stays.
        """
        import sys
        from dataclasses import replace

        if not sys.platform.startswith("linux"):
            raise SkipTest("Linux's SO_RCVBUF accounting")
        with open("/proc/sys/net/core/rmem_max") as f:
            asked = min(65536, int(f.read()))
        default = self.switch.getServiceNamed("call-control").port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        settings = replace(self.settings, switch=replace(self.settings.switch, port=0, receive_buffer=asked),
                           simulator=replace(self.settings.simulator, gateways=()))
        other = build_switch(reactor, settings, web=False)
        other.startService()
        try:
            sock = other.getServiceNamed("call-control").port.socket
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 2 * asked)
            self.assertNotEqual(default, 2 * asked)
        finally:
            yield other.stopService()
