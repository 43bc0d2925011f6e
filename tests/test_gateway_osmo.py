"""
The simulated gateway against a real one: the same CRCX / MDCX / DLCX /
AUEP datagrams go to osmo-mgw 1.10 (on 127.0.0.32) and to our gateway, and
the return codes are compared.  Where osmo-mgw departs from RFC 3435 /
RFC 3661 (its quirks are listed in ../shared/peers/README.md) our gateway
follows the RFC and the case names the difference.

Endpoint names differ (osmo-mgw has C{rtpbridge/N@mgw}, we have
C{aaln/N@rgw1}); everything else in the datagrams is the same bytes.
"""

from __future__ import annotations

import socket
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.mgcp import ParamCode as P, Response, decode

from .support.gateway import GatewayHarness
from .support.osmo import OsmoMGW, start_osmo_mgw

MGW_IP = "127.0.0.32"
SDP = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 40000 RTP/AVP {pt}\n"

#: (template, our code, osmo-mgw's code, why they differ).  {N} is an
#: endpoint number, {cid} a connection made by the test on endpoint N.
SAME = None


class AgainstOsmoMGW(SynchronousTestCase):
    """Same datagrams, both gateways."""

    mgw: OsmoMGW

    @classmethod
    def setUpClass(cls) -> None:
        cls.mgw = start_osmo_mgw(ip=MGW_IP, endpoints=32)
        cls.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cls.sock.bind(("127.0.0.1", 0))
        cls.sock.settimeout(2.0)
        cls.txid = 300000

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sock.close()
        cls.mgw.stop()

    def setUp(self) -> None:
        self.h = GatewayHarness(lines=16)
        self.addCleanup(self.h.stop)

    def osmo(self, text: str) -> Response | None:
        """One datagram to osmo-mgw; its response (None: it stays silent)."""
        type(self).txid += 1
        txid = type(self).txid
        self.sock.sendto(text.replace("{tx}", str(txid)).encode(), self.mgw.address)
        try:
            while True:
                data, _ = self.sock.recvfrom(8192)
                [message] = decode(data)
                if isinstance(message, Response) and message.transaction_id == txid:
                    return message
        except OSError:
            return None

    def both(self, template: str, n: int, sdp: str | None = None, **ids: str) -> tuple[Response, Response]:
        """Send C{template} (lines joined with CRLF) to both; {ep} and {cid} filled per gateway."""
        body = ("\r\n" + sdp.replace("\n", "\r\n")) if sdp is not None else ""

        def text(endpoint: str, cid: str) -> str:
            return template.replace("{ep}", endpoint).replace("{cid}", cid).replace("\n", "\r\n") + "\r\n" + body

        theirs = self.osmo(text(f"rtpbridge/{n:x}@mgw", ids.get("osmo", "")))
        txid = self.h.next_txid()
        self.h.send_raw(text(f"aaln/{n}@rgw1", ids.get("ours", "")).replace("{tx}", str(txid)).encode())
        ours = self.h.response(txid)
        self.assertIsNotNone(theirs, f"osmo-mgw did not answer {template!r}")
        return ours, theirs  # type: ignore[return-value]

    def compare(self, cases: list[tuple[str, int, int, str | None]], n: int, sdp: str | None = None,
                **ids: str) -> None:
        for template, ours_expected, theirs_expected, difference in cases:
            ours, theirs = self.both(template, n, sdp, **ids)
            self.assertEqual(ours.code, ours_expected, template)
            self.assertEqual(theirs.code, theirs_expected, f"osmo-mgw: {template}")
            if difference is None:
                self.assertEqual(ours.code, theirs.code, template)

    def connect(self, n: int, mode: str = "recvonly") -> dict[str, str]:
        ours, theirs = self.both(f"CRCX {{tx}} {{ep}} MGCP 1.0\nC: C0FFEE\nM: {mode}", n)
        self.assertEqual((ours.code, theirs.code), (200, 200))
        return {"ours": ours.connection_id, "osmo": theirs.connection_id}

    # -- CRCX ------------------------------------------------------------

    def test_crcx_success_has_id_and_sdp_on_both(self) -> None:
        """A recvonly CRCX: 200 with I: and an SDP offering PCMU on an even port, both gateways."""
        ours, theirs = self.both("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nL: p:20, a:PCMU\nM: recvonly", 1)
        for r in (ours, theirs):
            self.assertEqual(r.code, 200)
            self.assertTrue(r.connection_id)
            self.assertEqual(r.sdp.audio.payload_types, (0,))
            self.assertEqual(r.sdp.audio.ptime, 20)
            self.assertEqual(r.sdp.audio.port % 2, 0)

    def test_crcx_errors(self) -> None:
        """Missing C:, bad mode, send mode without SDP, loopback: the same codes."""
        self.compare([
            ("CRCX {tx} {ep} MGCP 1.0\nM: recvonly", 516, 516, SAME),
            ("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: data", 517, 517, SAME),
            ("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: sendrecv", 527, 527, SAME),
            ("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: x-foo/bar", 518, 517,
             "RFC 3661: an unsupported package extension mode is 518; osmo-mgw says 517"),
            ("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: netwloop", 527, 517,
             "RFC 3435 §2.3.5: netwloop without a remote descriptor is 527; osmo-mgw says 517"),
            ("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: recvonly\nL: a:GSM", 534, 200,
             "RFC 3435 §2.6: no approved codec is 534; osmo-mgw ignores the codec it lacks"),
            ("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: recvonly\nL: p:30", 200, 535,
             "RFC 3435 §2.3.5: the gateway may adjust the packetization; osmo-mgw refuses 30 ms"),
            ("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: recvonly\nN: ca@127.0.0.1:2727", 200, 539,
             "RFC 3435 §3.2.2: N: is allowed in CRCX; osmo-mgw rejects it (539)"),
        ], n=2)

    def test_crcx_descriptor_errors(self) -> None:
        """A broken remote SDP and a codec-less offer."""
        self.compare([("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: sendrecv", 509, 527,
                       "RFC 3661: an error in the remote descriptor is 509; osmo-mgw says 527")],
                     n=3, sdp="v=0\nbogus\n")
        self.compare([("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: sendrecv\nL: a:PCMU", 534, 200,
                       "RFC 3435 §2.6: no common codec is 534; osmo-mgw accepts G.722 it cannot do")],
                     n=4, sdp=SDP.format(pt=9))

    def test_third_connection_is_540_on_both(self) -> None:
        """Two connections per endpoint; the third CRCX: 540 on both gateways."""
        self.connect(5)
        self.connect(5)
        self.compare([("CRCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nM: recvonly", 540, 540, SAME)], n=5)

    # -- MDCX ------------------------------------------------------------

    def test_mdcx(self) -> None:
        """Call mismatch, send mode without SDP, unknown I: and endpoint agree; an idle endpoint differs."""
        ids = self.connect(6)
        self.compare([
            ("MDCX {tx} {ep} MGCP 1.0\nC: B2\nI: {cid}\nM: inactive", 516, 516, SAME),
            ("MDCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: {cid}\nM: sendrecv", 527, 527, SAME),
            ("MDCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: 1234ABCD\nM: inactive", 515, 515, SAME),
            ("MDCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: {cid}\nM: recvonly", 200, 200, SAME),
            ("MDCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: {cid}\nM: inactive", 200, 517,
             "RFC 3435 §2.3.1: inactive is a mode of MGCP 1.0; osmo-mgw 1.10 refuses it (517)"),
        ], n=6, **ids)
        self.compare([
            ("MDCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: 1234ABCD\nM: inactive", 515, 400,
             "RFC 3661: an unknown connection id is 515; on an endpoint without connections "
             "osmo-mgw says 400 (515 once the endpoint has one)"),
        ], n=12)
        self.compare([("MDCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: 1\nM: inactive", 500, 500, SAME)], n=0x99)

    def test_mdcx_with_sdp_returns_a_descriptor_on_both(self) -> None:
        """MDCX with a new remote SDP changing the session: 200 and a local SDP, both gateways."""
        ids = self.connect(7)
        ours, theirs = self.both("MDCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: {cid}\nM: sendrecv", 7,
                                 sdp=SDP.format(pt=0) + "a=ptime:20\n", **ids)
        self.assertEqual((ours.code, theirs.code), (200, 200))
        self.assertIsNotNone(theirs.sdp)
        # osmo-mgw returns its SDP on every MDCX; we return it when the session changed
        # (RFC 3435 §2.3.6): here the codec list narrowed from four to PCMU.
        self.assertEqual(ours.sdp.audio.codecs, ("PCMU",))

    # -- DLCX ------------------------------------------------------------

    def test_dlcx(self) -> None:
        """Wrong call 516 and stale I: 515 agree; a DLCX of an idle endpoint differs."""
        ids = self.connect(8)
        self.compare([
            ("DLCX {tx} {ep} MGCP 1.0\nC: B2\nI: {cid}", 516, 516, SAME),
            ("DLCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: {cid}", 250, 250, SAME),
            ("DLCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: {cid}", 515, 515, SAME),
            ("DLCX {tx} {ep} MGCP 1.0\nC: C0FFEE", 250, 515,
             "RFC 3435 §2.3.9: deleting the (no) connections of a valid endpoint succeeds; osmo-mgw says 515"),
            ("DLCX {tx} {ep} MGCP 1.0", 250, 515, "the same, without C:"),
        ], n=8, **ids)
        self.compare([("DLCX {tx} {ep} MGCP 1.0", 500, 500, SAME)], n=0x99)

    def test_dlcx_statistics_on_both(self) -> None:
        """250 with P: on both; osmo-mgw leaves out LA (allowed: latency is optional)."""
        ids = self.connect(9)
        ours, theirs = self.both("DLCX {tx} {ep} MGCP 1.0\nC: C0FFEE\nI: {cid}", 9, **ids)
        self.assertEqual((ours.code, theirs.code), (250, 250))
        names = [set(r.params[P.CONNECTION_PARAMETERS].as_dict()) for r in (ours, theirs)]
        self.assertEqual(names[0] - names[1], {"LA"})

    # -- AUEP ------------------------------------------------------------

    def test_auep(self) -> None:
        """Known 200, unknown 500, '$' 500 on both; F: items are answered only by us."""
        self.compare([
            ("AUEP {tx} {ep} MGCP 1.0", 200, 200, SAME),
            ("AUEP {tx} {ep} MGCP 1.0\nF: R,D,S,X,N,I,T,O,ES", 200, 200, SAME),
        ], n=10)
        self.compare([("AUEP {tx} {ep} MGCP 1.0", 500, 500, SAME)], n=0x99)
        ours, theirs = self.both("AUEP {tx} {ep} MGCP 1.0\nF: X,ES,I", 11)
        self.assertEqual(dict(theirs.params), {}, "osmo-mgw answers a bare 200 (README §2)")
        self.assertEqual(set(ours.params), {P.REQUEST_ID, P.EVENT_STATES, P.CONNECTION_ID},
                         "RFC 3435 §2.3.10: every supported F: item is returned")

    def test_auep_wildcard(self) -> None:
        """'*' is accepted by both; we list the endpoints in Z: lines (§2.3.10), osmo-mgw does not."""
        ours = self.h.request("AUEP {tx} aaln/*@rgw1 MGCP 1.0")
        theirs = self.osmo("AUEP {tx} rtpbridge/*@mgw MGCP 1.0\r\n")
        self.assertEqual((ours.code, theirs.code), (200, 200))
        self.assertEqual(len(ours.params[P.SPECIFIC_ENDPOINT_ID]), 16)
        self.assertNotIn(P.SPECIFIC_ENDPOINT_ID, theirs.params)
