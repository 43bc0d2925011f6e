"""
Gateways and endpoints at the call agent: every RSIP restart method,
specific and wildcarded; audits after a restart (stale connections
deleted, paced); keepalives marking a gateway down and back up.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import GatewayState, LineState, ReleaseCause
from mgcpswitch.mgcp import Command, ConnectionMode, Verb, decode, encode

from .support.switch import Switch

GW1 = ("127.0.0.2", 2427)


class _Probe:
    """A datagram protocol recording what it receives."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.received.extend(decode(data))

    def doStop(self) -> None:  # noqa: N802
        pass


class RestartMethods(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Switch(lines=4)
        self.addCleanup(self.s.stop)

    def rsip(self, endpoint: str, method: str, delay: int | None = None) -> Any:
        """Send an RSIP as rgw1 would (from its own socket), return the answer."""
        params: dict[str, Any] = {"restart_method": method}
        if delay is not None:
            params["restart_delay"] = delay
        d = self.s.gw1.protocol.send_command(
            Command.create(Verb.RSIP, 0, endpoint, **params), ("127.0.0.1", 2727)
        )
        self.s.run(0.5)
        return self.successResultOf(d)

    def test_restart_wildcard_audits_every_line(self) -> None:
        """RSIP restart *@rgw1: an AUEP and an RQNT per line; all idle again."""
        before = self.s.control.counters["audits"]
        self.assertEqual(self.rsip("*@rgw1", "restart").code, 200)
        self.s.run(1.0)
        self.assertEqual(self.s.control.counters["audits"] - before, 4)
        self.assertTrue(self.s.idle())

    def test_restart_specific_endpoint(self) -> None:
        """RSIP restart of one endpoint audits that endpoint only."""
        before = self.s.control.counters["audits"]
        self.rsip("aaln/2@rgw1", "restart")
        self.s.run(1.0)
        self.assertEqual(self.s.control.counters["audits"] - before, 1)

    def test_forced_takes_lines_out_and_ends_calls(self) -> None:
        """RSIP forced ends the calls on those lines and takes them out of service."""
        s = self.s
        caller = s.phone("2001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("1002", gap=0.05)
        s.run(1.0)
        s.phone("1002").off_hook()
        s.run(0.5)
        self.rsip("*@rgw1", "forced")
        s.run(1.0)
        self.assertEqual(s.line("aaln/2@rgw1").state, LineState.OUT_OF_SERVICE)
        self.assertEqual(s.control.gateway("rgw1").state, GatewayState.DOWN)
        self.assertEqual(caller.connections, ())
        self.assertEqual(s.recorder.records[-1].cause, ReleaseCause.GATEWAY_RESTART)

    def test_graceful_drains_and_cancel_restores(self) -> None:
        """RSIP graceful stops new calls to the gateway; cancel-graceful brings it back."""
        s = self.s
        self.rsip("*@rgw1", "graceful")
        self.assertEqual(s.control.gateway("rgw1").state, GatewayState.DRAINING)
        caller = s.phone("2001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("1002", gap=0.05)
        s.run(1.0)
        self.assertIn("L/bz", caller.signals)
        caller.on_hook()
        s.run(0.5)
        self.rsip("*@rgw1", "cancel-graceful")
        self.assertEqual(s.control.gateway("rgw1").state, GatewayState.UP)

    def test_disconnected_keeps_calls_and_resynchronises(self) -> None:
        """RSIP disconnected: calls whose connections the audit still finds stay up."""
        s = self.s
        caller = s.phone("1001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2002", gap=0.05)
        s.run(1.0)
        s.phone("2002").off_hook()
        s.run(0.5)
        self.rsip("*@rgw1", "disconnected", delay=5)
        s.run(6.0)
        self.assertEqual(len(caller.connections), 1)
        self.assertEqual(len(s.control.calls()), 1)
        caller.on_hook()
        s.phone("2002").on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())

    def test_unsupported_extension_method(self) -> None:
        """An extension restart method the agent does not know is answered 518."""
        self.assertEqual(self.rsip("*@rgw1", "x-foo/bar").code, 518)

    def test_stale_connections_deleted_after_restart(self) -> None:
        """Connections the agent does not know, found by the audit, are deleted."""
        s = self.s
        probe = _Probe()
        port = s.network.bind(("127.0.0.1", 3000), probe)
        port.write(encode(Command.create(
            Verb.CRCX, 555, "aaln/3@rgw1", call_id="dead", mode=ConnectionMode.INACTIVE,
        )), GW1)
        s.run(0.2)
        self.assertEqual(s.gw1.connection_count(), 1)
        self.rsip("aaln/3@rgw1", "disconnected")
        s.run(1.0)
        self.assertEqual(s.gw1.connection_count(), 0)
        self.assertEqual(s.control.counters["stale_connections"], 1)

    def test_mass_restart_audits_are_paced(self) -> None:
        """After a restart no more than audit_concurrency audits are in flight to a gateway."""
        s = Switch(lines=64)
        self.addCleanup(s.stop)
        s.network.latency = 0.05
        in_flight = []

        original = s.control.registry.send

        def counting(gateway: Any, command: Any) -> Any:
            if command.verb is Verb.AUEP:
                in_flight.append(gateway.audits_in_flight)
            return original(gateway, command)

        s.control.registry.send = counting  # type: ignore[method-assign]  # observe the registry's bookkeeping
        s.gw1.protocol.send_command(Command.create(Verb.RSIP, 0, "*@rgw1", restart_method="restart"),
                                    ("127.0.0.1", 2727))
        s.run(3.0)
        self.assertEqual(len(in_flight), 64)
        self.assertLessEqual(max(in_flight), s.settings.switch.audit_concurrency)
        self.assertTrue(s.idle())


class Liveness(SynchronousTestCase):
    def test_keepalive_marks_gateway_down_and_back_up(self) -> None:
        """
        A silent gateway is found by the keepalive, marked down, and audited
        when it answers: not heard from for an interval (15 s), probed, and
        down when the probe's transaction fails (T-MAX, 20 s).
        """
        s = Switch(lines=2)
        self.addCleanup(s.stop)
        s.network.set_link(("127.0.0.1", 2727), GW1, loss=1.0)
        s.run(60)
        self.assertEqual(s.control.gateway("rgw1").state, GatewayState.DOWN)
        self.assertGreater(s.control.counters["keepalives"], 0)
        s.network.set_link(("127.0.0.1", 2727), GW1, loss=0.0)
        s.run(40)
        self.assertEqual(s.control.gateway("rgw1").state, GatewayState.UP)
        self.assertTrue(s.idle())

    def test_one_lost_transaction_does_not_take_a_gateway_down(self) -> None:
        """
        Every answer to one call's CRCX on rgw2 is lost (its transaction
        reaches Max2, RFC 3435 §4.3): that call fails, with a record; the
        gateway is probed, answers, and stays up; the calls talking through
        it are left alone.
        """
        s = Switch(lines=4)
        self.addCleanup(s.stop)
        for a, b in (("1001", "2001"), ("1002", "2002")):
            s.phone(a).off_hook()
            s.run(0.5)
            s.phone(a).dial(b, gap=0.05)
            s.run(1.0)
            s.phone(b).off_hook()
            s.run(0.5)
        lost: set[bytes] = set()

        def crcx_answer(data: bytes) -> bool:
            if data.startswith(b"CRCX ") and b"aaln/3@rgw2" in data:
                lost.add(data.split()[1])
            return data[:3].isdigit() and data.split()[1] in lost

        s.network.drop_next(crcx_answer, count=1000)
        s.phone("1003").off_hook()
        s.run(0.5)
        s.phone("1003").dial("2003", gap=0.05)
        s.run(30)
        self.assertEqual(len(s.control.calls()), 2)
        self.assertEqual([r.cause for r in s.recorder.records], [ReleaseCause.GATEWAY_TIMEOUT])
        self.assertIs(s.control.gateway("rgw2").state, GatewayState.UP)
        self.assertGreater(s.control.counters["gateways_suspect"], 0)
        for n in (1, 2):
            self.assertEqual(len(s.phone(f"100{n}").connections) + len(s.phone(f"200{n}").connections), 2)
            self.assertIs(s.line(f"aaln/{n}@rgw2").state, LineState.CONNECTED)

    def test_no_keepalive_while_traffic_flows(self) -> None:
        """A gateway heard from within the interval is not polled."""
        s = Switch(lines=2)
        self.addCleanup(s.stop)
        for _ in range(6):
            s.phone("1001").off_hook()
            s.run(2.5)
            s.phone("1001").on_hook()
            s.run(2.5)
        self.assertEqual(s.control.counters["keepalives"], 1)  # only rgw2, silent


class DynamicGateways(SynchronousTestCase):
    def test_unconfigured_gateway_is_learned_when_allowed(self) -> None:
        """With dynamic_gateways = yes a new gateway registers: endpoints discovered, audited, armed."""
        from mgcpswitch.gateway import GatewayConfig, SimulatedGateway

        s = Switch(lines=2, dynamic=True)
        self.addCleanup(s.stop)
        extra = SimulatedGateway(s.reactor, GatewayConfig(
            domain="rgw9", lines=3, port=2427, interface="127.0.0.9",
            call_agent=("127.0.0.1", 2727), restart_delay=0.0,
        ))
        extra.start()
        self.addCleanup(extra.stop)
        s.run(2.0)
        view = s.service.get_gateway("rgw9")
        self.assertEqual((view.state, view.endpoints, view.host), (GatewayState.UP, 3, "127.0.0.9"))
        self.assertEqual(s.line("aaln/3@rgw9").state, LineState.IDLE)
        self.assertEqual([str(r.name) for r in extra.line(3).requested_events], ["L/hd"])

    def test_unconfigured_gateway_refused_by_default(self) -> None:
        """Without the setting, a gateway not configured is not served (dropped at the door)."""
        from mgcpswitch.gateway import GatewayConfig, SimulatedGateway

        s = Switch(lines=2)
        self.addCleanup(s.stop)
        extra = SimulatedGateway(s.reactor, GatewayConfig(
            domain="rgw9", lines=1, port=2427, interface="127.0.0.9",
            call_agent=("127.0.0.1", 2727), restart_delay=0.0,
        ))
        extra.start()
        self.addCleanup(extra.stop)
        s.run(2.0)
        self.assertIsNone(s.service.get_gateway("rgw9"))
        self.assertGreater(s.control.counters["dropped_unknown_source"], 0)
