"""
Gateways and endpoints at the call agent: every RSIP restart method,
specific and wildcarded; audits after a restart (stale connections
deleted, paced); keepalives marking a gateway down and back up.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import GatewayState, LineState, ReleaseCause
from mgcpswitch.mgcp import Command, ConnectionMode, Verb, encode

from .support.switch import Probe, Switch

GW1 = ("127.0.0.2", 2427)




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

    def test_commands_carry_the_registry_s_own_names(self) -> None:
        """
        A configured line's commands decode to the name object the registry
        holds: no new object per command, whatever the number of lines.
        """
        from mgcpswitch.mgcp import decode

        held = self.s.control.registry.endpoint("aaln/3@rgw1").name
        [command] = decode(b"NTFY 4711 aaln/3@rgw1 MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n")
        self.assertIs(held, command.endpoint)  # type: ignore[union-attr]

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
        """
        RSIP disconnected: RD says how long the endpoints were disconnected
        (RFC 3435 §2.3.12), so they are audited at once, whatever it says;
        calls whose connections the audit still finds stay up.
        """
        s = self.s
        caller = s.phone("1001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2002", gap=0.05)
        s.run(1.0)
        s.phone("2002").off_hook()
        s.run(0.5)
        audits = s.control.counters["audits"]
        self.rsip("*@rgw1", "disconnected", delay=300)  # RD: it was cut off for 300 s
        s.run(1.0)  # audited at once, not in 300 s (RFC 3435 §2.3.12)
        self.assertEqual(s.control.counters["audits"] - audits, 4)
        self.assertIs(s.control.gateway("rgw1").state, GatewayState.UP)
        self.assertEqual(len(caller.connections), 1)
        self.assertEqual(len(s.control.calls()), 1)
        caller.on_hook()
        s.phone("2002").on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())

    def test_graceful_delay_ends_out_of_service(self) -> None:
        """
        RSIP graceful with RD 10 (RFC 3435 §2.3.12): the gateway takes no
        new call meanwhile (a refused call still gets its record), a call in
        progress goes on, and when the delay ends its endpoints are out of
        service until a later restart.
        """
        s = self.s
        caller = s.phone("1001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2001", gap=0.05)
        s.run(1.0)
        s.phone("2001").off_hook()
        s.run(0.5)
        self.rsip("*@rgw1", "graceful", delay=10)
        other = s.phone("1002")
        other.off_hook()
        s.run(0.5)
        other.dial("2002", gap=0.05)
        s.run(1.0)
        self.assertIn("L/bz", other.signals)
        self.assertEqual(s.recorder.records[-1].cause, ReleaseCause.UNAVAILABLE)
        self.assertEqual(len(caller.connections), 1)  # untouched until the delay ends
        s.run(10)
        self.assertIs(s.control.gateway("rgw1").state, GatewayState.DOWN)
        self.assertIs(s.line("aaln/3@rgw1").state, LineState.OUT_OF_SERVICE)
        self.assertEqual(s.recorder.records[-1].cause, ReleaseCause.GATEWAY_RESTART)
        self.rsip("*@rgw1", "restart")
        s.run(1.0)
        for phone in ("1001", "1002", "2001"):
            s.phone(phone).on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())

    def test_restart_with_a_delay(self) -> None:
        """
        RSIP restart with RD 20: the endpoints are out until the delay ends
        (RFC 3435 §2.3.12): they show restarting, a caller gets the
        configured tone and a record saying unavailable; the gateway's RSIP
        at the end (or, without it, the delay's end) brings them back.
        """
        s = self.s
        self.rsip("*@rgw1", "restart", delay=20)
        s.run(0.5)
        self.assertIs(s.line("aaln/2@rgw1").state, LineState.RESTARTING)
        caller = s.phone("2001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("1002", gap=0.05)
        s.run(1.0)
        self.assertIn("L/bz", caller.signals)  # [switch] unavailable_tone = busy, the default
        self.assertEqual(s.recorder.records[-1].cause, ReleaseCause.UNAVAILABLE)
        caller.on_hook()
        s.run(20)
        self.assertIs(s.line("aaln/2@rgw1").state, LineState.IDLE)
        self.assertTrue(s.idle())

    def test_unsupported_extension_method(self) -> None:
        """An extension restart method the agent does not know is answered 518."""
        self.assertEqual(self.rsip("*@rgw1", "x-foo/bar").code, 518)

    def test_stale_connections_deleted_after_restart(self) -> None:
        """Connections the agent does not know, found by the audit, are deleted."""
        s = self.s
        probe = Probe()
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

    def test_an_audit_during_a_crcx_leaves_the_line_marked(self) -> None:
        """
        An audit answered while the line's CRCX is still unanswered (its
        response lost) cannot tell the new connection from a stale one, so
        nothing is deleted and the line stays marked for the next
        keepalive's audit (RFC 3435 §4.4.6: the agent re-synchronises with
        audits; a connection it does not know is found only that way).
        Before, the mark was cleared whatever the audit found.
        """
        s = self.s
        s.network.drop_next(lambda data: data.startswith(b"200 ") and b"I: " in data)  # the caller's CRCX answer
        caller = s.phone("1001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2001", gap=0.05)
        endpoint = s.control.registry.endpoint("aaln/1@rgw1")
        for _ in range(100):  # until the CRCX went (its answer lost: not yet retransmitted)
            s.run(0.01)
            if endpoint.line.legs:
                break
        s.run(0.02)
        self.assertTrue(any(leg.connection_id is None for leg in endpoint.line.legs))
        self.assertEqual(s.gw1.connection_count(), 1)
        s.control.registry.audit(endpoint.gateway, [endpoint], reset=False)
        s.run(0.05)
        self.assertEqual(s.control.counters["stale_connections"], 0)  # the new connection was left alone
        self.assertTrue(endpoint.needs_audit)
        s.run(3.0)
        caller.on_hook()
        s.run(2.0)
        self.assertTrue(s.idle())

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


class ProtocolEdges(SynchronousTestCase):
    def test_unavailable_tone_reorder(self) -> None:
        """With [switch] unavailable_tone = reorder, a call to a line that is out gets reorder, not busy."""
        s = Switch(lines=2, switch_extra="unavailable_tone = reorder")
        self.addCleanup(s.stop)
        d = s.gw1.protocol.send_command(
            Command.create(Verb.RSIP, 0, "*@rgw1", restart_method="forced"), ("127.0.0.1", 2727))
        s.run(0.5)
        self.successResultOf(d)
        caller = s.phone("2001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("1001", gap=0.05)
        s.run(1.0)
        self.assertIn("L/ro", caller.signals)
        self.assertEqual(s.recorder.records[-1].cause, ReleaseCause.UNAVAILABLE)

    def test_redirect_to_the_gateways_own_call_agent(self) -> None:
        """
        A gateway configured as another call agent's ([gateway:NAME]
        redirect) is answered 521 with that agent in N: (RFC 3435
        §2.3.12, §3.3.8); the gateway redoes its restart there.
        """
        from mgcpswitch.agent.dialplan import StaticDialPlan
        from mgcpswitch.agent.service import CallControlService
        from mgcpswitch.config import parse_settings

        s = Switch(lines=2, start=False, rgw2_extra="redirect = ca2@127.0.0.5:2727")
        self.addCleanup(s.stop)
        other = parse_settings(
            "[switch]\ninterface = 127.0.0.5\nport = 2727\nobservers =\n"
            "[gateway:rgw2]\naddress = 127.0.0.3\nlines = 2\nnumbers = 2001-2002\n"
        )
        second = CallControlService(s.reactor, other, StaticDialPlan.from_settings(other), s.profiles)
        second.startService()
        self.addCleanup(second.stopService)
        s.start()
        s.run(2.0)
        self.assertIs(second.control.gateway("rgw2").state, GatewayState.UP)
        self.assertIs(s.control.gateway("rgw2").state, GatewayState.UNKNOWN)
        self.assertEqual(s.control.counters["rsip_redirected"], 1)
        self.assertEqual(s.gw2.line(1).notified_entity.domain, "127.0.0.5")

    def test_ncs_gateways_are_spoken_to_in_ncs(self) -> None:
        """
        A gateway that registers as MGCP 1.0 NCS 1.0 (RFC 3435 §3.2.1: a
        profile after the version) gets its commands in that profile: the
        audits of its two lines, then (the simulated gateway taking NCS)
        the requests that arm them.
        """
        s = Switch(lines=2)
        self.addCleanup(s.stop)
        before = len(s.network.log)
        s.gw1.protocol.transport.write(b"RSIP 4321 *@rgw1 MGCP 1.0 NCS 1.0\r\nRM: restart\r\n", ("127.0.0.1", 2727))
        s.run(1.0)
        sent = [d.data.split(b"\r\n", 1)[0] for d in s.network.log[before:]
                if d.destination == GW1 and d.data[:4].isalpha()]
        self.assertEqual([line.split()[0] for line in sent], [b"AUEP", b"AUEP", b"RQNT", b"RQNT"])
        for line in sent:
            self.assertTrue(line.endswith(b" MGCP 1.0 NCS 1.0"), line)

    def test_ncs_on_both_sides_through_a_call(self) -> None:
        """
        Gateways that speak NCS (their RSIP, NTFY and DLCX say MGCP 1.0 NCS
        1.0, RFC 3435 §3.2.1) register, and a whole call goes through: every
        command either side sends is in NCS, and none is refused 528 (the
        simulated gateway takes the profile it is spoken to in).
        """
        s = Switch(lines=2, gateway_config={"version": "MGCP 1.0 NCS 1.0"})
        self.addCleanup(s.stop)
        self.assertTrue(s.idle())
        caller = s.phone("1001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2002", gap=0.05)
        s.run(1.0)
        s.phone("2002").off_hook()
        s.run(0.5)
        self.assertEqual(len(caller.connections), 1)
        caller.on_hook()
        s.run(1.0)
        s.phone("2002").on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())
        commands = [d.data.split(b"\r\n", 1)[0] for d in s.network.log if d.data[:4].isalpha()]
        verbs = {line.split()[0] for line in commands}
        self.assertTrue({b"RSIP", b"AUEP", b"RQNT", b"NTFY", b"CRCX", b"MDCX", b"DLCX"} <= verbs, verbs)
        for line in commands:
            self.assertTrue(line.endswith(b" MGCP 1.0 NCS 1.0"), line)
        codes = {d.data[:3] for d in s.network.log if d.data[:3].isdigit()}
        self.assertTrue(codes <= {b"200", b"250"}, codes)

    def test_a_gateways_profile_limits_its_codecs(self) -> None:
        """
        A gateway whose profile has PCMA only is asked for PCMA in LCO and
        offered only PCMA in the SDP the switch sends it, so the call is
        set up in a codec both ends have.
        """
        from mgcpswitch.agent.profiles import GatewayProfile

        s = Switch(lines=2, rgw2_extra="profile = alaw", profiles={"alaw": GatewayProfile("alaw", codecs=("PCMA",))})
        self.addCleanup(s.stop)
        caller = s.phone("1001")
        caller.off_hook()
        s.run(0.5)
        caller.dial("2001", gap=0.05)
        s.run(1.0)
        [crcx] = [d.data for d in s.network.log if d.data.startswith(b"CRCX ") and d.destination[0] == "127.0.0.3"]
        self.assertIn(b"L: p:20, a:PCMA\r\n", crcx)
        self.assertIn(b"m=audio ", crcx)
        m_line = [line for line in crcx.split(b"\r\n") if line.startswith(b"m=audio")][0]
        self.assertEqual(m_line.split()[3:], [b"8"])  # PCMA only (the caller offered 0 and 8)
        s.phone("2001").off_hook()
        s.run(0.5)
        self.assertEqual(s.service.list_calls()[0].codec, "PCMA")
        caller.on_hook()
        s.phone("2001").on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())
