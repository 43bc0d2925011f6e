"""
Call control when single commands are lost for good (every retransmission
of one transaction dropped), on the in-memory network: what the real
processes of benchmarks/bench_loss.py showed under 30 % loss each way.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import LineState

from .support.switch import Switch

A = "aaln/1@rgw1"


class Blackhole:
    """
    Drops every datagram carrying an RQNT to one endpoint while C{on}: its
    retransmissions, and the first one too, piggybacked on a response.
    """

    def __init__(self, endpoint: str) -> None:
        self.name = endpoint.encode()
        self.on = True

    def __call__(self, data: bytes) -> bool:
        return self.on and any(
            line.startswith(b"RQNT ") and self.name in line for line in data.split(b"\r\n")
        )


class LostArmingRequest(SynchronousTestCase):
    def setUp(self) -> None:
        self.switch = Switch(lines=2, keepalive=15.0)
        self.addCleanup(self.switch.stop)
        self.switch.run(5)
        self.assertTrue(self.switch.idle())

    def test_a_lost_idle_request_is_healed(self) -> None:
        """
        The subscriber hangs up after dial tone; the RQNT that re-arms the
        line for the off-hook is lost with every retransmission (T-MAX).
        The switch must not leave the line "idle" while the gateway does
        not watch for the off-hook: it audits the line again and arms it,
        so a later off-hook gets dial tone.
        """
        s = self.switch
        phone = s.phone("1001")
        phone.off_hook()
        s.run(1)
        self.assertIn("L/dl", {str(x) for x in phone.signals})
        hole = Blackhole(A)
        s.network.drop_next(hole, count=1000)
        phone.on_hook()
        s.run(25)  # T-MAX (20 s) passes: the arming transaction has failed
        self.assertEqual(s.control.counters["line_timeouts"], 1)
        hole.on = False
        s.run(30)  # the next keepalive (15 s) at the latest
        self.assertEqual(s.line(A).state, LineState.IDLE)
        self.assertEqual([str(e.name) for e in phone.requested_events], ["L/hd"])
        phone.off_hook()
        s.run(1)
        self.assertIn("L/dl", {str(x) for x in phone.signals})

    def test_a_lost_dial_tone_request_is_healed(self) -> None:
        """
        The subscriber lifts the handset; the RQNT with dial tone is lost
        for good.  The gateway still runs the fired idle request, so the
        hang-up would never be notified: the switch audits the line, finds
        it off hook and gives dial tone again.
        """
        s = self.switch
        phone = s.phone("1001")
        hole = Blackhole(A)
        s.network.drop_next(hole, count=1000)
        phone.off_hook()
        s.run(25)  # T-MAX (20 s) passes: the dial tone transaction has failed
        self.assertEqual(s.control.counters["line_timeouts"], 1)
        self.assertEqual(phone.signals, frozenset())
        hole.on = False
        s.run(3)  # (dial tone times out after 16 s: look before)
        self.assertEqual(s.line(A).state, LineState.COLLECTING)  # dial tone accepted: collecting digits
        self.assertIn("L/dl", {str(x) for x in phone.signals})
        phone.on_hook()
        s.run(2)
        self.assertEqual(s.line(A).state, LineState.IDLE)
        self.assertEqual([str(e.name) for e in phone.requested_events], ["L/hd"])


class LostProbe(SynchronousTestCase):
    def test_a_gateway_heard_during_its_probe_is_not_down(self) -> None:
        """
        The liveness check's AUEP is lost with every retransmission (at 20 %
        loss each way a probe sent 5 times fails about once in 170), while
        the gateway's phones keep notifying the switch and answering its
        requests.  A gateway heard from during its probe is alive: it stays
        up, and its calls go on.  (A silent one is still found down:
        tests/test_agent_registry.py, Liveness.)
        """
        from mgcpswitch.agent.model import GatewayState

        s = Switch(lines=2, keepalive=15.0)
        self.addCleanup(s.stop)
        s.run(5)
        probing = [True]  # rgw1's AUEPs are lost while this holds

        def lost(data: bytes) -> bool:
            return probing[0] and data.startswith(b"AUEP ") and b"@rgw1 " in data.split(b"\r\n", 1)[0]

        s.network.drop_next(lost, count=1000)
        s.control.registry.probe(s.control.registry.gateway("rgw1"))
        phone = s.phone("1001")
        for _ in range(6):  # the gateway speaks throughout the probe's 20 s
            phone.off_hook()
            s.run(2)
            phone.on_hook()
            s.run(2)
        self.assertEqual(s.control.counters["keepalive_timeouts"], 1, "the probe failed")
        self.assertEqual(s.control.gateway("rgw1").state, GatewayState.UP)
        probing[0] = False
        phone.off_hook()
        s.run(1)
        phone.dial("2001", gap=0.05)
        s.run(2)
        self.assertTrue(s.phone("2001").ringing)
