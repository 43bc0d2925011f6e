"""What the web admin tests share."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import tempfile
from typing import Any

from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from mgcpswitch.web import WebSettings, make_site
from mgcpswitch.web.auth import hash_password
from mgcpswitch.web.listen import listen_endpoint

from .fake_control import FakeCallControl
from .loopback import TrackingFactory


class Answer:
    """A finished response: status, headers and body."""

    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return None if not values else ", ".join(values)

    def json(self) -> Any:
        """The JSON body; a response without the JSON content type fails the test."""
        assert self.header("content-type") == "application/json; charset=utf-8", (self.code, self.body)
        return json.loads(self.body)


class WebCase(SynchronousTestCase):
    """The admin of a L{FakeCallControl} on a L{Clock}, through L{StubTreq}."""

    settings = WebSettings()

    def setUp(self) -> None:
        self.fake = FakeCallControl()
        self.clock = self.fake.clock
        self.site = make_site(self.fake, self.settings, self.clock)
        self.stub = StubTreq(self.site.resource)

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        """Send a request through the stub and return the whole answer."""
        done: list[Any] = []
        d = self.stub.request(method, "http://admin.test" + path, **kwargs)

        def read(response: Any) -> Deferred:
            return response.content().addCallback(lambda body: Answer(response.code, response.headers, body))

        d.addCallback(read).addBoth(done.append)
        self.stub.flush()
        self.assertEqual(len(done), 1, f"no answer to {method} {path}")
        if not isinstance(done[0], Answer):
            done[0].raiseException()
        return done[0]

    def assertError(self, answer: Answer, code: int, error: str, reason_part: str = "") -> dict[str, Any]:
        body = answer.json()
        self.assertEqual((answer.code, body["error"]), (code, error), body)
        self.assertIn(reason_part, body["reason"])
        return body  # type: ignore[no-any-return]

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return self.request("POST", path, json=body if body is not None else {}, **kwargs)


#: What a 401 from the admin offers, in order.
CHALLENGES = ['Basic realm="mgcpswitch"', 'Bearer realm="mgcpswitch"']
TOKEN = "s3cret-token"


def basic(user: str, password: str) -> dict[str, str]:
    """The headers of an HTTP Basic request."""
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class AuthSetup:
    """
    Mixed in before a web test case: its admin requires credentials (the
    users file below, or the bearer token L{TOKEN}).
    """

    def setUp(self) -> None:
        self.settings = WebSettings(users_file=users_file(self), tokens=(TOKEN,))
        super().setUp()  # type: ignore[misc]

    def assertRefused(self, answer: Answer, reason: str) -> None:  # noqa: N802
        self.assertError(answer, 401, "unauthorized", reason)  # type: ignore[attr-defined]
        self.assertEqual(answer.headers.getRawHeaders("www-authenticate"), CHALLENGES)  # type: ignore[attr-defined]


def users_file(testcase: Any) -> str:
    """
    A users file in a temporary directory (removed after the test) with
    one admin, C{alice} / C{wonderland}, hashed cheaply for the tests.
    """
    directory = tempfile.mkdtemp(prefix="mgcpswitch-users-")
    testcase.addCleanup(shutil.rmtree, directory, True)
    path = os.path.join(directory, "users")
    with open(path, "w") as f:
        f.write("# the admins\n\nalice:" + hash_password("wonderland", iterations=1000) + "\n")
    return path


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (containers often have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def require_ipv6() -> None:
    """Skip, saying so loudly, on a machine without ::1."""
    if not has_ipv6_loopback():
        raise SkipTest("IPV6 TEST SKIPPED: this machine cannot bind ::1 (no IPv6 loopback)")


async def serve_on(testcase: Any, site: Any, description: str) -> Any:
    """
    Serve C{site} on a strports description (as the admin would listen)
    until the test ends; return the listening port.
    """
    factory = TrackingFactory(site)
    port = await listen_endpoint(reactor, description).listen(factory)

    async def stop() -> None:
        await port.stopListening()
        factory.abort_all()
        await factory.all_closed().addTimeout(10, reactor)

    testcase.addCleanup(stop)
    return port
