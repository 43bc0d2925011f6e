"""
Offer/answer (RFC 3264, mgcpswitch.sip.sdp) and digest credentials
(RFC 2617, RFC 7616/8760, mgcpswitch.sip.digest): the pure functions the
trunk relies on, checked against the RFCs' own examples.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.mgcp import SessionDescription
from mgcpswitch.sip import Algorithm, Origin, authorization, check_answer, make_answer, make_offer, parse_challenge
from mgcpswitch.sip.sdp import acceptable
from tests.support.sip import line_sdp

OFFER = SessionDescription.parse(
    "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 49170 RTP/AVP 18 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=sendonly\r\n"
    "m=video 51372 RTP/AVP 31\r\n"
)


class OfferAnswer(SynchronousTestCase):
    def test_offer_narrows_to_the_trunk_codecs(self) -> None:
        """The line's SDP offered with the trunk's codecs only, telephone-event kept, our origin."""
        offer = make_offer(line_sdp(4000), ("PCMA",), Origin(42, 7))
        assert offer is not None
        self.assertEqual(offer.audio.payload_types, (8, 101))  # type: ignore[union-attr]
        self.assertEqual(offer.origin.session_id, "42")  # type: ignore[union-attr]
        self.assertEqual(offer.origin.version, "7")  # type: ignore[union-attr]
        self.assertIsNone(make_offer(line_sdp(4000), ("G729",), Origin(1, 1)))

    def test_answer_keeps_the_offer_numbers_and_refuses_video(self) -> None:
        """§6.1: the offerer's payload numbers (96 for DTMF), a reply direction, video refused with port 0."""
        answer = make_answer(OFFER, line_sdp(6000), ("PCMU", "PCMA"), Origin(5, 1))
        assert answer is not None
        audio, video = answer.media
        self.assertEqual((audio.port, audio.payload_types, audio.direction), (6000, (8, 0, 96), "recvonly"))
        self.assertEqual(audio.fmtp, {96: "0-16"})
        self.assertEqual((video.media, video.port), ("video", 0))
        self.assertIsNone(check_answer(OFFER, answer))

    def test_no_common_codec(self) -> None:
        """Nothing both sides allow: no answer (the trunk answers 488), and the offer is not acceptable."""
        self.assertIsNone(make_answer(OFFER, line_sdp(6000), ("G722",), Origin(5, 1)))
        self.assertFalse(acceptable(OFFER, ("G722",)))
        self.assertTrue(acceptable(OFFER, ("g729",)))

    def test_check_answer(self) -> None:
        """An answer with another number of streams, a refused audio stream or no offered codec is wrong."""
        offer = make_offer(line_sdp(4000), ("PCMU",), Origin(1, 1))
        assert offer is not None
        self.assertIn("media streams", check_answer(offer, OFFER) or "")
        refused = SessionDescription.parse("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n")
        self.assertIn("refused", check_answer(offer, refused) or "")
        other = SessionDescription.parse("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 18\r\n")
        self.assertIn("no codec", check_answer(offer, other) or "")

    def test_answer_direction_checked(self) -> None:
        """§6.1: recvonly or inactive answer sendonly; only inactive answers inactive; anything answers sendrecv."""
        for offered, answered, wrong in [
            ("sendonly", "recvonly", False), ("sendonly", "inactive", False), ("sendonly", None, True),
            ("sendonly", "sendonly", True), ("inactive", "inactive", False), ("inactive", "recvonly", True),
            ("recvonly", "sendonly", False), ("recvonly", "sendrecv", True), (None, "recvonly", False),
        ]:
            offer = make_offer(line_sdp(4000, direction=offered), ("PCMU",), Origin(1, 1))
            assert offer is not None
            problem = check_answer(offer, line_sdp(6000, direction=answered))
            self.assertEqual(problem is not None, wrong, (offered, answered, problem))

    def test_new_offer_keeps_the_previous_m_lines(self) -> None:
        """§8: a new offer after answering audio+video keeps two m-lines, video still refused, audio in its place."""
        answered = make_answer(OFFER, line_sdp(6000), ("PCMU", "PCMA"), Origin(5, 1))
        offer = make_offer(line_sdp(6100, direction="sendonly"), ("PCMU",), Origin(5, 2), previous=answered)
        assert offer is not None
        audio, video = offer.media
        self.assertEqual((audio.port, audio.payload_types, audio.direction), (6100, (0, 101), "sendonly"))
        self.assertEqual((video.media, video.port), ("video", 0))
        first_audio_refused = SessionDescription.parse(
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 0 RTP/AVP 31\r\nm=audio 5 RTP/AVP 0\r\n")
        offer = make_offer(line_sdp(6100), ("PCMU",), Origin(5, 2), previous=first_audio_refused)
        assert offer is not None
        self.assertEqual([(m.media, m.port) for m in offer.media], [("video", 0), ("audio", 6100)])


class Digest(SynchronousTestCase):
    def test_rfc2617_example(self) -> None:
        """RFC 2617 §3.5: Mufasa's MD5 response is 6629fae4..."""
        challenge = parse_challenge(
            'Digest realm="testrealm@host.com", qop="auth,auth-int", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
        )
        assert challenge is not None
        value = authorization(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                              password="Circle Of Life", cnonce="0a4f113b")
        self.assertIn('response="6629fae49393a05397450978507c4ef1"', value)
        self.assertIn("qop=auth, nc=00000001", value)

    def test_rfc7616_sha256_example(self) -> None:
        """RFC 7616 §3.9.1 (the algorithm RFC 8760 brings to SIP): SHA-256 and MD5 responses."""
        expected = {"SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
                    "MD5": "8ca523f5e9506fed4657c9700eebdbec"}
        for algorithm, response in expected.items():
            challenge = parse_challenge(
                f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
                'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
            )
            assert challenge is not None
            self.assertEqual(challenge.algorithm, Algorithm(algorithm))
            value = authorization(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                                  password="Circle of Life", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
            self.assertIn(f'response="{response}"', value)

    def test_challenges_that_cannot_be_answered(self) -> None:
        """Another scheme, an unknown algorithm, a missing nonce or an unknown qop: None."""
        for value in ('Basic realm="x"', 'Digest realm="x", nonce="n", algorithm=SHA-1',
                      'Digest realm="x"', 'Digest realm="x", nonce="n", qop="other"', 'Digest realm="x", nonce'):
            self.assertIsNone(parse_challenge(value), value)
        stale = parse_challenge('Digest realm="x", nonce="n", stale=TRUE', proxy=True)
        assert stale is not None
        self.assertTrue(stale.stale and stale.proxy)
