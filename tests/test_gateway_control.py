"""
The gateway's driving API over HTTP (L{mgcpswitch.gateway.control}, C{twistd
mgcpgateway --control}): on the in-memory switch, each route acts on the
simulated phone and answers once the call agent answered the NTFY; each
mistake gets its status and a JSON reason.  The real process is driven
through it in tests/test_media_processes.py.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from mgcpswitch.gateway.control import ControlResource
from mgcpswitch.gateway.mixing import line_source
from mgcpswitch.gwtap import Options, makeService

from .support.switch import Switch


class Control(SynchronousTestCase):
    def setUp(self) -> None:
        self.s = Switch(lines=2, gateway_config={"media": True})
        self.addCleanup(self.s.stop)
        self.gw1 = ControlResource(self.s.gw1.lines)
        self.gw2 = ControlResource(self.s.gw2.lines)

    def request(self, resource: ControlResource, method: str, path: str, body: Any = None,
                run: float = 1.0) -> tuple[int, Any]:
        """Render C{method path}; run the switch C{run} seconds if the answer is deferred."""
        request = DummyRequest([p.encode() for p in path.strip("/").split("/")])
        request.method = method.encode()
        request.content = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body or {}).encode())
        request.render(resource)
        if not request.finished:
            self.s.run(run)
        self.assertEqual(request.finished, 1, f"{method} {path} unanswered")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"application/json"])
        return request.responseCode, json.loads(b"".join(request.written))

    def test_a_call_driven_over_http(self) -> None:
        """
        Lift 1001 (200 once the NTFY is answered; then dial tone), dial 2001 (its
        phone rings), lift 2001: both lines show a sendrecv connection whose
        handset hears the other line; hang up both: no connection left.
        """
        code, line = self.request(self.gw1, "POST", "lines/1/off-hook")
        self.assertEqual((code, line["hook"]), (200, "off"))
        self.assertEqual(self.request(self.gw1, "GET", "lines/1")[1]["tone"], "L/dl")  # the RQNT after the answer
        code, line = self.request(self.gw1, "POST", "lines/1/dial", {"digits": "2001", "gap": 0.05})
        self.assertEqual(code, 200)
        self.s.run(0.5)
        code, callee = self.request(self.gw2, "GET", "lines/1")
        self.assertEqual((code, callee["ringing"], callee["name"]), (200, True, "aaln/1@rgw2"))
        self.request(self.gw2, "POST", "lines/1/off-hook")
        self.s.run(1.0)
        _, caller = self.request(self.gw1, "GET", "lines/1")
        _, callee = self.request(self.gw2, "GET", "lines/1")
        [conn_a], [conn_b] = caller["connections"], callee["connections"]
        self.assertEqual((conn_a["mode"], conn_b["mode"]), ("sendrecv", "sendrecv"))
        self.assertEqual(caller["source"], line_source("aaln/1@rgw1"))
        self.assertEqual(list(conn_a["heard"]), [str(callee["source"])])
        self.assertEqual(list(conn_b["heard"]), [str(caller["source"])])
        self.assertGreater(conn_b["heard"][str(caller["source"])], 40)
        self.assertGreater(conn_a["packets_sent"], 40)
        for resource in (self.gw1, self.gw2):
            code, line = self.request(resource, "POST", "lines/1/on-hook")
            self.assertEqual(code, 200)
        self.s.run(1.0)
        code, listing = self.request(self.gw2, "GET", "lines")
        self.assertEqual((code, [line["connections"] for line in listing["lines"]]), (200, [[], []]))
        self.assertTrue(self.s.idle())

    def test_flash(self) -> None:
        """A hook-flash during a call reaches the call agent (the line gets recall dial tone)."""
        self.request(self.gw1, "POST", "lines/1/off-hook")
        self.request(self.gw1, "POST", "lines/1/dial", {"digits": "2001", "gap": 0.05})
        self.request(self.gw2, "POST", "lines/1/off-hook")
        code, line = self.request(self.gw1, "POST", "lines/1/flash")
        self.s.run(0.5)
        _, line = self.request(self.gw1, "GET", "lines/1")
        self.assertEqual((code, line["tone"]), (200, "L/sl"))

    def test_mistakes(self) -> None:
        """Each mistake: its status and a JSON reason naming it."""
        cases = [
            ("GET", "lines/3", None, 404, "no line '3'"),
            ("GET", "lines/x", None, 404, "no line 'x'"),
            ("GET", "phones", None, 404, "no such route"),
            ("POST", "lines/1/jump", None, 404, "no action 'jump'"),
            ("GET", "lines/1/off-hook", None, 405, "use POST"),
            ("POST", "lines", None, 405, "use GET"),
            ("POST", "lines/1/flash", None, 409, "on hook: no flash"),
            ("POST", "lines/1/dial", {"digits": "1"}, 409, "on hook: no dial"),
        ]
        for method, path, body, status, reason in cases:
            with self.subTest(method=method, path=path):
                code, answer = self.request(self.gw1, method, path, body, run=0)
                self.assertEqual(code, status, answer)
                self.assertIn(reason, answer["reason"])
        self.request(self.gw1, "POST", "lines/1/off-hook")
        for body, reason in [
            ({"digits": "12x"}, "cannot dial '12X'"),
            ({}, "dial needs"),
            ({"digits": "1", "gap": "soon"}, "gap must be"),
            (b"[1]", "JSON object"),
            (b"{", "JSON object"),
        ]:
            with self.subTest(body=body):
                code, answer = self.request(self.gw1, "POST", "lines/1/dial", body, run=0)
                self.assertEqual((code, answer["error"]), (400, "bad-request"))
                self.assertIn(reason, answer["reason"])

    def test_call_agent_never_answers(self) -> None:
        """The call agent is gone: the off-hook's NTFY times out and the action answers 504."""
        self.s.service.stopService()
        code, answer = self.request(self.gw1, "POST", "lines/2/off-hook", run=120.0)
        self.assertEqual((code, answer["error"]), (504, "timeout"))


class ControlOption(SynchronousTestCase):
    def test_control_option(self) -> None:
        """
        --control adds an HTTP service named control (none without it); a
        bad description is a usage error naming it.
        """
        options = Options()
        options.parseOptions(["--control", "tcp:0:interface=127.0.0.1", "--media"])
        service = makeService(options)
        self.assertEqual(service.getServiceNamed("control").endpoint._interface, "127.0.0.1")
        plain = Options()
        plain.parseOptions([])
        self.assertEqual([s.name for s in makeService(plain)], ["mgcpgateway"])
        with self.assertRaises(UsageError) as caught:
            Options().parseOptions(["--control", "nonsense:1"])
        self.assertIn("--control: not an endpoint description: 'nonsense:1'", str(caught.exception))
