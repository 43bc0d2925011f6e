"""
The web admin's JSON API, page, event stream and metrics, driven with
L{treq.testing.StubTreq} against a L{FakeCallControl} on a L{Clock}:
every route, every error path, authentication required and refused.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import treq
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import CallStarted, EndpointStateChanged, GatewayStateChanged
from mgcpswitch.errors import CallControlError, TransactionFailed, TransactionTimeout
from mgcpswitch.mgcp import Command, Response
from mgcpswitch.web import WebSettings, make_site
from mgcpswitch.web.api import EventsResource, EventStream
from mgcpswitch.web.auth import PasswordFileError

from .support.fake_control import GW1, GW2, FakeCallControl
from .support.web import TOKEN, AuthSetup, WebCase, basic

A1, A2, A3, A4 = (f"aaln/{n}@{GW1}" for n in (1, 2, 3, 4))


class Building(SynchronousTestCase):
    def test_wiring_checked(self) -> None:
        """make_site refuses what is not an ICallControl, and a bad users file, at once."""
        clock = FakeCallControl().clock
        self.assertRaises(TypeError, make_site, object(), WebSettings(), clock)
        with tempfile.NamedTemporaryFile("w", suffix=".users") as users:
            users.write("alice:plaintext\n")
            users.flush()
            with self.assertRaises(PasswordFileError) as caught:
                make_site(FakeCallControl(), WebSettings(users_file=users.name), clock)
        self.assertIn("line 1", str(caught.exception))

    def test_settings(self) -> None:
        """Loopback by default; authentication is required once users or tokens are set."""
        self.assertEqual(WebSettings().listen, "tcp:8080:interface=127.0.0.1")
        self.assertFalse(WebSettings().auth_required)
        self.assertTrue(WebSettings(users_file="/etc/users").auth_required)
        self.assertTrue(WebSettings(tokens=("t",)).auth_required)


class Routes(WebCase):
    def test_index(self) -> None:
        """GET /api lists every route."""
        answer = self.request("GET", "/api")
        paths = {(r["method"], r["path"]) for r in answer.json()["routes"]}
        self.assertIn(("DELETE", "/api/calls/ID"), paths)
        self.assertIn(("GET", "/api/events"), paths)
        self.assertEqual(self.request("GET", "/api/").json(), answer.json())

    def test_gateways(self) -> None:
        """GET /api/gateways lists the views with the server's clock."""
        body = self.request("GET", "/api/gateways").json()
        self.assertEqual(body["now"], self.clock.seconds())
        self.assertEqual([g["name"] for g in body["gateways"]], [GW1, GW2])
        self.assertEqual(body["gateways"][0]["state"], "up")
        self.assertEqual(body["gateways"][0]["last_rsip"], "restart")
        self.assertEqual(body["gateways"][0]["counters"], {"commands": 21, "responses": 19})

    def test_gateway(self) -> None:
        """GET /api/gateways/NAME is one view; an unknown name is 404."""
        self.assertEqual(self.request("GET", f"/api/gateways/{GW2}").json()["state"], "down")
        self.assertError(self.request("GET", "/api/gateways/nope.example"), 404, "not-found", "nope.example")

    def test_gateway_service(self) -> None:
        """POST .../service takes a gateway out of service and back in."""
        answer = self.post(f"/api/gateways/{GW1}/service", {"in_service": False})
        self.assertEqual(answer.code, 200)
        self.assertEqual((answer.json()["in_service"], answer.json()["state"]), (False, "out-of-service"))
        self.post(f"/api/gateways/{GW1}/service", {"in_service": True})
        self.assertEqual(self.fake.actions, [("in_service", GW1, False), ("in_service", GW1, True)])

    def test_gateway_service_errors(self) -> None:
        """Bad bodies, unknown gateways and wrong methods are refused, nothing is done."""
        path = f"/api/gateways/{GW1}/service"
        self.assertError(self.post(path, {"in_service": "no"}), 400, "bad-request", "in_service")
        self.assertError(self.post(path, {}), 400, "bad-request", "in_service")
        self.assertError(self.request("POST", path, data=b"{nope", headers={"content-type": "application/json"}),
                         400, "bad-request", "malformed JSON")
        self.assertError(self.request("POST", path, data=b"", headers={"content-type": "application/json"}),
                         400, "bad-request", "empty")
        self.assertError(self.request("POST", path, data=b'{"in_service": false}',
                                      headers={"content-type": "text/plain"}), 415, "unsupported-media-type")
        self.assertError(self.post("/api/gateways/nope.example/service", {"in_service": False}), 404, "not-found")
        answer = self.request("GET", path)
        self.assertError(answer, 405, "method-not-allowed", "POST")
        self.assertEqual(answer.header("allow"), "POST")
        self.assertError(self.request("GET", f"/api/gateways/{GW1}/reboot"), 404, "not-found")
        self.assertEqual(self.fake.actions, [])

    def test_deeply_nested_json(self) -> None:
        """30,000 nested arrays (issue 16) are a 400 with a reason on every JSON route, not a 500."""
        deep = b"[" * 30_000
        for path in (f"/api/gateways/{GW1}/service", "/api/calls", f"/api/endpoints/{A1}/audit"):
            answer = self.request("POST", path, data=deep, headers={"content-type": "application/json"})
            self.assertError(answer, 400, "bad-request", "nests too deeply")
        self.assertEqual(self.fake.actions, [])

    def test_gateway_service_conflict(self) -> None:
        """Call control refusing is 409 with its reason."""
        self.fake.fail_next = CallControlError("gateway is restarting")
        self.assertError(self.post(f"/api/gateways/{GW1}/service", {"in_service": False}),
                         409, "conflict", "gateway is restarting")

    def test_endpoints(self) -> None:
        """GET /api/endpoints lists all, or those of one gateway."""
        body = self.request("GET", "/api/endpoints").json()
        self.assertEqual(len(body["endpoints"]), 5)
        one = self.request("GET", f"/api/endpoints?gateway={GW2}").json()["endpoints"]
        self.assertEqual([e["name"] for e in one], [f"aaln/1@{GW2}"])
        self.assertError(self.request("GET", "/api/endpoints?gateway=nope"), 404, "not-found", "nope")

    def test_endpoint_names(self) -> None:
        """An endpoint is named plain or percent-encoded, with connections in the view."""
        plain = self.request("GET", f"/api/endpoints/{A1}").json()
        encoded = self.request("GET", "/api/endpoints/aaln%2F1%40" + GW1).json()
        self.assertEqual(plain, encoded)
        self.assertEqual(plain["connections"][0]["connection_id"], "A1")
        self.assertEqual((plain["state"], plain["hook"], plain["call_id"]), ("connected", "off", "c1"))

    def test_endpoint_errors(self) -> None:
        """Unknown endpoints are 404, malformed or wildcard names 400."""
        self.assertError(self.request("GET", f"/api/endpoints/aaln/9@{GW1}"), 404, "not-found", "aaln/9")
        self.assertError(self.request("GET", "/api/endpoints/aaln/1"), 400, "bad-request", "bad endpoint name")
        self.assertError(self.request("GET", "/api/endpoints/a%20b@gw"), 400, "bad-request", "bad endpoint name")
        self.assertError(self.request("GET", f"/api/endpoints/aaln/*@{GW1}"), 400, "bad-request", "wildcard")
        self.assertError(self.request("GET", f"/api/endpoints/{A1}/nope"), 404, "not-found")
        self.assertError(self.request("DELETE", f"/api/endpoints/{A1}"), 405, "method-not-allowed")

    def test_audit(self) -> None:
        """POST .../audit audits and answers the fresh view."""
        answer = self.post(f"/api/endpoints/aaln/1@{GW2}/audit")
        self.assertEqual((answer.code, answer.json()["state"]), (200, "idle"))
        self.assertEqual(self.fake.actions, [("audit", f"aaln/1@{GW2}")])

    def test_audit_errors(self) -> None:
        """Audit: unknown 404, GET 405, no JSON type 415, timeout 504, MGCP error 502."""
        self.assertError(self.post(f"/api/endpoints/aaln/9@{GW1}/audit"), 404, "not-found")
        self.assertError(self.request("GET", f"/api/endpoints/{A1}/audit"), 405, "method-not-allowed")
        self.assertError(self.request("POST", f"/api/endpoints/{A1}/audit"), 415, "unsupported-media-type")
        command = Command.create("AUEP", 77, A1)
        self.fake.fail_next = TransactionTimeout(command, ("127.0.0.1", 2427), 7)
        self.assertError(self.post(f"/api/endpoints/{A1}/audit"), 504, "gateway-timeout", "AUEP")
        self.fake.fail_next = TransactionFailed(Response.create(500, 77, "Endpoint unknown"), command)
        body = self.assertError(self.post(f"/api/endpoints/{A1}/audit"), 502, "gateway-error", "500")
        self.assertEqual(body["mgcp_code"], 500)

    def test_calls(self) -> None:
        """GET /api/calls lists calls without their ladders."""
        calls = {c["call_id"]: c for c in self.request("GET", "/api/calls").json()["calls"]}
        self.assertEqual(set(calls), {"c0", "c1"})
        self.assertNotIn("ladder", calls["c1"])
        self.assertEqual(calls["c1"]["ladder_length"], 4)
        self.assertEqual(calls["c0"]["cause"], "busy")

    def test_call(self) -> None:
        """GET /api/calls/ID has the ladder; an unknown id is 404."""
        call = self.request("GET", "/api/calls/c1").json()
        self.assertEqual([e["direction"] for e in call["ladder"]], ["out", "in", "out", "in"])
        self.assertTrue(call["ladder"][0]["summary"].startswith("CRCX 1001"))
        self.assertError(self.request("GET", "/api/calls/nope"), 404, "not-found", "nope")

    def test_originate(self) -> None:
        """POST /api/calls originates: 201, the id and a Location."""
        answer = self.post("/api/calls", {"from": A3, "to": A4})
        self.assertEqual(answer.code, 201)
        self.assertEqual(answer.json(), {"call_id": "call-1", "from": A3, "to": A4})
        self.assertEqual(answer.header("location"), "/api/calls/call-1")
        self.assertEqual(self.fake.actions, [("originate", A3, A4)])

    def test_originate_errors(self) -> None:
        """Every malformed originate is refused before call control sees it."""
        cases = [
            ({"to": A4}, 400, "bad-request", "'from'"),
            ({"from": A3}, 400, "bad-request", "'to'"),
            ({"from": 7, "to": A4}, 400, "bad-request", "string"),
            ({"from": "nonsense", "to": A4}, 400, "bad-request", "bad endpoint name"),
            ({"from": A3, "to": A3.upper()}, 400, "bad-request", "same endpoint"),
            ({"from": A3, "to": f"aaln/9@{GW1}"}, 404, "not-found", "aaln/9"),
            ([A3, A4], 400, "bad-request", "JSON object"),
        ]
        for body, code, error, reason in cases:
            self.assertError(self.post("/api/calls", body), code, error, reason)
        self.assertError(self.request("POST", "/api/calls", data=b'{"from": "x"',
                                      headers={"content-type": "application/json"}), 400, "bad-request")
        self.assertError(self.request("POST", "/api/calls", data=b"\xff\xfe",
                                      headers={"content-type": "application/json"}), 400, "bad-request")
        self.assertError(self.request("POST", "/api/calls", data=b"from=a&to=b",
                                      headers={"content-type": "application/x-www-form-urlencoded"}),
                         415, "unsupported-media-type")
        big = json.dumps({"from": A3, "to": A4, "pad": "x" * 70000}).encode()
        self.assertError(self.request("POST", "/api/calls", data=big, headers={"content-type": "application/json"}),
                         413, "payload-too-large")
        self.assertEqual(self.fake.actions, [])

    def test_originate_busy(self) -> None:
        """A busy line is call control's CallControlError: 409 with the reason."""
        self.assertError(self.post("/api/calls", {"from": A1, "to": A3}), 409, "conflict", "busy")

    def test_hangup(self) -> None:
        """DELETE /api/calls/ID hangs up and answers the ended call."""
        answer = self.request("DELETE", "/api/calls/c1")
        self.assertEqual((answer.code, answer.json()["state"], answer.json()["cause"]), (200, "ended", "admin"))
        self.assertEqual(self.fake.actions, [("hangup", "c1")])

    def test_hangup_errors(self) -> None:
        """Unknown call 404, an ended call 409, call control refusing 409."""
        self.assertError(self.request("DELETE", "/api/calls/nope"), 404, "not-found")
        self.assertError(self.request("DELETE", "/api/calls/c0"), 409, "conflict", "already ended")
        self.fake.fail_next = CallControlError("call c1 is being released")
        self.assertError(self.request("DELETE", "/api/calls/c1"), 409, "conflict", "being released")
        answer = self.request("PUT", "/api/calls/c1")
        self.assertError(answer, 405, "method-not-allowed")
        self.assertEqual(answer.header("allow"), "DELETE, GET, HEAD")
        self.assertError(self.request("PATCH", "/api/calls"), 405, "method-not-allowed")
        self.assertError(self.request("GET", "/api/calls/c1/more"), 404, "not-found")

    def test_stats(self) -> None:
        """GET /api/stats: the transaction snapshot, calls and gateways."""
        body = self.request("GET", "/api/stats").json()
        self.assertEqual(body["transactions"]["counters"]["retransmissions"], 3)
        self.assertEqual(body["calls"], {"active": 1, "outcomes": {"normal": 3, "busy": 1, "no-answer": 0}})
        self.assertEqual(body["gateways"]["up"], 1)
        self.assertEqual(body["gateways"]["down"], 1)
        self.assertEqual(body["endpoints"], {"total": 5, "registered": 4})
        self.assertError(self.request("GET", "/api/stats/more"), 404, "not-found")
        self.assertError(self.request("POST", "/api/stats"), 405, "method-not-allowed")

    def test_head(self) -> None:
        """HEAD is answered wherever GET is."""
        answer = self.request("HEAD", "/api/gateways")
        self.assertEqual((answer.code, answer.body), (200, b""))

    def test_unknown_routes(self) -> None:
        """Unknown API paths are JSON 404s; unknown pages are HTML 404s."""
        self.assertError(self.request("GET", "/api/nope"), 404, "not-found", "/api/nope")
        self.assertError(self.request("POST", "/api/nope/deeper"), 404, "not-found", "/api/nope/deeper")
        answer = self.request("GET", "/nope")
        self.assertEqual(answer.code, 404)
        self.assertIn(b"Not found", answer.body)
        self.assertEqual(self.request("GET", "/static/nope.js").code, 404)
        self.assertEqual(self.request("GET", "/static/").code, 404)

    def test_bug_is_500(self) -> None:
        """An unexpected exception is logged and answered 500 JSON, not raised."""

        def broken() -> None:
            raise RuntimeError("a bug")

        self.fake.list_calls = broken  # type: ignore[method-assign]
        self.assertError(self.request("GET", "/api/calls"), 500, "internal-error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unencodable_is_500(self) -> None:
        """A view that cannot be written as JSON is a logged 500 too."""

        class Odd:
            def to_json(self) -> Any:
                return {"when": object()}

        self.fake.gateways["odd"] = Odd()  # type: ignore[assignment]
        self.assertError(self.request("GET", "/api/gateways/odd"), 500, "internal-error")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_client_gone(self) -> None:
        """A client that leaves before a slow action ends gets nothing written."""
        self.fake.hold_next = held = Deferred()
        d = self.stub.request("POST", "http://admin.test/api/calls", json={"from": A3, "to": A4})
        self.stub.flush()
        self.assertNoResult(d)
        d.cancel()
        self.stub.flush()
        held.callback("call-9")
        self.stub.flush()
        self.failureResultOf(d)

    def test_page(self) -> None:
        """The page and its assets are served with a strict CSP."""
        page = self.request("GET", "/")
        self.assertEqual(page.code, 200)
        self.assertEqual(page.header("content-type"), "text/html; charset=utf-8")
        self.assertIn("default-src 'self'", page.header("content-security-policy") or "")
        for element in (b'id="gateways"', b'id="endpoints"', b'id="calls"', b'id="call-button"', b'id="chart-section"'):
            self.assertIn(element, page.body)
        for name in ("app.js", "call.js", "common.js"):
            script = self.request("GET", "/static/" + name)
            self.assertEqual(script.header("content-type"), "text/javascript; charset=utf-8")
        self.assertIn(b"EventSource", self.request("GET", "/static/common.js").body)
        self.assertEqual(self.request("GET", "/static/index.html").code, 404)  # a template, served as /
        self.assertEqual(self.request("GET", "/static/style.css").header("content-type"), "text/css; charset=utf-8")


class _Reader(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        pass


class _PushRequest:
    """Just enough of a request for an L{EventStream} (DummyRequest loops on producers)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.headers: dict[bytes, bytes] = {}
        self.producer: Any = None
        self.code = 0
        self.finished = Deferred()  # type: Deferred[None]

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def notifyFinish(self) -> Deferred:
        return self.finished

    def write(self, data: bytes) -> None:
        self.written.append(data)


class Events(WebCase):
    def open_stream(self) -> tuple[Any, list[bytes]]:
        """GET /api/events; the returned reader holds the chunks and can hang up."""
        reader = _Reader()
        responses: list[Any] = []
        d = self.stub.get("http://admin.test/api/events", unbuffered=True)
        d.addCallback(lambda r: (responses.append(r), r.deliverBody(reader)))
        self.stub.flush()
        self.assertEqual(responses[0].code, 200)
        self.assertEqual(responses[0].headers.getRawHeaders("content-type"), ["text/event-stream; charset=utf-8"])
        return reader, reader.chunks

    def test_stream(self) -> None:
        """Events are sent as SSE frames with their names, calls without ladders."""
        response, chunks = self.open_stream()
        self.assertEqual(len(self.fake.observers), 1)
        self.assertTrue(b"".join(chunks).startswith(b"retry: 3000\n"))
        del chunks[:]
        call = self.fake.calls["c1"]
        self.fake.emit(CallStarted(call))
        self.fake.emit(GatewayStateChanged(self.fake.gateways[GW2], self.fake.gateways[GW1].state))
        self.stub.flush()
        frames = b"".join(chunks).split(b"\n\n")
        self.assertEqual(frames[-1], b"")
        name, data = frames[0].split(b"\n")
        self.assertEqual(name, b"event: call-started")
        payload = json.loads(data[len(b"data: "):])
        self.assertEqual((payload["call"]["call_id"], payload["call"]["ladder_length"]), ("c1", 4))
        self.assertNotIn("ladder", payload["call"])
        self.assertTrue(frames[1].startswith(b"event: gateway-state-changed\ndata: {"))
        self.assertEqual(json.loads(frames[1].split(b"data: ")[1])["previous"], "up")

    def test_keepalive_and_unsubscribe(self) -> None:
        """A comment every 15 s on the clock; leaving unsubscribes and stops it (and the stats samples)."""
        response, chunks = self.open_stream()
        del chunks[:]
        self.clock.advance(15)
        self.stub.flush()
        frames = b"".join(chunks).split(b"\n\n")
        self.assertEqual([f for f in frames if not f.startswith(b"event: stats\n")], [b": keepalive", b""])
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)  # the keepalive and the stats sampler
        response.transport.stopProducing()  # the client hangs up
        self.stub.flush()
        self.assertEqual(self.fake.observers, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def samples(self, chunks: list[bytes]) -> list[dict[str, Any]]:
        frames = b"".join(chunks).split(b"\n\n")
        return [json.loads(f.split(b"data: ", 1)[1]) for f in frames if f.startswith(b"event: stats\n")]

    def test_stats_samples(self) -> None:
        """A stats sample at once, then one a second: calls in progress, calls started and transactions so far."""
        response, chunks = self.open_stream()
        chart = ("now", "active_calls", "calls", "transactions", "cluster")  # overload and trunks: test_web_overload
        first = [{k: sample[k] for k in chart} for sample in self.samples(chunks)]
        # c1 is in progress; 4 calls ended (normal 3, busy 1); 28 commands sent and received.
        self.assertEqual(first, [{"now": self.clock.seconds(), "active_calls": 1, "calls": 5, "transactions": 28,
                                  "cluster": None}])
        del chunks[:]
        self.post("/api/calls", {"from": A3, "to": A4})
        self.fake.stats["counters"]["commands_sent CRCX"] += 10
        self.clock.advance(1)
        self.stub.flush()
        self.assertEqual([{k: sample[k] for k in chart} for sample in self.samples(chunks)], [
            {"now": self.clock.seconds(), "active_calls": 2, "calls": 6, "transactions": 38, "cluster": None},
        ])
        second, more = self.open_stream()
        del chunks[:], more[:]
        self.clock.advance(1)
        self.stub.flush()
        self.assertEqual(len(self.samples(chunks)), 1)
        self.assertEqual(self.samples(chunks), self.samples(more))  # one sampler for every stream
        response.transport.stopProducing()
        second.transport.stopProducing()
        self.stub.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_live_actions(self) -> None:
        """An originate made through the API shows in the stream."""
        response, chunks = self.open_stream()
        self.post("/api/calls", {"from": A3, "to": A4})
        self.stub.flush()
        text = b"".join(chunks)
        self.assertIn(b"event: call-started\n", text)
        self.assertIn(b"event: endpoint-state-changed\n", text)

    def test_bad_event_contained(self) -> None:
        """An event that cannot be encoded is logged; the stream goes on."""
        response, chunks = self.open_stream()

        class Broken:
            def to_json(self) -> Any:
                raise ValueError("cannot")

        self.fake.emit(Broken())
        self.fake.emit(EndpointStateChanged(self.fake.endpoints[A3], self.fake.endpoints[A3].state))
        self.stub.flush()
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertIn(b"event: endpoint-state-changed\n", b"".join(chunks))

    def test_slow_reader(self) -> None:
        """While the connection pushes back, events are dropped and a resync follows."""
        request = _PushRequest()
        closed: list[EventStream] = []
        stream = EventStream(request, self.fake, self.clock, 15.0, closed.append)
        stream.start()
        self.assertIs(request.producer, stream)
        stream.pauseProducing()
        self.fake.emit(CallStarted(self.fake.calls["c1"]))
        self.fake.emit(CallStarted(self.fake.calls["c1"]))
        self.clock.advance(15)  # no keepalive while paused
        self.assertEqual(b"".join(request.written), b"retry: 3000\n: mgcpswitch events\n\n")
        stream.resumeProducing()
        self.assertEqual(request.written[-1], b'event: resync\ndata: {"dropped":2}\n\n')
        stream.stopProducing()
        self.assertEqual((closed, self.fake.observers), ([stream], []))
        stream.stopProducing()
        self.assertEqual(closed, [stream])

    def test_stream_limit(self) -> None:
        """Beyond the limit of open streams: 503."""
        stub = StubTreq(EventsResource(self.fake, self.clock, max_streams=1))
        first = stub.get("http://admin.test/")
        first.addCallback(lambda r: treq.collect(r, lambda data: None))
        stub.flush()
        second = stub.get("http://admin.test/")
        stub.flush()
        response = self.successResultOf(second)
        self.assertEqual(response.code, 503)
        body = self.successResultOf(response.json())
        self.assertEqual(body["error"], "too-many-streams")

    def test_head(self) -> None:
        """HEAD /api/events answers headers only and subscribes to nothing."""
        answer = self.request("HEAD", "/api/events")
        self.assertEqual(answer.code, 200)
        self.assertEqual(self.fake.observers, [])


class Metrics(WebCase):
    def scrape(self) -> dict[str, Any]:
        answer = self.request("GET", "/metrics")
        self.assertEqual(answer.code, 200)
        self.assertTrue((answer.header("content-type") or "").startswith("text/plain"))
        samples: dict[str, Any] = {}
        for family in text_string_to_metric_families(answer.body.decode()):
            for sample in family.samples:
                key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[key] = sample.value
        return samples

    def test_transactions(self) -> None:
        """Commands and responses per verb and code, retransmissions, timeouts."""
        samples = self.scrape()
        self.assertEqual(samples["mgcp_commands_total,direction=out,verb=CRCX"], 6)
        self.assertEqual(samples["mgcp_commands_total,direction=in,verb=NTFY"], 7)
        self.assertEqual(samples["mgcp_responses_total,code=200,direction=in"], 18)
        self.assertEqual(samples["mgcp_responses_total,code=200,direction=out"], 9)
        self.assertEqual(samples["mgcp_retransmissions_total"], 3)
        self.assertEqual(samples["mgcp_transaction_timeouts_total"], 1)
        self.assertEqual(samples["mgcp_transaction_events_total,event=duplicates"], 2)
        self.assertEqual(samples["mgcp_transactions_pending"], 1)

    def test_store(self) -> None:
        """The store's written, failed, lost and waiting rows (issue 16: what is finally lost is counted)."""
        samples = self.scrape()
        self.assertEqual(samples["mgcp_store_rows_written_total"], 40)
        self.assertEqual(samples["mgcp_store_batches_failed_total"], 2)
        self.assertEqual(samples["mgcp_store_rows_lost_total"], 3)
        self.assertEqual(samples["mgcp_store_cdrs_lost_total"], 1)
        self.assertEqual(samples["mgcp_store_rows_waiting"], 4)

    def test_latency_histogram(self) -> None:
        """Per-bucket counts become cumulative buckets, +Inf last."""
        samples = self.scrape()
        buckets = {k.split("le=")[1]: v for k, v in samples.items() if k.startswith("mgcp_transaction_latency")}
        self.assertEqual(buckets, {"0.001": 2, "0.01": 12, "0.1": 17, "1.0": 18, "+Inf": 19})
        self.fake.stats["latency_sum"] = 4.5
        samples = self.scrape()
        self.assertEqual(samples["mgcp_transaction_latency_seconds_sum"], 4.5)
        self.assertEqual(samples["mgcp_transaction_latency_seconds_count"], 19)

    def test_calls_and_gateways(self) -> None:
        """Registered endpoints, gateways per state, active calls, calls per outcome."""
        samples = self.scrape()
        self.assertEqual(samples["mgcp_registered_endpoints"], 4)
        self.assertEqual(samples["mgcp_gateways,state=up"], 1)
        self.assertEqual(samples["mgcp_gateways,state=down"], 1)
        self.assertEqual(samples["mgcp_gateways,state=draining"], 0)
        self.assertEqual(samples["mgcp_active_calls"], 1)
        self.assertEqual(samples["mgcp_calls_total,outcome=normal"], 3)
        self.request("DELETE", "/api/calls/c1")
        samples = self.scrape()
        self.assertEqual((samples["mgcp_active_calls"], samples["mgcp_calls_total,outcome=admin"]), (0, 1))

    def test_private_registry(self) -> None:
        """Nothing is registered in prometheus_client's global registry."""
        self.scrape()
        names = {m.name for m in REGISTRY.collect()}
        self.assertFalse([n for n in names if n.startswith("mgcp")])

    def test_method(self) -> None:
        """Only GET (and HEAD) scrape."""
        self.assertError(self.request("POST", "/metrics"), 405, "method-not-allowed")


class Auth(AuthSetup, WebCase):
    def test_required(self) -> None:
        """Every path asks for credentials: API, page, metrics, events."""
        for path in ("/api/gateways", "/", "/static/app.js", "/metrics", "/api/events", "/nope"):
            self.assertRefused(self.request("GET", path), "authentication required")
        self.assertRefused(self.post("/api/calls", {"from": A3, "to": A4}), "authentication required")
        self.assertEqual(self.fake.actions, [])
        self.assertEqual(self.fake.observers, [])

    def testbasic(self) -> None:
        """A good user and password pass; a bad password or user does not."""
        self.assertEqual(self.request("GET", "/api/gateways", headers=basic("alice", "wonderland")).code, 200)
        self.assertEqual(self.request("GET", "/", headers=basic("alice", "wonderland")).code, 200)
        self.assertRefused(self.request("GET", "/api/gateways", headers=basic("alice", "nope")), "bad credentials")
        self.assertRefused(self.request("GET", "/api/gateways", headers=basic("bob", "wonderland")),
                           "bad credentials")
        self.assertRefused(self.request("GET", "/api", headers={"authorization": "Basic !!!"}), "malformed")

    def test_treq_auth(self) -> None:
        """treq's auth= option is HTTP Basic; actions go through."""
        answer = self.post("/api/calls", {"from": A3, "to": A4}, auth=("alice", "wonderland"))
        self.assertEqual(answer.code, 201)

    def test_bearer(self) -> None:
        """A configured token passes; another does not."""
        good = {"authorization": "Bearer " + TOKEN}
        self.assertEqual(self.request("GET", "/api/calls", headers=good).code, 200)
        self.assertEqual(self.request("GET", "/metrics", headers=good).code, 200)
        self.assertRefused(self.request("GET", "/api/calls", headers={"authorization": "Bearer s3cret"}),
                           "bad credentials")
        self.assertRefused(self.request("GET", "/api/calls", headers={"authorization": "Bearer"}), "malformed")
        self.assertRefused(self.request("GET", "/api/calls", headers={"authorization": "Digest x=1"}),
                           "unsupported authorization scheme")

    def test_token_only(self) -> None:
        """With tokens alone, only the Bearer challenge is offered."""
        site = make_site(self.fake, WebSettings(tokens=("t1", "t2")), self.clock)
        self.stub = StubTreq(site.resource)
        answer = self.request("GET", "/api/calls")
        self.assertEqual(answer.headers.getRawHeaders("www-authenticate"), ['Bearer realm="mgcpswitch"'])
        self.assertEqual(self.request("GET", "/api/calls", headers={"authorization": "Bearer t2"}).code, 200)
        self.assertEqual(self.request("GET", "/api/calls", headers=basic("alice", "wonderland")).code, 401)
