"""
Conformance of the simulated gateway, one group per command (digest §2.1,
§2.2, §2.4-§2.8): raw MGCP datagrams in, responses checked field by field.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.gateway.audit import AuditContext
from mgcpswitch.gateway.config import GatewayConfig
from mgcpswitch.gateway.endpoint import Endpoint, EndpointContext
from mgcpswitch.gateway.line import LineContext
from mgcpswitch.gateway.restart import RestartContext
from mgcpswitch.gateway.timers import Timers
from mgcpswitch.mgcp import (
    Command, ConnectionMode, EndpointName, NotifiedEntity, ParamCode as P, Parameters, RestartMethod,
    SessionDescription, Verb, decode, parse_requested_events,
)

from .support.gateway import GatewayTestCase, SDP_REMOTE, sdp


class EPCF(GatewayTestCase):
    """EndpointConfiguration (RFC 3435 §2.3.2)."""

    def test_bearer_is_set_and_audited(self) -> None:
        """EPCF B: e:A answers 200 and the audit reports the new encoding."""
        r = self.h.request("EPCF {tx} aaln/1@rgw1 MGCP 1.0", "B: e:A")
        self.assertEqual(r.code, 200)
        audit = self.auep("aaln/1", "F: B")
        self.assertEqual(audit.params[P.BEARER_INFORMATION], (("e", "A"),))

    def test_wildcard_and_unsupported_value(self) -> None:
        """EPCF accepts '*'; an encoding other than A or mu gets 532 and changes nothing."""
        self.assertEqual(self.h.request("EPCF {tx} *@rgw1 MGCP 1.0", "B: e:A").code, 200)
        self.assertEqual([ep.bearer for ep in self.h.gateway.endpoints], [(("e", "A"),)] * 4)
        self.assertEqual(self.h.request("EPCF {tx} *@rgw1 MGCP 1.0", "B: e:xyz").code, 532)
        self.assertEqual(self.h.request("EPCF {tx} aaln/1@rgw1 MGCP 1.0", "B: q:1").code, 539)
        self.assertEqual(self.h.gateway.endpoints[0].bearer, (("e", "A"),))
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "B: e:mu").code, 200, "EPCF encapsulated in an RQNT")
        self.assertEqual(self.h.gateway.endpoints[0].bearer, (("e", "mu"),))


class CRCX(GatewayTestCase):
    """CreateConnection (RFC 3435 §2.3.5, §2.6)."""

    def test_recvonly_gets_id_and_sdp_with_a_bound_port(self) -> None:
        """200 carries I: (hex) and a local SDP whose port is a real (bound) UDP port."""
        r = self.crcx("aaln/1", "C: A1", "M: recvonly")
        self.assertEqual(r.code, 200)
        cid = r.connection_id
        int(cid, 16)
        self.assertIsNone(r.specific_endpoint)
        address, port = r.sdp.rtp_address
        self.assertEqual(address, "127.0.0.2")
        self.assertIn(("127.0.0.2", port), self.h.network.ports)
        self.assertEqual(r.sdp.audio.codecs, ("PCMU", "PCMA", "G729", "telephone-event"))
        self.assertEqual(r.sdp.audio.ptime, 20)
        [state] = self.h.line(1).connections
        self.assertEqual((state.connection_id, state.call_id, state.mode, state.rtp_port),
                         (cid, "A1", "recvonly", port))

    def test_send_modes_need_a_remote_descriptor(self) -> None:
        """sendrecv, sendonly, confrnce, netwloop and netwtest without SDP get 527 (§2.3.5)."""
        for mode in ("sendrecv", "sendonly", "confrnce", "netwloop", "netwtest"):
            self.assertEqual(self.crcx("aaln/1", "C: A1", f"M: {mode}").code, 527, mode)
        for mode in ("inactive", "loopback", "conttest"):
            self.assertEqual(self.crcx(f"aaln/{2 if mode == 'inactive' else 3}", "C: A1", f"M: {mode}").code,
                             200, mode)
        self.assertEqual(self.h.gateway.connection_count(), 3)

    def test_mode_errors(self) -> None:
        """An unknown mode gets 517, a package extension mode 518, a missing C: 516."""
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: data").code, 517)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: x-foo/bar").code, 518)
        self.assertEqual(self.crcx("aaln/1", "M: recvonly").code, 516)
        self.assertEqual(self.h.gateway.connection_count(), 0)

    def test_negotiation_follows_lco_order(self) -> None:
        """Negotiated = ours ∩ L: ∩ remote, in L:'s order (§2.6); telephone-event only if approved."""
        r = self.crcx("aaln/1", "C: A1", "M: sendrecv", "L: a:PCMA;PCMU;telephone-event", sdp=SDP_REMOTE)
        self.assertEqual(r.sdp.audio.codecs, ("PCMA", "PCMU", "telephone-event"))
        self.assertEqual(r.sdp.audio.fmtp, {101: "0-15"})
        r = self.crcx("aaln/2", "C: A1", "M: sendrecv", "L: a:PCMA;PCMU", sdp=SDP_REMOTE)
        self.assertEqual(r.sdp.audio.codecs, ("PCMA", "PCMU"))
        r = self.crcx("aaln/3", "C: A1", "M: sendrecv", sdp=sdp(pts="8 0"))
        self.assertEqual(r.sdp.audio.codecs, ("PCMA", "PCMU"), "no L: → the remote's order")

    def test_codec_negotiation_failure_is_534(self) -> None:
        """No approved codec, or no common codec with the remote SDP: 534, no connection."""
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "L: a:GSM").code, 534)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "L: a:telephone-event").code, 534)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: sendrecv", sdp=sdp(pts="9")).code, 534)
        self.assertEqual(self.h.gateway.connection_count(), 0)
        self.assertEqual(len(self.h.network.ports), 2, "no RTP port left bound")

    def test_packetization_is_adjusted_not_refused(self) -> None:
        """p: inside the range keeps 20 ms; outside it is adjusted to whole 10 ms frames (§2.3.5)."""
        cases = {"p:10-30": 20, "p:30": 30, "p:5": 10, "p:25": 30, "p:400": 200}
        for n, (option, ptime) in enumerate(cases.items()):
            line = f"aaln/{n % 4 + 1}"
            r = self.crcx(line, "C: A1", "M: recvonly", f"L: {option}")
            self.assertEqual(r.sdp.audio.ptime, ptime, option)
            self.h.request(f"DLCX {{tx}} {line}@rgw1 MGCP 1.0")

    def test_bandwidth_selects_codecs_but_never_fails(self) -> None:
        """b: leaves the codecs that fit (G.729 at 24 kbit/s); when none fits the codec wins."""
        r = self.crcx("aaln/1", "C: A1", "M: recvonly", "L: b:24")
        self.assertEqual(r.sdp.audio.codecs, ("G729", "telephone-event"))
        r = self.crcx("aaln/2", "C: A1", "M: recvonly", "L: b:8, a:PCMU")
        self.assertEqual((r.code, r.sdp.audio.codecs), (200, ("PCMU",)))

    def test_local_connection_option_errors(self) -> None:
        """x+ unknown: 525; unknown option: 541; unsupported value: 532; x- ignored (§2.3.5)."""
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "L: x+foo:1").code, 525)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "L: zz:1").code, 541)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "L: nt:ATM").code, 532)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "L: k:clear:abc").code, 532)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "L: e:maybe").code, 541)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "L: x-foo:1, e:off, s:on").code, 200)

    def test_third_connection_is_540(self) -> None:
        """A line holds two connections (call waiting); the third CRCX gets 540."""
        for _ in range(2):
            self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly").code, 200)
        self.assertEqual(self.crcx("aaln/1", "C: A2", "M: recvonly").code, 540)
        self.assertEqual(len(self.h.line(1).connections), 2)

    def test_any_of_wildcard_picks_a_free_line(self) -> None:
        """'$' picks an in-service line without connections and names it in Z:; none left: 410."""
        names = []
        for _ in range(4):
            r = self.crcx("aaln/$", "C: A1", "M: recvonly")
            self.assertEqual(r.code, 200)
            names.append(str(r.specific_endpoint))
        self.assertEqual(names, [f"aaln/{n}@rgw1" for n in range(1, 5)])
        self.assertEqual(self.crcx("aaln/$", "C: A1", "M: recvonly").code, 410)
        self.assertEqual(self.crcx("*", "C: A1", "M: recvonly").code, 500, "'*' is forbidden in CRCX")

    def test_unknown_endpoints_are_500(self) -> None:
        """An unknown line, another domain or a malformed name: 500 (§2.1.2)."""
        self.assertEqual(self.crcx("aaln/9", "C: A1", "M: recvonly").code, 500)
        self.assertEqual(self.h.request("CRCX {tx} aaln/1@other MGCP 1.0", "C: A1", "M: recvonly").code, 500)
        self.assertEqual(self.h.request("CRCX {tx} aaln/1 MGCP 1.0", "C: A1", "M: recvonly").code, 500)

    def test_remote_descriptor_errors(self) -> None:
        """Bad SDP 509, no c= 509, no audio stream 505, local connections (Z2) 507."""
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: sendrecv", sdp="v=0\nbogus\n").code, 509)
        no_c = "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: sendrecv", sdp=no_c).code, 509)
        video = "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=video 4000 RTP/AVP 31\n"
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: sendrecv", sdp=video).code, 505)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: recvonly", "Z2: aaln/2@rgw1").code, 507)

    def test_a_broken_descriptor_is_509_before_an_unsupported_one_is_505(self) -> None:
        """
        A remote descriptor without a line SDP requires (o=, s=, t=, m=, or
        c= neither in the session nor in the stream; RFC 3435 §3.4 and
        RFC 4566 §5) is in error: 509 (RFC 3435 §2.4: error in the
        RemoteConnectionDescriptor), checked before what is well formed but
        unsupported (a video-only or non-RTP stream, another network type:
        505).  CRCX and MDCX alike; a refused MDCX leaves the connection.
        """
        head = "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\n"
        broken = {
            "truncated after s=": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\n",
            "no m=": head,
            "no t=": head.replace("t=0 0\n", "") + "m=audio 4000 RTP/AVP 0\n",
            "no o=": head.replace("o=- 1 1 IN IP4 1.2.3.4\n", "") + "m=audio 4000 RTP/AVP 0\n",
            "no s=": head.replace("s=-\n", "") + "m=audio 4000 RTP/AVP 0\n",
            "video without c=": "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=video 4000 RTP/AVP 31\n",
            "c= on one stream of two": ("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
                                        "c=IN IP4 1.2.3.4\nm=video 4002 RTP/AVP 31\n"),
        }
        unsupported = {
            "video only": head + "m=video 4000 RTP/AVP 31\n",
            "not RTP": head + "m=audio 4000 udp 0\n",
            "another network type": head.replace("c=IN IP4", "c=ATM NSAP") + "m=audio 4000 RTP/AVP 0\n",
        }
        cid = self.crcx("aaln/2", "C: A2", "M: recvonly").connection_id
        for what, text in [*broken.items(), *unsupported.items()]:
            code = 509 if what in broken else 505
            self.assertEqual(self.crcx("aaln/1", "C: A1", "M: sendrecv", sdp=text).code, code, what)
            mdcx = self.h.request("MDCX {tx} aaln/2@rgw1 MGCP 1.0", "C: A2", f"I: {cid}", "M: sendrecv", sdp=text)
            self.assertEqual(mdcx.code, code, what)
        self.assertEqual(self.h.gateway.connection_count(), 1)
        self.assertEqual(self.crcx("aaln/1", "C: A1", "M: sendrecv", sdp=head + "m=audio 4000 RTP/AVP 0\n").code, 200)

    def test_encapsulated_rqnt_shares_fate(self) -> None:
        """CRCX + RQNT ringing on an off-hook line: 401 and no connection, no port (§2.3.5, App. F.3)."""
        self.h.line(1).off_hook()
        ports = len(self.h.network.ports)
        r = self.crcx("aaln/1", "C: A1", "M: recvonly", "X: 11", "R: L/hd(N)", "S: L/rg")
        self.assertEqual(r.code, 401)
        self.assertEqual((self.h.line(1).connections, len(self.h.network.ports)), ((), ports))
        self.assertEqual(self.h.line(1).request_id, "0")
        r = self.crcx("aaln/2", "C: A1", "M: recvonly", "X: 12", "R: L/hd(N)", "S: L/rg")
        self.assertEqual(r.code, 200)
        self.assertTrue(self.h.line(2).ringing)
        self.assertEqual(self.h.line(2).request_id, "12")

    def test_signal_on_the_new_connection(self) -> None:
        """'@$' in an encapsulated RQNT names the connection being created (§2.1.7)."""
        r = self.crcx("aaln/1", "C: A1", "M: sendrecv", "X: 1", "S: G/rt@$", sdp=sdp())
        self.assertEqual(r.code, 200)
        self.assertEqual(self.h.line(1).signals, {f"G/rt@{r.connection_id}"})
        r = self.crcx("aaln/2", "C: A1", "M: recvonly", "X: 1", "S: G/rt@$")
        self.assertEqual(r.code, 527, "a signal on a connection needs its remote descriptor")


class MDCX(GatewayTestCase):
    """ModifyConnection (RFC 3435 §2.3.6)."""

    def setUp(self) -> None:
        super().setUp()
        r = self.crcx("aaln/1", "C: A1", "M: recvonly")
        self.cid = r.connection_id
        self.version = int(r.sdp.origin.version)

    def mdcx(self, *lines: str, sdp: str | None = None) -> object:
        return self.h.request("MDCX {tx} aaln/1@rgw1 MGCP 1.0", *lines, sdp=sdp)

    def test_mode_change_alone_returns_no_sdp(self) -> None:
        """A pure mode change answers 200 without a descriptor."""
        r = self.mdcx("C: A1", f"I: {self.cid}", "M: inactive")
        self.assertEqual((r.code, r.sdp), (200, None))
        self.assertEqual(self.h.line(1).connections[0].mode, "inactive")

    def test_renegotiation_returns_sdp_with_a_new_version(self) -> None:
        """New remote SDP narrowing the codecs: local SDP comes back, o= version incremented."""
        r = self.mdcx("C: A1", f"I: {self.cid}", "M: sendrecv", sdp=sdp(pts="8"))
        self.assertEqual(r.code, 200)
        self.assertEqual(r.sdp.audio.codecs, ("PCMA",))
        self.assertEqual(int(r.sdp.origin.version), self.version + 1)
        self.assertEqual(self.h.line(1).connections[0].remote_sdp, SessionDescription.parse(sdp(pts="8")))
        r = self.mdcx("C: A1", f"I: {self.cid}", "L: p:30")
        self.assertEqual((r.sdp.audio.ptime, r.sdp.audio.codecs), (30, ("PCMA",)),
                         "omitted fields keep their value; the remote still binds")

    def test_unknown_connection_and_call(self) -> None:
        """Unknown I: 515; another call's C: 516; a send mode without remote SDP 527."""
        self.assertEqual(self.mdcx("C: A1", "I: FFFF", "M: inactive").code, 515)
        self.assertEqual(self.mdcx("C: B2", f"I: {self.cid}", "M: inactive").code, 516)
        self.assertEqual(self.mdcx("C: A1", f"I: {self.cid}", "M: sendrecv").code, 527)
        self.assertEqual(self.h.line(1).connections[0].mode, "recvonly")

    def test_connection_id_is_case_insensitive(self) -> None:
        """Identifiers are compared case-insensitively (digest §1.5)."""
        self.assertEqual(self.mdcx("C: a1", f"I: {self.cid.lower()}", "M: inactive").code, 200)


class DLCX(GatewayTestCase):
    """DeleteConnection from the call agent (RFC 3435 §2.3.7, §2.3.9)."""

    def test_single_connection_gets_250_with_statistics(self) -> None:
        """250 with P: PS, OS, PR, OR, PL, JI, LA; the RTP port is released."""
        cid = self.crcx("aaln/1", "C: A1", "M: recvonly").connection_id
        port = self.h.line(1).connections[0].rtp_port
        r = self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", f"I: {cid}")
        self.assertEqual(r.code, 250)
        self.assertEqual(r.params[P.CONNECTION_PARAMETERS].as_dict(),
                         {"PS": 0, "OS": 0, "PR": 0, "OR": 0, "PL": 0, "JI": 0, "LA": 0})
        self.assertNotIn(("127.0.0.2", port), self.h.network.ports)
        self.assertEqual(self.h.line(1).connections, ())

    def test_unknown_connection_and_wrong_call(self) -> None:
        """A stale I: is 515, a C: of another call 516."""
        cid = self.crcx("aaln/1", "C: A1", "M: recvonly").connection_id
        self.assertEqual(self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", "I: 1234").code, 515)
        self.assertEqual(self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: B2", f"I: {cid}").code, 516)
        self.assertEqual(len(self.h.line(1).connections), 1)

    def test_by_call_id_deletes_that_call_only(self) -> None:
        """C: without I: deletes the call's connections on the endpoint; 250 without P:."""
        self.crcx("aaln/1", "C: A1", "M: recvonly")
        keep = self.crcx("aaln/1", "C: B2", "M: recvonly").connection_id
        r = self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1")
        self.assertEqual((r.code, P.CONNECTION_PARAMETERS in r.params), (250, False))
        self.assertEqual([c.connection_id for c in self.h.line(1).connections], [keep])

    def test_wildcard_deletes_everything(self) -> None:
        """DLCX *@domain deletes every connection of the gateway and frees every port."""
        for n in (1, 2, 3):
            self.crcx(f"aaln/{n}", "C: A1", "M: recvonly")
        r = self.h.request("DLCX {tx} *@rgw1 MGCP 1.0")
        self.assertEqual(r.code, 250)
        self.assertEqual(self.h.gateway.connection_count(), 0)
        self.assertEqual(len(self.h.network.ports), 2)

    def test_idle_endpoint_is_250(self) -> None:
        """Nothing to delete on a valid endpoint still succeeds (§2.3.9; osmo-mgw says 515)."""
        self.assertEqual(self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1").code, 250)
        self.assertEqual(self.h.request("DLCX {tx} aaln/9@rgw1 MGCP 1.0").code, 500)

    def test_encapsulation(self) -> None:
        """A single DLCX may carry an RQNT; a DLCX of several connections may not (539)."""
        cid = self.crcx("aaln/1", "C: A1", "M: recvonly").connection_id
        self.h.line(1).off_hook()
        r = self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "C: A1", f"I: {cid}", "X: 7",
                           "R: L/hu(N)", "S: L/ro")
        self.assertEqual(r.code, 250)
        self.assertEqual((self.h.line(1).request_id, self.h.line(1).signals), ("7", {"L/ro"}))
        r = self.h.request("DLCX {tx} aaln/1@rgw1 MGCP 1.0", "X: 8", "R: L/hu(N)")
        self.assertEqual(r.code, 539)


class AUEP(GatewayTestCase):
    """AuditEndpoint (RFC 3435 §2.3.10)."""

    def test_every_item(self) -> None:
        """Every F: item is answered; supported items without a value come back empty."""
        r = self.auep("aaln/1", "F: R,D,S,X,Q,N,I,T,O,ES,B,RM,RD,E,PL,MD,A,B/PR,B/NS")
        self.assertEqual(r.code, 200)
        text = r.params
        self.assertEqual(text[P.REQUESTED_EVENTS], ())
        self.assertIsNone(text[P.DIGIT_MAP])
        self.assertEqual(text[P.SIGNAL_REQUESTS], ())
        self.assertEqual(text[P.REQUEST_ID], "0")
        self.assertEqual(str(text[P.QUARANTINE_HANDLING]), "step,process")
        self.assertEqual(str(text[P.NOTIFIED_ENTITY]), "127.0.0.1:2727")
        self.assertEqual(text[P.CONNECTION_ID], ())
        self.assertEqual(text[P.EVENT_STATES][0].name, "L/hu")
        self.assertEqual(text[P.RESTART_METHOD], RestartMethod.RESTART)
        self.assertEqual(text[P.RESTART_DELAY], 0)
        self.assertEqual(text[P.REASON_CODE].code, 0)
        self.assertEqual(text[P.PACKAGE_LIST], (("L", 1), ("D", 1), ("G", 1), ("B", 0)))
        self.assertEqual(text[P.MAX_DATAGRAM], 8192)
        codecs = [cap.codecs for cap in text[P.CAPABILITIES]]
        self.assertEqual(codecs, [("PCMU",), ("PCMA",), ("G729",), ("telephone-event",)])
        self.assertEqual(text[P.CAPABILITIES][0].packages, ("L", "D", "G", "B"))
        self.assertIn("netwloop", text[P.CAPABILITIES][0].modes)
        self.assertEqual(str(text[P.NOTIFICATION_STATE]), "o")

    def test_items_follow_the_state(self) -> None:
        """After an RQNT, a CRCX and an off-hook the audit shows R, D, S, X, I and ES: L/hd."""
        cid = self.crcx("aaln/1", "C: A1", "M: recvonly").connection_id
        self.h.line(1).off_hook()
        self.rqnt("aaln/1", "X: AB", "R: L/hu(N), D/[0-9#*T](D)", "S: L/dl", "D: (xx)", "Q: loop",
                  "T: L/hf")
        r = self.auep("aaln/1", "F: R,D,S,X,Q,I,T,ES")
        self.assertEqual(r.params[P.REQUEST_ID], "AB")
        self.assertEqual([str(e) for e in r.params[P.REQUESTED_EVENTS]], ["L/hu(N)", "D/[0-9#*T](D)"])
        self.assertEqual(str(r.params[P.DIGIT_MAP]), "(xx)")
        self.assertEqual([str(s) for s in r.params[P.SIGNAL_REQUESTS]], ["L/dl"])
        self.assertEqual(str(r.params[P.QUARANTINE_HANDLING]), "loop,process")
        self.assertEqual(r.params[P.CONNECTION_ID], (cid,))
        self.assertEqual([str(e) for e in r.params[P.DETECT_EVENTS]], ["L/hf"])
        self.assertEqual(r.params[P.EVENT_STATES][0].name, "L/hd")

    def test_wildcard_lists_endpoints_and_ignores_F(self) -> None:
        """AUEP *@domain returns one Z: per endpoint, whatever F: asks (§2.3.10)."""
        r = self.auep("*", "F: R,X")
        self.assertEqual(r.params[P.SPECIFIC_ENDPOINT_ID],
                         tuple(EndpointName(f"aaln/{n}@rgw1") for n in range(1, 5)))
        self.assertNotIn(P.REQUEST_ID, r.params)
        self.assertEqual(self.auep("aaln/*").params[P.SPECIFIC_ENDPOINT_ID][-1], "aaln/4@rgw1")

    def test_plain_and_unknown_items(self) -> None:
        """No F: gives a bare 200; unknown or connection items are silently left out."""
        r = self.auep("aaln/1")
        self.assertEqual((r.code, dict(r.params)), (200, {}))
        r = self.auep("aaln/1", "F: C,L,M,P,X-FOO,Z")
        self.assertEqual((r.code, dict(r.params)), (200, {}))
        self.assertEqual(self.auep("aaln/7").code, 500)
        self.assertEqual(self.auep("aaln/$").code, 500, "'$' is forbidden in AUEP")

    def test_response_too_large_is_533(self) -> None:
        """A wildcard audit that cannot fit in the advertised datagram size gets 533."""
        h = self.harness(lines=300, max_datagram=4000)
        self.addCleanup(self.stop_harness, h)
        self.assertEqual(h.request("AUEP {tx} *@rgw1 MGCP 1.0").code, 533)
        self.assertEqual(h.request("AUEP {tx} aaln/300@rgw1 MGCP 1.0").code, 200)


class AUCX(GatewayTestCase):
    """AuditConnection (RFC 3435 §2.3.11)."""

    def test_items_and_descriptors(self) -> None:
        """C, N, L, M, P as asked; descriptors last, local first; a missing remote one is v=0."""
        cid = self.crcx("aaln/1", "C: A1", "M: recvonly", "L: p:20, a:PCMU").connection_id
        r = self.h.request("AUCX {tx} aaln/1@rgw1 MGCP 1.0", f"I: {cid}", "F: C,N,L,M,P,LC,RC")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.call_id, "A1")
        self.assertEqual(str(r.params[P.LOCAL_CONNECTION_OPTIONS]), "p:20, a:PCMU")
        self.assertEqual(r.params[P.CONNECTION_MODE], ConnectionMode.RECVONLY)
        self.assertEqual(r.params[P.CONNECTION_PARAMETERS].get("PS"), 0)
        self.assertEqual(r.sdp, self.h.line(1).connections[0].local_sdp)
        self.assertTrue(r.second_sdp.is_empty)
        r = self.h.request("AUCX {tx} aaln/1@rgw1 MGCP 1.0", f"I: {cid}", "F: RC")
        self.assertTrue(r.sdp.is_empty)

    def test_empty_F_and_unknown_connection(self) -> None:
        """Empty F: on an existing connection is 200; an unknown one 515."""
        cid = self.crcx("aaln/1", "C: A1", "M: recvonly").connection_id
        r = self.h.request("AUCX {tx} aaln/1@rgw1 MGCP 1.0", f"I: {cid}", "F:")
        self.assertEqual((r.code, dict(r.params), r.sdp), (200, {}, None))
        self.assertEqual(self.h.request("AUCX {tx} aaln/1@rgw1 MGCP 1.0", "I: 99", "F: M").code, 515)


class RQNT(GatewayTestCase):
    """NotificationRequest: acceptance and the error codes (RFC 3435 §2.3.3, §4.4.2)."""

    def test_wildcard_succeeds_for_all_or_fails_for_all(self) -> None:
        """RQNT aaln/* asking for L/hd with line 3 off-hook: 401 and no line changed (§4.4.3)."""
        self.h.line(3).off_hook()
        r = self.rqnt("aaln/*", "X: 5", "R: L/hd(N)")
        self.assertEqual(r.code, 401)
        self.assertEqual([line.request_id for line in self.h.gateway.lines], ["0"] * 4)
        r = self.rqnt("aaln/*", "X: 6", "R: L/hu(N)")
        self.assertEqual(r.code, 402)
        self.h.line(3).on_hook()
        self.assertEqual(self.rqnt("aaln/*", "X: 7", "R: L/hd(N)").code, 200)
        self.assertEqual([line.request_id for line in self.h.gateway.lines], ["7"] * 4)

    def test_unknown_package_is_518_with_package_list(self) -> None:
        """An event of an unknown package: 518 carrying PL: (RFC 3661)."""
        r = self.rqnt("aaln/1", "X: 1", "R: Q/zz(N)")
        self.assertEqual(r.code, 518)
        self.assertEqual(r.params[P.PACKAGE_LIST], (("L", 1), ("D", 1), ("G", 1), ("B", 0)))
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: Q/zz").code, 518)

    def test_event_action_map_and_quarantine_errors(self) -> None:
        """522 unknown event, 523 bad action, 519 D without a map, 508 bad Q:, 537 bad map letter."""
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/zz(N)").code, 522)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/dl(N)").code, 522, "a signal is no event")
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hd(Z)").code, 523)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hd(N,A)").code, 523)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: D/[0-9](D)").code, 519)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "Q: sometimes").code, 508)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "D: (1%2)").code, 537)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hd(x-foo/bar)").code, 518)

    def test_connection_references(self) -> None:
        """An event or signal on an unknown connection: 515; a signal on one without SDP: 527."""
        cid = self.crcx("aaln/1", "C: A1", "M: recvonly").connection_id
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: G/rt@FFFF").code, 515)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: G/ld@FFFF(N)").code, 515)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", f"S: G/rt@{cid}").code, 527)
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "S: L/dl@" + cid).code, 522)

    def test_failed_rqnt_changes_nothing(self) -> None:
        """A request refused for its last signal leaves R, S, D and X as they were (§4.4.2)."""
        self.h.line(1).off_hook()
        self.assertEqual(self.rqnt("aaln/1", "X: 1", "R: L/hu(N)", "S: L/dl", "D: (xx)").code, 200)
        r = self.rqnt("aaln/1", "X: 2", "R: L/hf(N)", "S: L/bz, L/rg", "D: (xxx)")
        self.assertEqual(r.code, 401)
        line = self.h.line(1)
        self.assertEqual((line.request_id, str(line.digit_map), line.signals), ("1", "(xx)", {"L/dl"}))
        self.assertEqual([str(e.name) for e in line.requested_events], ["L/hu"])


class Misc(GatewayTestCase):
    """Verbs and versions a gateway does not take (RFC 3435 §3.2.1, §2.4)."""

    def test_gateway_side_verbs_are_504(self) -> None:
        """NTFY, RSIP and MESG go from gateway to agent, and an unknown X-verb: 504."""
        self.assertEqual(self.h.request("NTFY {tx} aaln/1@rgw1 MGCP 1.0", "X: 1", "O: L/hd").code, 504)
        self.assertEqual(self.h.request("RSIP {tx} aaln/1@rgw1 MGCP 1.0", "RM: restart").code, 504)
        self.assertEqual(self.h.request("XYZW {tx} aaln/1@rgw1 MGCP 1.0").code, 504)

    def test_versions_and_parameters(self) -> None:
        """
        The NCS 1.0 profile is taken (RFC 3435 §3.2.1: a profile follows the
        version); another profile, another NCS version and MGCP 2.0 are 528;
        an unknown parameter 539, a critical X+ one 511, X- ignored.
        """
        self.assertEqual(self.h.request("AUEP {tx} aaln/1@rgw1 MGCP 1.0 NCS 1.0").code, 200)
        self.assertEqual(self.h.request("AUEP {tx} aaln/1@rgw1 mgcp 1.0 ncs 1.0").code, 200)
        self.assertEqual(self.h.request("AUEP {tx} aaln/1@rgw1 MGCP 1.0 NCS 2.0").code, 528)
        self.assertEqual(self.h.request("AUEP {tx} aaln/1@rgw1 MGCP 1.0 TGCP 1.0").code, 528)
        self.assertEqual(self.h.request("AUEP {tx} aaln/1@rgw1 MGCP 2.0").code, 528)
        self.assertEqual(self.h.request("AUEP {tx} aaln/1@rgw1 MGCP 1.0", "ZZ: 1").code, 539)
        self.assertEqual(self.h.request("AUEP {tx} aaln/1@rgw1 MGCP 1.0", "X+Foo: 1").code, 511)
        self.assertEqual(self.h.request("AUEP {tx} aaln/1@rgw1 MGCP 1.0", "X-Foo: 1").code, 200)

    def test_an_ncs_gateway_registers_in_ncs(self) -> None:
        """
        A gateway configured with version MGCP 1.0 NCS 1.0 sends its RSIP in
        that profile (so the call agent speaks NCS to it, RFC 3435 §3.2.1);
        a version it cannot speak is refused at configuration.
        """
        from .support.gateway import GatewayHarness

        h = GatewayHarness(version="MGCP 1.0 NCS 1.0")
        [rsip] = h.agent.commands(Verb.RSIP)
        self.assertEqual((rsip.version, rsip.profile), ("MGCP 1.0 NCS 1.0", "NCS 1.0"))
        with self.assertRaisesRegex(ValueError, "unsupported version 'MGCP 1.0 TGCP 1.0'"):
            GatewayConfig(version="MGCP 1.0 TGCP 1.0")

    def test_lf_line_ends_and_lower_case(self) -> None:
        """LF-only lines and lower-case verbs, names and values are accepted (§3.1)."""
        self.h.send_raw(b"crcx 4242 AALN/1@RGW1 MGCP 1.0\nc: a1\nm: RECVONLY\n")
        r = self.h.response(4242)
        self.assertEqual(r.code, 200)
        self.assertEqual(self.h.line(1).connections[0].mode, "recvonly")

    def test_piggybacked_commands_each_get_an_answer_in_order(self) -> None:
        """Two commands in one datagram are executed in order, each answered (§3.5.5)."""
        self.h.send_raw(
            b"CRCX 501 aaln/1@rgw1 MGCP 1.0\r\nC: A1\r\nM: recvonly\r\n.\r\n"
            b"AUEP 502 aaln/1@rgw1 MGCP 1.0\r\nF: I\r\n"
        )
        crcx, auep = self.h.response(501), self.h.response(502)
        self.assertEqual(auep.params[P.CONNECTION_ID], (crcx.connection_id,))
        self.assertEqual([m.transaction_id for m, _ in self.h.agent.received[-2:]], [501, 502])
        self.assertTrue(all(isinstance(m, type(crcx)) for m, _ in self.h.agent.received[-2:]))
        self.assertEqual(len(decode(self.h.agent.datagrams[-1])), 1)


class DollarExpansion(SynchronousTestCase):
    """C{@$} in an encapsulated request, as the endpoint rewrites it (§2.1.7)."""

    def test_expanded_everywhere_and_shared_when_absent(self) -> None:
        """
        Every C{@$} becomes the connection id, in R:, S: and in embedded
        requests; a request without C{@$} comes back as the same object, so
        that lines armed with it share one compiled request.
        """
        from mgcpswitch.gateway.requests import compile_requested, expand_dollar
        from mgcpswitch.mgcp import parse_requested_events, parse_signal_requests

        requested = parse_requested_events("L/hu(N), G/ft@$(N), L/hf(E(R(G/ft@$(N)), S(G/rt@$)))")
        signals = parse_signal_requests("G/rt@$, L/dl")
        r, s = expand_dollar(requested, signals, "A7")
        self.assertEqual(
            (parse_requested_events("L/hu(N), G/ft@A7(N), L/hf(E(R(G/ft@A7(N)), S(G/rt@A7)))"),
             parse_signal_requests("G/rt@A7, L/dl")),
            (r, s),
        )
        plain = parse_requested_events("L/hu(N), L/hf(E(R(L/hu), S(L/dl)))")
        tones = parse_signal_requests("L/rg")
        r, s = expand_dollar(plain, tones, "A7")
        self.assertIs(r, plain)
        self.assertIs(s, tones)
        connections = {"A7": True}
        self.assertIs(compile_requested(plain, connections, None, False),
                      compile_requested(plain, {}, None, False))


class _Context:
    """A minimal endpoint context: records the NTFYs an endpoint sends."""

    def __init__(self) -> None:
        self.config = GatewayConfig()
        self.clock = Clock()
        self.timers = Timers(self.clock)
        self.sent: list[Command] = []

    def set_notified_entity(self, ep: Endpoint, entity: NotifiedEntity) -> None:
        ep.notified_entity = entity

    def release_connection(self, ep: Endpoint, conn: Any) -> None:
        del ep.connections[conn.connection_id]

    def swap_audio(self, ep: Endpoint) -> None:
        pass

    def build_notify(self, ep: Endpoint, observed: tuple[Any, ...]) -> Command:
        return Command.create(Verb.NTFY, 7, ep.name, request_id=ep.request_id, observed_events=observed)

    def send_notification(self, ep: Endpoint, notification: Any) -> None:
        self.sent.append(notification.command)


class Contexts(GatewayTestCase):
    """The gateway's parts see it through narrow protocols (no back-pointer to the class)."""

    def test_gateway_provides_every_context(self) -> None:
        """The simulated gateway provides each context its parts receive, and they hold it as such."""
        gateway = self.h.gateway
        for context in (EndpointContext, LineContext, AuditContext, RestartContext):
            self.assertIsInstance(gateway, context)
        self.assertIs(gateway.endpoints[0].context, gateway)

    def test_an_endpoint_runs_on_any_context(self) -> None:
        """An endpoint built on a minimal context of its own notifies through it: nothing else is needed."""
        context = _Context()
        self.assertIsInstance(context, EndpointContext)
        ep = Endpoint(context, 1, EndpointName("aaln/1@x"), NotifiedEntity.parse("ca@127.0.0.1:2727"))
        ep.commit(ep.plan(Parameters({P.REQUEST_ID: "5", P.REQUESTED_EVENTS: parse_requested_events("L/hd(N)")})))
        ep.set_hook(True)
        [ntfy] = context.sent
        self.assertEqual((ntfy.request_id, [str(e) for e in ntfy.params[P.OBSERVED_EVENTS]]), ("5", ["L/hd"]))
