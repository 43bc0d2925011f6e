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


def flow_call(started: float, call_id: str = "c9") -> Any:
    """
    A call between aaln/3 of gateway 1 and aaln/1 of gateway 2 whose
    ladder has what a flow graph must show: a retransmitted CRCX, a
    notification from the called side, and a response piggybacked with
    the next command in one datagram.  Addresses are recorded on every
    entry but the last two, which leave them to the admin (the gateway's
    view, the agent's address).
    """
    from mgcpswitch.agent.model import CallState, CallView, LadderEntry

    from .fake_control import GW1, GW2

    a, b = f"aaln/3@{GW1}", f"aaln/1@{GW2}"
    agent, gw1, gw2 = "127.0.0.1:2727", "127.0.0.1:2427", "127.0.0.2:2427"
    sdp = "\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    rows = [
        (0.000, "out", GW1, gw1, f"CRCX 2001 {a} MGCP 1.0\r\nC: {call_id}\r\nM: recvonly\r\n", False, False),
        (0.200, "out", GW1, gw1, f"CRCX 2001 {a} MGCP 1.0\r\nC: {call_id}\r\nM: recvonly\r\n", True, False),
        (0.250, "in", GW1, gw1, "200 2001 OK\r\nI: A1\r\n" + sdp, False, False),
        (0.300, "out", GW2, gw2, f"CRCX 2002 {b} MGCP 1.0\r\nC: {call_id}\r\nM: sendrecv\r\n" + sdp, False, False),
        (0.310, "in", GW2, gw2, "200 2002 OK\r\nI: B1\r\n" + sdp, False, False),
        (0.400, "in", GW2, gw2, f"NTFY 77 {b} MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n", False, False),
        (0.410, "out", GW2, gw2, "200 77 OK\r\n", False, True),
        (0.410, "out", GW2, gw2, f"RQNT 2003 {b} MGCP 1.0\r\nX: 2\r\nR: L/hu\r\n", False, True),
        (0.450, "in", GW2, None, "200 2003 OK\r\n", False, False),
        (0.500, "out", GW1, None, f"MDCX 2004 {a} MGCP 1.0\r\nC: {call_id}\r\nI: A1\r\nM: sendrecv\r\n", False, False),
    ]
    ladder = tuple(
        LadderEntry(started + dt, direction, gateway, text.split("\r\n", 1)[0], text,
                    local=agent if remote else None, remote=remote, retransmission=again, piggybacked=piggy)
        for dt, direction, gateway, remote, text, again, piggy in rows
    )
    return CallView(call_id, CallState.CONNECTED, a, b, "2001", started, started + 0.4, None, None, "PCMU",
                    ladder, len(ladder))


def three_way(started: float) -> Any:
    """
    A call (c7) of gateway 1's lines whose parties are in each state the
    faces show: aaln/1 in a three-way call, aaln/3 on hold, aaln/4 waiting;
    it was forwarded from aaln/2, transferred by aaln/1, and related to
    c5 and c6.
    """
    from mgcpswitch.agent.model import CallState, CallView, LegView

    from .fake_control import GW1

    A1, A2, A3, A4 = (f"aaln/{n}@{GW1}" for n in (1, 2, 3, 4))
    legs = (
        LegView(A1, "1001", True, "open", "C1", "confrnce", held=False, conference=True),
        LegView(A3, "1003", False, "open", "C3", "sendrecv", held=True),
        LegView(A4, "1004", False, "new", None, None, waiting=True),
    )
    return CallView("c7", CallState.CONNECTED, A1, A3, "1002", started, started + 2, None, None, "PCMU",
                    legs=legs, forwarded_from=A2, transferred_by=A1, related=("c5", "c6"))


#: What the flow of L{flow_call} is, message by message: (label, source, target, retransmission, piggybacked).
FLOW = [
    ("CRCX 2001", "agent", "aaln/3@gw1.example.net", False, False),
    ("CRCX 2001", "agent", "aaln/3@gw1.example.net", True, False),
    ("200 2001 OK", "aaln/3@gw1.example.net", "agent", False, False),
    ("CRCX 2002", "agent", "aaln/1@gw2.example.net", False, False),
    ("200 2002 OK", "aaln/1@gw2.example.net", "agent", False, False),
    ("NTFY 77", "aaln/1@gw2.example.net", "agent", False, False),
    ("200 77 OK", "agent", "aaln/1@gw2.example.net", False, True),
    ("RQNT 2003", "agent", "aaln/1@gw2.example.net", False, True),
    ("200 2003 OK", "aaln/1@gw2.example.net", "agent", False, False),
    ("MDCX 2004", "agent", "aaln/3@gw1.example.net", False, False),
]


TSHARK = "/usr/bin/tshark"
TSHARK_FIELDS = ("frame.protocols", "frame.time_epoch", "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst",
                 "udp.dstport", "mgcp.req.verb", "mgcp.rsp.rspcode", "mgcp.transid", "mgcp.req.endpoint",
                 "ip.checksum.status", "udp.checksum.status")
CHECKSUM_GOOD = "1"  # tshark's checksum status: 0 bad, 1 good, 2 unverified


def require_tshark() -> None:
    """Skip loudly without tshark; on CI (C{CI} set) fail: scripts/run-tests installs it."""
    if os.access(TSHARK, os.X_OK):
        return
    if os.environ.get("CI"):
        raise AssertionError(f"tshark not installed: {TSHARK} is missing on CI; scripts/run-tests installs it as root")
    raise SkipTest(f"TSHARK TEST SKIPPED: {TSHARK} is missing, so pcaps are NOT checked against Wireshark's "
                   "MGCP dissector; install the Debian package tshark (scripts/run-tests does so as root)")


def tshark_frames(path: str, agent_port: int = 2727, gateway_port: int = 2427) -> list[dict[str, list[str]]]:
    """
    tshark's reading of a pcap, frame by frame: each field of L{TSHARK_FIELDS}
    as its list of values (a piggybacked frame has several MGCP messages).
    The MGCP dissector is told which ports are the agent's and the gateway's;
    IP and UDP checksums are verified (L{CHECKSUM_GOOD}).
    """
    import subprocess

    command = [TSHARK, "-n", "-r", path, "-o", f"mgcp.udp.callagent_port:{agent_port}",
               "-o", f"mgcp.udp.gateway_port:{gateway_port}", "-o", "ip.check_checksum:TRUE",
               "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=\t",
               "-E", "aggregator=\x1f", "-E", "occurrence=a"]
    for name in TSHARK_FIELDS:
        command += ["-e", name]
    result = subprocess.run(command, capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=True)
    frames = []
    for line in result.stdout.decode().splitlines():
        values = line.split("\t")
        frames.append({name: [v for v in value.split("\x1f") if v] for name, value in zip(TSHARK_FIELDS, values)})
    return frames
