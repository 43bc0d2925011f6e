"""
Conformance of the simulated gateway: notifications, the notification
state and quarantine handling (RFC 3435 §2.3.3, §2.3.4, §4.4.1; digest
§1.11, §1.14, §4.6), embedded requests and persistent events.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import DNSLookupError

from mgcpswitch.mgcp import NotificationState, ParamCode as P, Verb, decode

from .support.gateway import GatewayTestCase, ScriptedAgent, sdp


class Notify(GatewayTestCase):
    """What an NTFY carries and where it goes (§2.3.4)."""

    def test_carries_X_O_and_a_copy_of_N(self) -> None:
        """X: of the request, O: the events, N: copied from the RQNT; sent to the notified entity."""
        self.rqnt("aaln/1", "X: 1A2B", "R: L/hd(N)", "N: ca@127.0.0.1:2727")
        self.h.line(1).off_hook()
        [ntfy] = self.h.ntfys()
        self.assertEqual((ntfy.endpoint, ntfy.request_id), ("aaln/1@rgw1", "1A2B"))
        self.assertEqual(str(ntfy.params[P.NOTIFIED_ENTITY]), "ca@127.0.0.1:2727")
        self.assertEqual(self.h.observed(ntfy), ["L/hd"])
        self.rqnt("aaln/1", "X: 1A2C", "R: L/hu(N)")
        self.h.line(1).on_hook()
        self.assertNotIn(P.NOTIFIED_ENTITY, self.h.ntfys()[-1].params, "no N: in the RQNT, none in the NTFY")

    def test_N_moves_the_notified_entity(self) -> None:
        """N: in an RQNT moves where NTFYs go; the audit shows it (§2.1.4)."""
        other = ScriptedAgent()
        self.h.reactor.listenUDP(2727, other, interface="127.0.0.3")
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)", "N: ca2@127.0.0.3:2727")
        self.h.line(1).off_hook()
        self.h.pump()
        self.assertEqual([c.verb for c in other.commands()], [Verb.NTFY])
        self.assertEqual(self.h.ntfys(), [])
        self.assertEqual(str(self.auep("aaln/1", "F: N").params[P.NOTIFIED_ENTITY]), "ca2@127.0.0.3:2727")
        self.assertEqual(str(self.auep("aaln/2", "F: N").params[P.NOTIFIED_ENTITY]), "127.0.0.1:2727")

    def test_empty_N_uses_the_last_command_source(self) -> None:
        """An empty N: makes the endpoint answer to where its last non-audit command came from."""
        other = ScriptedAgent()
        self.h.reactor.listenUDP(3000, other, interface="127.0.0.4")
        self.h.send("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: L/hd(N)", "N:", source=("127.0.0.4", 3000))
        self.h.line(1).off_hook()
        self.h.pump()
        self.assertEqual([c.verb for c in other.commands()], [Verb.NTFY])

    def test_ntfy_triggered_by_a_command_rides_after_its_response(self) -> None:
        """
        A phone that answers as soon as it rings: its off-hook NTFY, caused
        by the ringing RQNT, goes after the RQNT's 200 in the same datagram
        (Reply.after), its own transaction, answered like any other.
        """
        line = self.h.line(1)
        answered: list[Any] = []
        line.when_signal("L/rg").addCallback(lambda l: answered.append(l.off_hook()))
        txid = self.h.send("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 5", "R: L/hd(N)", "S: L/rg")
        response, ntfy = self.h.datagram_of(txid)
        self.assertEqual((response.transaction_id, response.code), (txid, 200))
        self.assertEqual((ntfy.verb, ntfy.request_id, self.h.observed(ntfy)), (Verb.NTFY, "5", ["L/hd"]))
        self.assertEqual(self.successResultOf(answered[0]).code, 200)

    def test_observed_events_in_detection_order(self) -> None:
        """Accumulated events and digits keep their FIFO order in O: (§2.3.4)."""
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: L/hf(A), D/[0-9#*T](D), L/hu(N)", "D: (xx)")
        line = self.h.line(1)
        line.dial("1")
        line.flash()
        line.dial("2")
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["D/1", "L/hf", "D/2"])

    def test_ntfy_is_retransmitted_until_answered(self) -> None:
        """A lost NTFY goes again with the same bytes and transaction id."""
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)")
        self.h.network.drop_next(lambda data: data.startswith(b"NTFY"))
        d = self.h.line(1).off_hook()
        self.h.advance(0.2)
        ntfys = [x.data for x in self.h.network.log if x.data.startswith(b"NTFY")]
        self.assertEqual(len(ntfys), 2)
        self.assertEqual(ntfys[0], ntfys[1])
        self.assertEqual(self.successResultOf(d).code, 200)


class Quarantine(GatewayTestCase):
    """Notification state and the quarantine buffer (§4.4.1, digest §4.6)."""

    def test_step_mode_quarantines_until_the_next_rqnt(self) -> None:
        """After an NTFY (step), events wait in quarantine; the next RQNT processes them."""
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hd(N)", "T: L/hf").code, 200)
        line = self.h.line(1)
        line.off_hook()
        line.flash()
        self.assertEqual(len(self.h.ntfys()), 1, "the flash is quarantined")
        self.assertEqual(line.notification_state, NotificationState.LOCKSTEP)
        self.assertEqual(str(self.auep("aaln/1", "F: B/NS").params[P.NOTIFICATION_STATE]), "ls")
        self.rqnt("aaln/1", "X: 2", "R: L/hf(N), L/hu(N)")
        ntfy = self.h.ntfys()[-1]
        self.assertEqual((ntfy.request_id, self.h.observed(ntfy)), ("2", ["L/hf"]))

    def test_glare_the_phone_hung_up_before_the_request(self) -> None:
        """The quarantined on-hook makes an RQNT asking for L/hu fail with 402 (§4.4.2)."""
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hd(N)", "T: L/hu").code, 200)
        self.h.line(1).off_hook()
        self.h.line(1).on_hook()
        self.assertEqual(self.rqnt("aaln/1", "X: 2", "R: L/hu(N)").code, 402)
        self.assertEqual(self.rqnt("aaln/1", "X: 3", "R: L/hd(N)").code, 200)
        self.assertEqual(len(self.h.ntfys()), 1, "the on-hook is not requested any more")

    def test_discard_drops_quarantined_events(self) -> None:
        """Q: discard on the next RQNT drops what was quarantined."""
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hd(N)", "T: L/hu").code, 200)
        self.h.line(1).off_hook()
        self.h.line(1).on_hook()
        self.assertEqual(self.rqnt("aaln/1", "X: 2", "R: L/hd(N)", "Q: discard").code, 200)
        self.assertEqual(len(self.h.ntfys()), 1)
        self.assertEqual(self.h.line(1).notification_state, NotificationState.OTHER)

    def test_only_requested_or_detect_events_are_quarantined(self) -> None:
        """Events in neither R nor T are not kept; T: adds events to watch (§2.3.3)."""
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: L/hu(N), D/[0-9](N)", "T: L/hf")
        line = self.h.line(1)
        line.dial("1")
        line.flash()
        line.event("G/ft")
        self.assertEqual([str(e) for e in self.h.gateway.endpoints[0].quarantine], ["L/hf"])
        self.rqnt("aaln/1", "X: 2", "R: L/hf(N), G/ft(N)")
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["L/hf"])

    def test_loop_mode_sends_the_next_notification_after_the_answer(self) -> None:
        """Q: loop: quarantined events are processed as soon as the NTFY is answered."""
        self.h.agent.hold(Verb.NTFY)
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: D/[0-9](N)", "Q: loop")
        line = self.h.line(1)
        line.dial("12", gap=0.01)
        self.h.advance(0.01)
        first = self.h.ntfys()
        self.assertEqual([self.h.observed(n) for n in first], [["D/1"]])
        self.assertEqual(line.notification_state, NotificationState.NOTIFICATION)
        self.h.agent.reply(first[0])
        self.h.pump()
        self.assertEqual([self.h.observed(n) for n in self.h.ntfys()], [["D/1"], ["D/2"]])

    def test_new_rqnt_in_notification_state_piggybacks_the_old_ntfy(self) -> None:
        """
        An RQNT ends notification state at once; the unanswered NTFY rides
        ahead of the next one in the same datagram, oldest first (§4.4.1).
        """
        self.h.agent.hold(Verb.NTFY)
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)")
        self.h.line(1).off_hook()
        [old] = self.h.ntfys()
        self.assertEqual(self.rqnt("aaln/1", "X: 2", "R: L/hu(N)").code, 200)
        self.assertEqual(self.h.line(1).notification_state, NotificationState.OTHER)
        self.h.line(1).on_hook()
        self.h.pump()
        bundle = decode(self.h.agent.datagrams[-1])
        self.assertEqual([(m.verb, m.transaction_id) for m in bundle],
                         [(Verb.NTFY, old.transaction_id), (Verb.NTFY, self.h.ntfys()[-1].transaction_id)])
        self.assertEqual(self.h.observed(bundle[1]), ["L/hu"])

    def test_accumulated_events_are_moved_to_quarantine_by_an_rqnt(self) -> None:
        """Events accumulated (A) but not notified are processed again under the new request."""
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: L/hf(A)")
        self.h.line(1).flash()
        self.assertEqual(self.h.ntfys(), [])
        self.rqnt("aaln/1", "X: 2", "R: L/hf(N)")
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["L/hf"])
        self.rqnt("aaln/1", "X: 3", "R: L/hf(A)")
        self.h.line(1).flash()
        self.rqnt("aaln/1", "X: 4", "R: L/hf(N)", "Q: discard")
        self.assertEqual(len(self.h.ntfys()), 1)

    def test_quarantine_overflow_raises_qbo(self) -> None:
        """A full quarantine buffer drops further events and keeps B/qbo (App. B)."""
        h = self.harness(quarantine_limit=2)
        self.addCleanup(self.stop_harness, h)
        h.line(1).off_hook()
        h.request("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: L/hf(N), B/qbo(N)")
        for _ in range(5):
            h.line(1).flash()
        self.assertEqual([str(e) for e in h.gateway.endpoints[0].quarantine], ["L/hf", "L/hf", "B/qbo"])

    def test_observed_list_overflow_raises_oef(self) -> None:
        """A full observed list drops further events and notifies B/oef when requested."""
        h = self.harness(observed_limit=3)
        self.addCleanup(self.stop_harness, h)
        h.line(1).off_hook()
        h.request("RQNT {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "R: D/[0-9](A), B/oef(N)")
        h.line(1).dial("12345", gap=0)
        h.advance(0)
        self.assertEqual(h.observed(h.ntfys()[-1]), ["D/1", "D/2", "D/3", "B/oef"])


class EmbeddedAndPersistent(GatewayTestCase):
    """Embedded requests, persistent events, swap (§2.3.3, App. B.2.1)."""

    def test_embedded_request_runs_the_dialling_phase(self) -> None:
        """hd(A,E(R(..),S(L/dl),D(..))): dial tone at off-hook, one NTFY with hd and the digits."""
        r = self.rqnt("aaln/1", "X: 1",
                      "R: L/hd(A,E(R(L/hu(N),D/[0-9#*T](D)),S(L/dl),D(xxx)))")
        self.assertEqual(r.code, 200)
        line = self.h.line(1)
        line.off_hook()
        self.assertEqual((line.signals, self.h.ntfys()), ({"L/dl"}, []))
        line.dial("123", gap=0)
        self.h.advance(0)
        ntfy = self.h.ntfys()[-1]
        self.assertEqual((ntfy.request_id, self.h.observed(ntfy)), ("1", ["L/hd", "D/1", "D/2", "D/3"]))
        self.assertEqual(line.signals, set())

    def test_embedded_failure_raises_enf(self) -> None:
        """An embedded request that cannot run (ringing an off-hook phone) reports B/enf(401)."""
        self.rqnt("aaln/1", "X: 1", "R: L/hd(E(R(B/enf(N)),S(L/rg)))")
        self.h.line(1).off_hook()
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["B/enf(401)"])

    def test_embedded_requests_may_not_nest(self) -> None:
        """An embedded request inside an embedded request is refused with 523."""
        r = self.rqnt("aaln/1", "X: 1", "R: L/hd(E(R(L/hu(E(R(L/hd))))))")
        self.assertEqual(r.code, 523)

    def test_persistent_events(self) -> None:
        """B/PR: events are detected with N under any request, and audited with R and T."""
        self.rqnt("aaln/1", "X: 1", "B/PR: L/hd", "R: G/ft(N)")
        self.h.line(1).off_hook()
        ntfy = self.h.ntfys()[-1]
        self.assertEqual((ntfy.request_id, self.h.observed(ntfy)), ("1", ["L/hd"]))
        audit = self.auep("aaln/1", "F: R,B/PR")
        self.assertEqual([str(e) for e in audit.params[P.REQUESTED_EVENTS]], ["G/ft(N)", "L/hd"])
        self.assertEqual([str(e) for e in audit.params[P.PERSISTENT_EVENTS]], ["L/hd"])

    def test_swap_audio(self) -> None:
        """S with one inactive and one sendrecv connection swaps their modes (call waiting)."""
        self.crcx("aaln/1", "C: A1", "M: sendrecv", sdp=sdp(40000))
        self.crcx("aaln/1", "C: B2", "M: inactive", sdp=sdp(40002))
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: 1", "R: L/hf(S,N)")
        self.h.line(1).flash()
        self.assertEqual([c.mode for c in self.h.line(1).connections], ["inactive", "sendrecv"])
        self.assertEqual(self.h.observed(self.h.ntfys()[-1]), ["L/hf"])


class CallAgentNames(GatewayTestCase):
    """Call agents named by host name: the injected non-blocking resolver (§2.1.4, §4.1)."""

    def setUp(self) -> None:
        self.table: dict[str, str] = {}
        self.asked: list[str] = []
        super().setUp()

    def resolve(self, name: str) -> Deferred[str]:
        self.asked.append(name)
        if name in self.table:
            return succeed(self.table[name])
        return fail(DNSLookupError(name))

    def harness(self, **options: Any) -> Any:
        return super().harness(start=False, call_agent=("ca.example", 2727), resolver=self.resolve, **options)

    def test_names_are_resolved_and_cached(self) -> None:
        """The provisioned name resolves once; the answer is reused until resolve_ttl passes."""
        self.table["ca.example"] = "127.0.0.1"
        self.h.gateway.start()
        self.assertEqual(len(self.h.rsips()), 1)
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)")
        self.h.line(1).off_hook()
        self.assertEqual(len(self.h.ntfys()), 1)
        self.assertEqual(self.asked, ["ca.example"])
        self.h.advance(301)
        self.rqnt("aaln/1", "X: 2", "R: L/hu(N)")
        self.h.line(1).on_hook()
        self.assertEqual(len(self.h.ntfys()), 2)
        self.assertEqual(self.asked, ["ca.example", "ca.example"])

    def test_unknown_name_is_unreachable(self) -> None:
        """A name that does not resolve is treated like a silent call agent: retried after [1, Tdinit]."""
        self.h.gateway.start()
        self.assertEqual(self.h.rsips(), [])
        procedure = next(iter(self.h.gateway.restarts.procedures))
        self.assertTrue(1 <= procedure.interval <= 15)
        self.table["ca.example"] = "127.0.0.1"
        self.h.advance(procedure.interval)
        self.assertEqual(len(self.h.rsips()), 1)
        self.assertEqual(self.asked, ["ca.example", "ca.example"])

    def test_notified_entity_by_name(self) -> None:
        """N: ca2@other.example moves NTFYs to what that name resolves to."""
        self.table.update({"ca.example": "127.0.0.1", "other.example": "127.0.0.3"})
        other = ScriptedAgent()
        self.h.reactor.listenUDP(2727, other, interface="127.0.0.3")
        self.h.gateway.start()
        self.rqnt("aaln/1", "X: 1", "R: L/hd(N)", "N: ca2@other.example")
        self.h.line(1).off_hook()
        self.h.pump()
        self.assertEqual([c.verb for c in other.commands()], [Verb.NTFY])
