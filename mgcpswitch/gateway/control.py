# -*- test-case-name: tests.test_gateway_control -*-
"""
The driving API over HTTP: C{twistd mgcpgateway --control DESCRIPTION}
lets another process (a test, a script, an operator's curl) be the
subscribers of the simulated lines, and read what each line hears.

    GET  /lines                      every line
    GET  /lines/N                    line N: hook, tones, connections and their RTP counts
    POST /lines/N/off-hook           lift the handset
    POST /lines/N/on-hook            hang up
    POST /lines/N/flash              hook-flash
    POST /lines/N/dial {"digits": "2001", "gap": 0.1}

An action answers once the NTFY it caused has its response from the call
agent (L{Line}'s Deferreds), with the line as it is then: 200 and the
line's JSON.  Mistakes get a JSON C{{"error", "reason"}}: 404 for a line
or route that does not exist, 405 for another method, 400 for a body that
is not a JSON object or digits a phone does not have, 409 for an action
the line cannot take now (a flash on hook), 504 when the call agent never
answered.  It has no authentication: listen on a loopback address only
(the default C{tcp:0:interface=127.0.0.1} description is a free port there).

A line's JSON names the line's RTP source id (C{source}) and, per
connection, its mode, its packet counts and C{heard}: packets that reached
the handset through it, by source id (L{mixing.line_source}: other lines'
ids are computed from their names, so a test tells whom a line hears).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ..errors import TransactionTimeout
from .line import Line
from .mixing import line_source

__all__ = ["ControlResource", "control_site", "line_json"]


def line_json(line: Line) -> dict[str, Any]:
    """What the API shows of a line."""
    tone = line.tone
    return {
        "name": line.name,
        "number": line.number,
        "hook": line.hook,
        "ringing": line.ringing,
        "tone": str(tone) if tone is not None else None,
        "signals": sorted(str(s) for s in line.signals),
        "in_service": line.in_service,
        "source": line_source(line.name),
        "connections": [
            {
                "id": conn.connection_id,
                "call_id": conn.call_id,
                "mode": conn.mode,
                "rtp_port": conn.rtp_port,
                "packets_sent": conn.packets_sent,
                "packets_received": conn.packets_received,
                "forwarded": conn.forwarded,
                "heard": {str(source): packets for source, packets in conn.heard},
            }
            for conn in line.connections
        ],
    }


class _Problem(Exception):
    def __init__(self, code: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.error, self.reason = code, error, reason


_ACTIONS = ("off-hook", "on-hook", "flash", "dial")


class ControlResource(Resource):
    """C{/lines...} of one gateway's lines (a leaf: it reads the rest of the path itself)."""

    isLeaf = True
    log = Logger()

    def __init__(self, lines: tuple[Line, ...]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self._lines = lines

    def render(self, request: Any) -> Any:
        try:
            result = self._route(request)
        except _Problem as problem:
            return self._error(request, problem)
        if not isinstance(result, Deferred):
            return self._json(request, 200, result)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))  # the client left first
        result.addCallbacks(
            lambda value: self._finish(request, gone, 200, value),
            lambda failure: self._failed(request, gone, failure),
        )
        return NOT_DONE_YET

    def _route(self, request: Any) -> Any:
        path = [p.decode("utf-8", "replace") for p in request.postpath if p]
        method = request.method
        if not path or path[0] != "lines" or len(path) > 3:
            raise _Problem(404, "not-found", "no such route: /" + "/".join(path))
        if len(path) == 1:
            self._allow(method, b"GET")
            return {"lines": [line_json(line) for line in self._lines]}
        line = self._line(path[1])
        if len(path) == 2:
            self._allow(method, b"GET")
            return line_json(line)
        action = path[2]
        if action not in _ACTIONS:
            raise _Problem(404, "not-found", f"no action {action!r}: one of {', '.join(_ACTIONS)}")
        self._allow(method, b"POST")
        if action in ("flash", "dial") and line.hook == "on":
            raise _Problem(409, "conflict", f"{line.name} is on hook: no {action}")
        if action == "off-hook":
            done = line.off_hook()
        elif action == "on-hook":
            done = line.on_hook()
        elif action == "flash":
            done = line.flash()
        else:
            body = self._body(request)
            digits, gap = body.get("digits"), body.get("gap", 0.1)
            if not isinstance(digits, str):
                raise _Problem(400, "bad-request", 'dial needs {"digits": "..."}')
            if not isinstance(gap, (int, float)) or isinstance(gap, bool) or not 0 <= gap <= 10:
                raise _Problem(400, "bad-request", "gap must be a number of seconds in [0, 10]")
            try:
                done = line.dial(digits, gap=float(gap))
            except ValueError as e:  # digits a phone does not have
                raise _Problem(400, "bad-request", str(e)) from None
        return done.addCallback(lambda _: line_json(line))

    def _line(self, text: str) -> Line:
        if not text.isdigit() or not 1 <= int(text) <= len(self._lines):
            raise _Problem(404, "not-found", f"no line {text!r}: lines are 1..{len(self._lines)}")
        return self._lines[int(text) - 1]

    @staticmethod
    def _allow(method: bytes, allowed: bytes) -> None:
        if method != allowed:
            raise _Problem(405, "method-not-allowed", f"use {allowed.decode()} here")

    @staticmethod
    def _body(request: Any) -> dict[str, Any]:
        data = request.content.read() if request.content is not None else b""
        try:
            body = json.loads(data or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise _Problem(400, "bad-request", "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise _Problem(400, "bad-request", "the body must be a JSON object")
        return body

    def _failed(self, request: Any, gone: list[bool], failure: Failure) -> None:
        if failure.check(TransactionTimeout):
            self._finish(request, gone, 504, {"error": "timeout", "reason": "the call agent did not answer"})
            return
        self.log.failure("gateway control action failed", failure)
        self._finish(request, gone, 500, {"error": "internal", "reason": failure.getErrorMessage()})

    def _finish(self, request: Any, gone: list[bool], code: int, body: Any) -> None:
        if gone:
            return
        request.write(self._json(request, code, body))
        request.finish()

    def _error(self, request: Any, problem: _Problem) -> bytes:
        return self._json(request, problem.code, {"error": problem.error, "reason": problem.reason})

    @staticmethod
    def _json(request: Any, code: int, body: Any) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode("utf-8") + b"\n"


def control_site(lines: tuple[Line, ...]) -> Site:
    """The HTTP site of the driving API of C{lines}."""
    site = Site(ControlResource(lines))  # type: ignore[no-untyped-call]  # Twisted's Site is unannotated upstream
    site.displayTracebacks = False
    site.noisy = False
    return site
