"""
The SIP message core (mgcpswitch.sip.message, uri, headers): parsing and
writing by RFC 3261 §7 and §20, the status a bad request is answered
with, round trips of generated messages (hypothesis), and a bounded fuzz
with the engine of scripts/fuzz-sip.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.sip import (
    CSeq,
    Malformed,
    Method,
    NameAddress,
    OtherUri,
    Request,
    Response,
    SipUri,
    Via,
    decode,
    encode,
    parse_name_address,
    parse_uri,
    parse_via,
    reply_to_malformed,
    response_to,
    split_commas,
)

ROOT = Path(__file__).resolve().parent.parent


def _fuzzer() -> Any:
    loader = importlib.machinery.SourceFileLoader("fuzz_sip", str(ROOT / "scripts" / "fuzz-sip"))
    spec = importlib.util.spec_from_loader("fuzz_sip", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


FUZZ = _fuzzer()

INVITE = (
    b"INVITE sip:2001@192.0.2.2:5070 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: \"Alice\" <sip:1001@192.0.2.1>;tag=1928\r\n"
    b"To: <sip:2001@192.0.2.2>\r\n"
    b"Call-ID: a84b4c76e66710@pc33\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1001@192.0.2.1>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\r\n"
)


def _with(old: bytes, new: bytes, data: bytes = INVITE) -> bytes:
    assert old in data, old
    return data.replace(old, new)


class Parsing(SynchronousTestCase):
    def test_request(self) -> None:
        """A plain INVITE becomes a Request with typed Via, From, To, CSeq, Contact and its body."""
        request = decode(INVITE)
        assert isinstance(request, Request)
        self.assertEqual(request.method, Method.INVITE)
        self.assertEqual(request.uri, SipUri(host="192.0.2.2", user="2001", port=5070))
        self.assertEqual(request.via, (Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bK776"), ("rport", None))),))
        self.assertEqual(request.from_.display, "Alice")
        self.assertEqual(request.from_.tag, "1928")
        self.assertIsNone(request.to.tag)
        self.assertEqual(request.cseq, CSeq(314159, "INVITE"))
        self.assertEqual(request.max_forwards, 70)
        self.assertEqual(request.content_type, "application/sdp")
        self.assertEqual(request.body, b"v=0\r")

    def test_compact_forms_folding_and_several_values(self) -> None:
        """Compact names read as long ones (§7.3.3), folded lines join, and Via values on one line or several keep their order."""
        data = (
            b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP [2001:db8::1]:5062\r\n"
            b"V: SIP/2.0/UDP h3\r\nf: <sip:x@y>;tag=1\r\nt: sip:a@b\r\ni: c1\r\nCSeq: 1 OPTIONS\r\n"
            b"Subject: a long\r\n   subject\r\nm: <sip:x@h1>, \"Second, Contact\" <sip:x@h2>\r\nl: 0\r\n\r\n"
        )
        request = decode(data)
        assert isinstance(request, Request), request
        self.assertEqual([v.host for v in request.via], ["h1", "2001:db8::1", "h3"])
        self.assertEqual(request.via[1].port, 5062)
        self.assertEqual(request.header("Subject"), "a long subject")
        self.assertEqual([c.display for c in request.contact], [None, "Second, Contact"])
        self.assertEqual(request.call_id, "c1")
        self.assertIn(b"Via: SIP/2.0/UDP [2001:db8::1]:5062\r\n", encode(request))
        self.assertIn(b"Call-ID: c1\r\n", encode(request))

    def test_response(self) -> None:
        """A response: code, reason and the same header fields; a lone LF line end is read too."""
        data = (
            b"SIP/2.0 486 Busy Here\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\n"
            b"To: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 5 INVITE\n\n"
        )
        response = decode(data)
        assert isinstance(response, Response)
        self.assertEqual((response.code, response.reason, response.to.tag), (486, "Busy Here", "2"))

    def test_round_trip_of_the_samples(self) -> None:
        """Every sample of the fuzz corpus decodes to a message that encodes and decodes to itself."""
        for data in FUZZ.CORPUS:
            message = decode(data)
            self.assertIsInstance(message, (Request, Response), data[:60])
            assert isinstance(message, (Request, Response))
            self.assertEqual(decode(encode(message)), message)

    def test_keepalive(self) -> None:
        """A datagram of CRLFs (a keepalive) is dropped, not answered."""
        result = decode(b"\r\n\r\n")
        assert isinstance(result, Malformed)
        self.assertIsNone(result.code)


class BadRequests(SynchronousTestCase):
    """A request that breaks the grammar is answered 400 (505 for a version), with the copied headers."""

    def _bad(self, data: bytes) -> Malformed:
        result = decode(data)
        assert isinstance(result, Malformed), result
        return result

    def test_400s(self) -> None:
        """Each broken header a user agent must read gets a 400 naming it."""
        cases = {
            b"CSeq: 314159 INVITE": b"CSeq: 314159 BYE",
            b"Content-Length: 4": b"Content-Length: 40",
            b"Max-Forwards: 70": b"Max-Forwards: many",
            b"Contact: <sip:1001@192.0.2.1>": b"Contact: <sip:1001@192.0.2.1",
            b"Content-Type: application/sdp": b"Content-Type application/sdp",
            b"Max-Forwards: 70\r\n": b"Max-Forwards: 70\r\nMax-Forwards: 69\r\n",
            b"INVITE sip:2001@192.0.2.2:5070 SIP/2.0": b"INVITE sip:2001@192.0.2.2:99999 SIP/2.0",
        }
        for old, new in cases.items():
            bad = self._bad(_with(old, new))
            self.assertEqual(bad.code, 400, (new, bad))
            reply = reply_to_malformed(bad)
            assert reply is not None
            response = decode(reply)
            assert isinstance(response, Response), reply
            self.assertEqual((response.code, response.call_id, response.cseq.seq), (400, "a84b4c76e66710@pc33", 314159))

    def test_version(self) -> None:
        """A request of another SIP version is answered 505 (§8.2 / §21.5.6)."""
        self.assertEqual(self._bad(_with(b"5070 SIP/2.0", b"5070 SIP/3.0")).code, 505)

    def test_unanswerable(self) -> None:
        """Without a readable Via, or for an ACK, or for a broken response, nothing is sent back."""
        self.assertIsNone(reply_to_malformed(self._bad(_with(b"Via: SIP/2.0/UDP 192.0.2.1:5060;", b"Via: SIP/2.0/UDP ;"))))
        ack = _with(b"CSeq: 314159 INVITE", b"CSeq: 314159 ACK", _with(b"INVITE sip", b"ACK sip"))
        self.assertIsNone(reply_to_malformed(self._bad(_with(b"Max-Forwards: 70", b"Max-Forwards: x", ack))))
        self.assertIsNone(self._bad(b"SIP/2.0 2000 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n").code)

    def test_no_answer_from_broken_copied_lines(self) -> None:
        """
        The lines a 400 copies must make a valid response: a CSeq given
        twice, or an unreadable To, leaves the request unanswered rather
        than answered with a broken response (found by scripts/fuzz-sip).
        """
        twice = self._bad(_with(b"CSeq: 314159 INVITE\r\n", b"CSeq: 314159 INVITE\r\nCSeq: 1 INVITE\r\n"))
        self.assertIsNone(reply_to_malformed(twice))
        broken_to = self._bad(_with(b"To: <sip:2001@192.0.2.2>", b"To: <sip:2001@192.0.2.2"))
        self.assertIsNone(reply_to_malformed(broken_to))

    def test_other_uri_scheme_is_not_malformed(self) -> None:
        """A tel: Request-URI parses (the trunk answers it 416, RFC 3261 §8.2.2.1)."""
        request = decode(_with(b"INVITE sip:2001@192.0.2.2:5070 SIP/2.0", b"INVITE tel:+15551234 SIP/2.0"))
        assert isinstance(request, Request)
        self.assertEqual(request.uri, OtherUri("tel", "+15551234"))


class Values(SynchronousTestCase):
    def test_uri_forms(self) -> None:
        """URIs: user with ';', password, IPv6, params and headers; sips; errors raise ValueError."""
        uri = parse_uri("sip:alice;day=tue:secret@[2001:DB8::1]:5061;Transport=tcp;lr?subject=x&priority=urgent")
        assert isinstance(uri, SipUri)
        self.assertEqual((uri.user, uri.password, uri.host, uri.port), ("alice;day=tue", "secret", "2001:db8::1", 5061))
        self.assertEqual(uri.params, (("transport", "tcp"), ("lr", None)))
        self.assertEqual(parse_uri(str(uri)), uri)
        self.assertEqual(parse_uri("SIPS:b.example").address, ("b.example", 5061))  # type: ignore[union-attr]
        for bad in ("sip:", "sip:a@", "sip:h:0", "sip:h:x", "nothing", "sip:a b@h", "sip:h;=1"):
            self.assertRaises(ValueError, parse_uri, bad)

    def test_name_addresses(self) -> None:
        """Quoted and token display names, addr-spec with header params, escapes."""
        self.assertEqual(parse_name_address('Bob  Smith <sip:b@h>;tag=1').display, "Bob Smith")
        spec = parse_name_address("sip:b@h;tag=9")
        self.assertEqual((spec.uri, spec.tag), (SipUri(host="h", user="b"), "9"))
        quoted = parse_name_address(r'"a \"q\" b" <sip:h>')
        self.assertEqual(quoted.display, 'a "q" b')
        self.assertEqual(parse_name_address(str(quoted)), quoted)
        for bad in ('"open <sip:h>', "<sip:h", "<sip:h>junk", "a@b <sip:h>"):
            self.assertRaises(ValueError, parse_name_address, bad)

    def test_via_and_commas(self) -> None:
        """Via with spaces around '/', and comma splitting that respects quotes and angle brackets."""
        via = parse_via("SIP / 2.0 / udp host.example : 5070 ;branch=z9hG4bKx ;received=192.0.2.9")
        self.assertEqual((via.transport, via.host, via.port, via.branch), ("UDP", "host.example", 5070, "z9hG4bKx"))
        self.assertEqual(split_commas('"a, b" <sip:x>, <sip:y;p=1,2>, c'), ['"a, b" <sip:x>', "<sip:y;p=1,2>", "c"])

    def test_response_to(self) -> None:
        """§8.2.6.2: a response copies Via, From, Call-ID, CSeq; To gets a tag, except on 100."""
        request = decode(INVITE)
        assert isinstance(request, Request)
        ringing = response_to(request, 180, to_tag="t1")
        self.assertEqual((ringing.via, ringing.from_, ringing.cseq, ringing.to.tag), (request.via, request.from_, request.cseq, "t1"))
        self.assertIsNone(response_to(request, 100, to_tag="t1").to.tag)
        self.assertEqual(ringing.reason, "Ringing")


# -- properties ---------------------------------------------------------

_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1, max_size=12)
_host = st.one_of(
    st.from_regex(r"[a-z]([a-z0-9\-]{0,6}[a-z0-9])?(\.[a-z][a-z0-9]{0,5}){0,2}", fullmatch=True),
    st.ip_addresses().map(str),
)
_params = st.lists(st.tuples(_token.map(str.lower), st.one_of(st.none(), _token)), max_size=3).map(tuple)
_paramchar = st.text("abcxyzABC0123456789-_.!~*'()[]/:&+$", min_size=1, max_size=8)
_uri = st.builds(
    SipUri, host=_host, user=st.one_of(st.none(), _paramchar.filter(lambda u: not set(u) & set("[]:"))), port=st.one_of(st.none(), st.integers(1, 65535)),
    params=st.lists(st.tuples(_paramchar.map(str.lower), st.one_of(st.none(), _paramchar)), max_size=3).map(tuple),
)
_display = st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=0x2fff, exclude_characters="\x7f"), max_size=10))
_address = st.builds(NameAddress, uri=_uri, display=_display, params=_params)
_via = st.builds(Via, transport=st.sampled_from(["UDP", "TCP"]), host=_host,
                 port=st.one_of(st.none(), st.integers(1, 65535)), params=_params)
_method = st.one_of(st.sampled_from(list(Method)), _token.map(str.upper))


@st.composite
def messages(draw: Any) -> Request | Response:
    common: dict[str, Any] = dict(
        via=tuple(draw(st.lists(_via, min_size=1, max_size=3))),
        from_=draw(_address), to=draw(_address),
        call_id=draw(st.from_regex(r"[a-zA-Z0-9]{1,12}(@[a-z0-9.]{1,10})?", fullmatch=True)),
        max_forwards=draw(st.one_of(st.none(), st.integers(0, 255))),
        contact=tuple(draw(st.lists(_address, max_size=2))),
        route=tuple(draw(st.lists(_address, max_size=2))),
        headers=tuple(draw(st.lists(st.tuples(st.sampled_from(["Subject", "X-Thing", "Allow", "Reason"]),
                                              st.text("abc ,;=xyz", max_size=10).map(str.strip)), max_size=3))),
        body=draw(st.binary(max_size=40)),
    )
    method = draw(_method)
    seq = draw(st.integers(0, 2**31 - 1))
    if draw(st.booleans()):
        return Request(method=method, uri=draw(_uri), cseq=CSeq(seq, method), **common)
    return Response(code=draw(st.integers(100, 699)), reason=draw(st.text("OK Busy", max_size=8)).strip(),
                    cseq=CSeq(seq, method), **common)


class Properties(SynchronousTestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages())
    def test_round_trip(self, message: Request | Response) -> None:
        """Whatever valid message is written, reading it back gives the same value."""
        self.assertEqual(decode(encode(message)), message)

    @settings(max_examples=400, deadline=None)
    @given(st.integers(0, 2**32 - 1), st.integers(0, len(FUZZ.CORPUS) - 1))
    def test_fuzz(self, seed: int, index: int) -> None:
        """Mutated real messages never make decode raise, and what it accepts or answers is well formed."""
        data = FUZZ.mutate(FUZZ.CORPUS[index], random.Random(seed))
        kind, problems = FUZZ.check(data)
        self.assertEqual(problems, [], (kind, data))
