"""
Request bodies are refused on their headers, before being read (issue 16:
a POST announcing C{Content-Length: 10000000000} with no credentials held a
300 MB temporary file while the body streamed, before its 401).  The
admin's own HTTP channel is driven byte by byte over a L{StringTransport},
as a client on the network would drive it.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.web import WebSettings, make_site
from mgcpswitch.web.api import MAX_BODY
from mgcpswitch.web.throttle import SOURCE_BURST

from .support.fake_control import GW1, GW2, FakeCallControl
from .support.web import CHALLENGES, TOKEN, basic, users_file

A3, A4 = f"aaln/3@{GW1}", f"aaln/4@{GW1}"
HUGE = 10_000_000_000


class Client:
    """One TCP connection to the admin's site."""

    def __init__(self, site: Any) -> None:
        peer = IPv4Address("TCP", "192.0.2.10", 40000)
        self.requests: list[Any] = []
        made = site.requestFactory

        def record(*args: Any) -> Any:
            request = made(*args)
            self.requests.append(request)
            return request

        self.protocol = site.buildProtocol(peer)
        self.protocol.requestFactory = record
        self.transport = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def head(self, method: bytes, path: bytes, headers: dict[str, str], length: int | None) -> None:
        """The request line and headers; Content-Length C{length} or, with None, chunked."""
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: admin.test", b"Content-Type: application/json"]
        lines += [f"{k}: {v}".encode() for k, v in headers.items()]
        lines.append(b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length)
        self.send(b"\r\n".join(lines) + b"\r\n\r\n")

    def answer(self) -> tuple[int, dict[str, list[str]], Any]:
        """The status, headers and JSON body written so far (one response)."""
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            name, _, value = line.partition(": ")
            headers.setdefault(name.lower(), []).append(value)
        return int(status.split()[1]), headers, json.loads(body) if body else None

    def stored(self) -> Any:
        """What the request being received keeps of its body."""
        return self.requests[-1].content if self.requests else None


class Case(SynchronousTestCase):
    settings = WebSettings()

    def setUp(self) -> None:
        self.fake = FakeCallControl()
        self.clock = self.fake.clock
        self.site = make_site(self.fake, self.settings, self.clock)

    def client(self) -> Client:
        return Client(self.site)

    def assertRefusedEarly(  # noqa: N802
        self, client: Client, code: int, reason: str, more: bytes = b"x" * 1_000_000
    ) -> dict[str, list[str]]:
        """Answered at once, connection closing, nothing of the body kept (also of C{more} arriving after)."""
        status, headers, body = client.answer()
        self.assertEqual(status, code, body)
        self.assertIn(reason, body["reason"])
        self.assertEqual(headers["connection"], ["close"])
        self.assertEqual(headers["content-type"], ["application/json; charset=utf-8"])
        self.assertTrue(client.transport.disconnecting)
        client.send(more)
        self.assertIsInstance(client.stored(), BytesIO)
        self.assertEqual(client.stored().getvalue(), b"")
        self.assertEqual(client.transport.value().count(b"HTTP/1.1 "), 1)
        self.assertEqual(self.fake.actions, [])
        return headers


class WithAuthentication(Case):
    def setUp(self) -> None:
        self.settings = WebSettings(users_file=users_file(self), tokens=(TOKEN,))
        super().setUp()

    def test_no_credentials_huge_body(self) -> None:
        """10 GB announced with no credentials: 401 with the challenges before one byte of body is read."""
        client = self.client()
        client.head(b"POST", b"/api/calls", {}, HUGE)
        headers = self.assertRefusedEarly(client, 401, "authentication required")
        self.assertEqual(headers["www-authenticate"], CHALLENGES)

    def test_expect_continue_refused(self) -> None:
        """A client waiting for 100 Continue gets the 401 instead, and no 100."""
        client = self.client()
        client.head(b"POST", b"/api/calls", {"Expect": "100-continue"}, HUGE)
        self.assertNotIn(b"100 Continue", client.transport.value())
        self.assertRefusedEarly(client, 401, "authentication required")

    def test_wrong_token(self) -> None:
        """A wrong bearer token is refused on the headers (checking it costs nothing)."""
        client = self.client()
        client.head(b"POST", b"/api/calls", {"Authorization": "Bearer wrong"}, 100)
        self.assertRefusedEarly(client, 401, "bad credentials")

    def test_malformed_and_unknown_scheme(self) -> None:
        """Malformed Basic and unknown schemes are refused on the headers."""
        for authorization, reason in (("Basic !!!", "malformed"), ("Digest x=1", "unsupported authorization")):
            client = self.client()
            client.head(b"POST", b"/api/calls", {"Authorization": authorization}, HUGE)
            self.assertRefusedEarly(client, 401, reason)

    def test_authenticated_but_too_large(self) -> None:
        """A good token with more than MAX_BODY announced: 413 before the body."""
        client = self.client()
        client.head(b"POST", b"/api/calls", {"Authorization": f"Bearer {TOKEN}"}, MAX_BODY + 1)
        self.assertRefusedEarly(client, 413, f"larger than {MAX_BODY} bytes")

    def test_chunked_too_large(self) -> None:
        """A chunked body is cut off at MAX_BODY: 413 as soon as it is passed."""
        client = self.client()
        client.head(b"POST", b"/api/calls", {"Authorization": f"Bearer {TOKEN}"}, None)
        chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
        for _ in range(MAX_BODY // 16384):
            client.send(chunk)
        self.assertEqual(client.transport.value(), b"")
        self.assertEqual(len(client.stored().getvalue()), MAX_BODY)
        client.send(chunk)
        self.assertRefusedEarly(client, 413, "larger than", more=chunk * 64)

    def test_accepted_bodies(self) -> None:
        """A good token or password with a small body is served as usual (201), the body kept in memory."""
        cases = [(f"Bearer {TOKEN}", A3, A4), (basic("alice", "wonderland")["authorization"], A4, f"aaln/1@{GW2}")]
        for authorization, a, b in cases:
            body = json.dumps({"from": a, "to": b}).encode()
            client = self.client()
            client.head(b"POST", b"/api/calls", {"Authorization": authorization, "Expect": "100-continue"}, len(body))
            self.assertEqual(client.transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
            client.transport.clear()
            client.send(body)
            status, _, answer = client.answer()
            self.assertEqual((status, answer["from"], answer["to"]), (201, a, b), answer)
            self.assertFalse(client.transport.disconnecting)
        self.assertEqual([action[0] for action in self.fake.actions], ["originate", "originate"])

    def test_bodyless_refusal_keeps_the_connection(self) -> None:
        """A GET without credentials is answered by the resource (401), on a connection that stays open."""
        client = self.client()
        client.send(b"GET /api/calls HTTP/1.1\r\nHost: admin.test\r\n\r\n")
        status, headers, body = client.answer()
        self.assertEqual((status, body["reason"]), (401, "authentication required"))
        self.assertNotIn("connection", headers)
        self.assertFalse(client.transport.disconnecting)

    def test_throttled_guess_refused_before_the_body(self) -> None:
        """Once a source is out of password guesses, its next POST is a 429 on the headers."""
        for _ in range(SOURCE_BURST):
            client = self.client()
            client.send(b"GET /api/calls HTTP/1.1\r\nHost: admin.test\r\n"
                        b"Authorization: " + basic("alice", "guess")["authorization"].encode() + b"\r\n\r\n")
            self.assertEqual(client.answer()[0], 401)
        client = self.client()
        client.head(b"POST", b"/api/calls", basic("alice", "guess"), HUGE)
        headers = self.assertRefusedEarly(client, 429, "too many failed logins")
        self.assertEqual(headers["retry-after"], ["5"])


class WithoutAuthentication(Case):
    def test_too_large(self) -> None:
        """With no authentication configured, an oversize body is still refused before it is read."""
        client = self.client()
        client.head(b"POST", b"/api/calls", {}, HUGE)
        self.assertRefusedEarly(client, 413, f"larger than {MAX_BODY} bytes")

    def test_small_body(self) -> None:
        """A body within the limit is served."""
        client = self.client()
        body = json.dumps({"from": A3, "to": A4}).encode()
        client.head(b"POST", b"/api/calls", {}, len(body))
        client.send(body)
        self.assertEqual(client.answer()[0], 201)
