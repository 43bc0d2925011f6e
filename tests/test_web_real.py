"""
The web admin's API against the REAL call control: L{treq.testing.StubTreq}
in front of C{make_site(switch.service, ...)}, where C{switch} is a whole
switch (a L{CallControlService} and two simulated gateways of eight lines)
on the in-memory network.  Every route, the real data behind it, a call
originated through the API and answered by the simulated phones, every
error path, authentication required and refused, the event stream
carrying a real call's events; a line's services changed through the API
(message waiting lights the phone, do-not-disturb makes callers hear
busy), a waiting and a held call as the API shows them; and the admin of
an agent standing by in a cluster (read-only until it is elected).

Call control publishes its events on a later reactor turn and the gateways
answer after the network's latency, so each request is answered while the
switch's clock is advanced (L{RealCase.request}); nothing sleeps.
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mgcpswitch.agent.dialplan import StaticDialPlan
from mgcpswitch.agent.model import ClusterView, Role
from mgcpswitch.agent.service import CallControlService
from mgcpswitch.agent.store import MemoryStore
from mgcpswitch.cluster.ids import call_id_prefix
from mgcpswitch.interfaces import IClusterMember
from mgcpswitch.web import WebSettings, make_site

from .support.switch import Switch
from .support.web import TOKEN, Answer, AuthSetup, basic

A, B = "aaln/1@rgw1", "aaln/2@rgw2"  # directory numbers 1001 and 2002
NUMBERS = [f"100{n}" for n in range(1, 9)] + [f"200{n}" for n in range(1, 9)]


class _Reader(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        pass


class RealCase(SynchronousTestCase):
    """A switch on the in-memory network with its admin in front of it."""

    settings = WebSettings()

    def setUp(self) -> None:
        self.switch = Switch()
        self.addCleanup(self.switch.stop)
        self.assertTrue(self.switch.registered())
        self.site = make_site(self.switch.service, self.settings, self.switch.reactor)
        self.stub = StubTreq(self.site.resource)

    def request(self, method: str, path: str, limit: float = 10.0, **kwargs: Any) -> Answer:
        """
        Send a request through the stub; while it is unanswered, advance the
        switch's clock (the gateways answer, events are delivered) for at
        most C{limit} seconds.  A request that needs no MGCP is answered
        without moving the clock.
        """
        done: list[Any] = []
        d = self.stub.request(method, "http://admin.test" + path, **kwargs)
        d.addCallback(lambda r: r.content().addCallback(lambda body: Answer(r.code, r.headers, body)))
        d.addBoth(done.append)
        end = self.switch.reactor.seconds() + limit
        self.stub.flush()
        while not done and self.switch.reactor.seconds() < end:
            self.switch.run(0.01)
            self.stub.flush()
        self.assertEqual(len(done), 1, f"no answer to {method} {path} within {limit} s of the switch's clock")
        if not isinstance(done[0], Answer):
            done[0].raiseException()
        return done[0]

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET C{path}: must be 200; its JSON."""
        answer = self.request("GET", path, **kwargs)
        self.assertEqual(answer.code, 200, answer.body)
        return answer.json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return self.request("POST", path, json=body if body is not None else {}, **kwargs)

    def assertError(self, answer: Answer, code: int, error: str, reason_part: str = "") -> dict[str, Any]:
        body = answer.json()
        self.assertEqual((answer.code, body["error"]), (code, error), body)
        self.assertIn(reason_part, body["reason"])
        return body  # type: ignore[no-any-return]

    def run_until(self, predicate: Callable[[], bool], limit: float = 10.0, what: str = "") -> None:
        """Advance the switch's clock until C{predicate()} holds (at most C{limit} s)."""
        end = self.switch.reactor.seconds() + limit
        while not predicate():
            self.assertLess(self.switch.reactor.seconds(), end, f"not within {limit} s: {what}")
            self.switch.run(0.01)
            self.stub.flush()

    def assertIdle(self) -> None:
        """Every line idle (switch and phones), no connection, no call in progress."""
        self.assertTrue(self.switch.idle(), [
            (e["name"], e["state"], e["hook"]) for e in self.get("/api/endpoints")["endpoints"]
            if e["state"] != "idle" or e["hook"] != "on"
        ])
        self.assertEqual(self.switch.control.calls(), [])
        endpoints = self.get("/api/endpoints")["endpoints"]
        self.assertEqual({(e["state"], e["hook"], e["call_id"]) for e in endpoints}, {("idle", "on", None)})
        self.assertEqual([e for e in endpoints if e["connections"]], [])

    def counters(self) -> dict[str, int]:
        return self.get("/api/stats")["transactions"]["counters"]  # type: ignore[no-any-return]

    def connect(self, a: str = A, b: str = B) -> tuple[str, Any, Any]:
        """Originate a call from C{a} to C{b} through the API; both phones answer."""
        answer = self.post("/api/calls", {"from": a, "to": b})
        self.assertEqual(answer.code, 201, answer.body)
        call_id = answer.json()["call_id"]
        first, second = self.phone(a), self.phone(b)
        self.assertTrue(first.ringing, first)
        self.assertFalse(second.ringing, second)
        first.off_hook()
        self.run_until(lambda: second.ringing, what=f"{b} rings")
        second.off_hook()
        self.run_until(lambda: self.switch.service.get_call(call_id).state.value == "connected"
                       and len(first.connections) == len(second.connections) == 1, what="connected")
        self.switch.run(0.5)  # the last MDCX answered, both lines settled
        return call_id, first, second

    def open_stream(self) -> _Reader:
        """GET /api/events; the reader collects what arrives until the test ends or L{close_stream}."""
        reader = _Reader()
        responses: list[Any] = []
        d = self.stub.get("http://admin.test/api/events", unbuffered=True)
        d.addCallback(lambda r: (responses.append(r), r.deliverBody(reader)))
        self.stub.flush()
        [response] = responses
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["text/event-stream; charset=utf-8"])
        self.addCleanup(self.close_stream, reader)
        return reader

    def close_stream(self, reader: _Reader) -> None:
        """The client hangs up: call control forgets the stream, its keepalive stops."""
        if not reader.closed:
            reader.closed = True
            reader.transport.stopProducing()
            self.stub.flush()

    def frames(self, reader: _Reader, stats: bool = False) -> list[tuple[str, Any]]:
        """The events received so far: (name, data), keepalive comments (and stats samples) left out."""
        out = []
        for frame in b"".join(reader.chunks).split(b"\n\n"):
            lines = frame.decode().split("\n")
            name = [line[len("event: "):] for line in lines if line.startswith("event: ")]
            data = [line[len("data: "):] for line in lines if line.startswith("data: ")]
            if name and (stats or name[0] != "stats"):
                out.append((name[0], json.loads(data[0])))
        return out

    def phone(self, endpoint: str) -> Any:
        """The simulated phone of an endpoint name."""
        local, _, domain = endpoint.partition("@")
        gateway = {"rgw1": self.switch.gw1, "rgw2": self.switch.gw2}[domain]
        return gateway.line(int(local.rpartition("/")[2]))


class Reading(RealCase):
    def test_every_listed_route_answers(self) -> None:
        """Every route GET /api lists is served: the GET routes answer 200 with the real data."""
        routes = self.get("/api")["routes"]
        self.assertEqual(self.get("/api/"), {"routes": routes})
        real = {"NAME": "rgw1", "ENDPOINT": quote(A, safe=""), "ID": "x"}
        methods: dict[str, set[str]] = {}
        for route in routes:
            path = route["path"].split("?")[0]
            for placeholder, value in real.items():
                path = path.replace(placeholder, value)
            methods.setdefault(path, set()).add(route["method"])
        self.assertEqual(len(routes), 20)
        for path, allowed in methods.items():
            if path in ("/api/events", "/api/calls/x", "/api/calls/x/flow", "/api/calls/x/ladder.pcap",
                        "/api/trunks/rgw1"):
                continue  # the stream never ends; there is no call x, and no trunk here (below)
            if "GET" in allowed:
                answer = self.request("GET", path)
                self.assertEqual(answer.code, 200, (path, answer.body))
            # Every method the index names is routed (not 404/405) there.
            for method in allowed - {"GET"}:
                answer = self.request(method, path, data=b"{nope", headers={"content-type": "application/json"})
                self.assertNotIn(answer.code, (404, 405), (method, path, answer.body))
        self.assertEqual(self.request("HEAD", "/api/events").code, 200)
        for path in ("/api/calls/x", "/api/calls/x/flow", "/api/calls/x/ladder.pcap"):
            self.assertError(self.request("GET", path), 404, "not-found", "'x'")
        self.assertEqual(self.get("/api/trunks")["trunks"], [])
        self.assertError(self.request("GET", "/api/trunks/rgw1"), 404, "not-found", "none configured")

    def test_gateways_up_after_registration(self) -> None:
        """Both gateways registered (RSIP restart), audited and up, with their real counters."""
        body = self.get("/api/gateways")
        self.assertEqual(body["now"], self.switch.reactor.seconds())
        gateways = {g["name"]: g for g in body["gateways"]}
        self.assertEqual(set(gateways), {"rgw1", "rgw2"})
        for name, host in (("rgw1", "127.0.0.2"), ("rgw2", "127.0.0.3")):
            g = gateways[name]
            self.assertEqual(
                (g["state"], g["in_service"], g["host"], g["port"], g["endpoints"], g["active_calls"]),
                ("up", True, host, 2427, 8, 0),
            )
            self.assertEqual((g["last_rsip"], g["profile"], g["keepalive_interval"]), ("restart", "default", 15.0))
            self.assertIsNotNone(g["last_seen"])
            self.assertLessEqual(g["last_rsip_at"], body["now"])
            # One RSIP in; an AUEP and an RQNT per line out.
            self.assertEqual(g["counters"], {"commands_received": 1, "commands_sent": 16})
            self.assertEqual(self.get(f"/api/gateways/{name}"), g)
        self.assertEqual(self.get("/api/gateways/RGW2")["name"], "rgw2")  # domain names are case-blind

    def test_endpoints_idle_with_numbers(self) -> None:
        """16 endpoints, each audited idle and on hook, with the directory number of its section."""
        body = self.get("/api/endpoints")
        endpoints = body["endpoints"]
        self.assertEqual(len(endpoints), 16)
        self.assertEqual([e["number"] for e in endpoints], NUMBERS)
        self.assertEqual(
            [e["name"] for e in endpoints],
            [f"aaln/{n}@rgw1" for n in range(1, 9)] + [f"aaln/{n}@rgw2" for n in range(1, 9)],
        )
        for e in endpoints:
            self.assertEqual(
                (e["state"], e["hook"], e["in_service"], e["call_id"], e["connections"], e["last_event"]),
                ("idle", "on", True, None, [], None),
            )
        rgw2 = self.get("/api/endpoints?gateway=rgw2")["endpoints"]
        self.assertEqual(rgw2, endpoints[8:])
        one = self.get(f"/api/endpoints/{B}")
        self.assertEqual(one, endpoints[9])
        self.assertEqual(self.get("/api/endpoints/" + quote(B, safe="")), one)
        self.assertEqual(self.get("/api/endpoints/AALN/2@RGW2")["name"], B)

    def test_stats_with_real_counters(self) -> None:
        """GET /api/stats: the transaction layer's counters as registration left them."""
        body = self.get("/api/stats")
        self.assertEqual(body["now"], self.switch.reactor.seconds())
        t = body["transactions"]
        counters = t["counters"]
        self.assertEqual(t["role"], "call-agent")
        self.assertEqual(counters["commands_received RSIP"], 2)
        self.assertEqual(counters["responses_sent 200"], 2)
        self.assertEqual(counters["commands_sent AUEP"], 16)
        self.assertEqual(counters["commands_sent RQNT"], 16)
        self.assertEqual(counters["responses_received 200"], 32)
        self.assertEqual((counters.get("retransmissions", 0), counters.get("timeouts", 0)), (0, 0))
        self.assertEqual(t["pending"], 0)
        self.assertEqual(sum(t["latency_counts"]), 32)
        self.assertEqual(len(t["latency_counts"]), len(t["latency_buckets"]) + 1)
        self.assertEqual({p["state"] for p in t["peers"].values()}, {"reachable"})
        self.assertEqual(set(t["peers"]), {"127.0.0.2:2427", "127.0.0.3:2427"})
        self.assertEqual(t["call_control"]["audits"], 16)
        self.assertEqual(body["calls"], {"active": 0, "outcomes": {}})
        self.assertEqual(body["gateways"]["up"], 2)
        self.assertEqual(sum(body["gateways"].values()), 2)
        self.assertEqual(body["endpoints"], {"total": 16, "registered": 16})

    def test_metrics_with_real_counters(self) -> None:
        """/metrics: the same counters in Prometheus form, and a call's traces once it ended."""
        samples = self.scrape()
        self.assertEqual(samples["mgcp_commands_total,direction=out,verb=AUEP"], 16)
        self.assertEqual(samples["mgcp_commands_total,direction=out,verb=RQNT"], 16)
        self.assertEqual(samples["mgcp_commands_total,direction=in,verb=RSIP"], 2)
        self.assertEqual(samples["mgcp_responses_total,code=200,direction=in"], 32)
        self.assertEqual(samples["mgcp_responses_total,code=200,direction=out"], 2)
        self.assertEqual(samples["mgcp_transaction_latency_seconds_count"], 32)
        self.assertEqual(samples["mgcp_transaction_latency_seconds_bucket,le=+Inf"], 32)
        self.assertEqual(samples["mgcp_retransmissions_total"], 0)
        self.assertEqual(samples["mgcp_transactions_pending"], 0)
        self.assertEqual(samples["mgcp_registered_endpoints"], 16)
        self.assertEqual(samples["mgcp_gateways,state=up"], 2)
        self.assertEqual(samples["mgcp_active_calls"], 0)
        self.assertNotIn("mgcp_calls_total,outcome=admin", samples)

        call_id, first, second = self.connect()
        samples = self.scrape()
        self.assertEqual(samples["mgcp_active_calls"], 1)
        self.assertEqual(samples["mgcp_commands_total,direction=out,verb=CRCX"], 2)
        self.assertEqual(samples["mgcp_commands_total,direction=in,verb=NTFY"], 2)  # both off-hooks
        self.request("DELETE", f"/api/calls/{call_id}")
        samples = self.scrape()
        self.assertEqual(samples["mgcp_active_calls"], 0)
        self.assertEqual(samples["mgcp_calls_total,outcome=admin"], 1)
        self.assertEqual(samples["mgcp_commands_total,direction=out,verb=DLCX"], 2)
        self.assertEqual(samples["mgcp_responses_total,code=250,direction=in"], 2)
        first.on_hook()
        second.on_hook()
        self.run_until(self.switch.idle, what="idle")

    def scrape(self) -> dict[str, float]:
        answer = self.request("GET", "/metrics")
        self.assertEqual(answer.code, 200)
        self.assertTrue((answer.header("content-type") or "").startswith("text/plain"))
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(answer.body.decode()):
            for sample in family.samples:
                key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[key] = sample.value
        return samples

    def test_page(self) -> None:
        """The page and its assets are served in front of the real switch."""
        page = self.request("GET", "/")
        self.assertEqual((page.code, page.header("content-type")), (200, "text/html; charset=utf-8"))
        self.assertIn(b'id="call-button"', page.body)
        self.assertEqual(self.request("GET", "/static/app.js").code, 200)
        self.assertEqual(self.request("GET", "/nope").code, 404)


class Calls(RealCase):
    def test_originate_answer_ladder_hangup(self) -> None:
        """
        POST /api/calls rings the first line; it answers, the second rings and
        answers: connected, with a ladder of CRCX/MDCX.  DELETE ends it with
        cause admin and deletes both connections; the phones hang up: all idle.
        """
        answer = self.post("/api/calls", {"from": A, "to": B})
        self.assertEqual(answer.code, 201, answer.body)
        call_id = answer.json()["call_id"]
        self.assertEqual(answer.json(), {"call_id": call_id, "from": A, "to": B})
        self.assertEqual(answer.header("location"), f"/api/calls/{call_id}")
        first, second = self.phone(A), self.phone(B)
        self.assertTrue(first.ringing)
        self.assertEqual(first.caller_id[1], "2002")  # the first line is shown whom it will call
        self.assertFalse(second.ringing)
        call = self.get(f"/api/calls/{call_id}")
        self.assertEqual((call["state"], call["caller"], call["callee"], call["dialled"]), ("setup", A, None, "2002"))
        self.assertEqual(self.get(f"/api/endpoints/{A}")["state"], "ringing")

        first.off_hook()
        self.run_until(lambda: second.ringing, what="the second line rings")
        self.assertEqual(second.caller_id[1], "1001")
        self.run_until(lambda: self.get(f"/api/calls/{call_id}")["state"] == "alerting", what="alerting")
        self.assertEqual(self.get(f"/api/calls/{call_id}")["callee"], B)
        second.off_hook()
        self.switch.run(0.5)

        call = self.get(f"/api/calls/{call_id}")
        self.assertEqual((call["state"], call["caller"], call["callee"], call["codec"]), ("connected", A, B, "PCMU"))
        self.assertLess(call["started"], call["answered"])
        self.assertIsNone(call["ended"])
        summaries = [e["summary"].split()[0] for e in call["ladder"]]
        self.assertEqual(call["ladder_length"], len(call["ladder"]))
        self.assertEqual(summaries.count("CRCX"), 2)
        self.assertEqual(summaries.count("MDCX"), 1)
        self.assertEqual(summaries[0], "RQNT")  # ring the first line
        for entry in call["ladder"]:
            self.assertIn(entry["direction"], ("out", "in"))
            self.assertIn(entry["gateway"], ("rgw1", "rgw2"))
            self.assertTrue(entry["text"].startswith(entry["summary"]))
        crcx = [e for e in call["ladder"] if e["summary"].startswith("CRCX")]
        self.assertEqual([(e["direction"], e["gateway"]) for e in crcx], [("out", "rgw1"), ("out", "rgw2")])
        self.assertIn(f"C: {call_id}", crcx[0]["text"])
        [conn_a], [conn_b] = first.connections, second.connections
        self.assertEqual((conn_a.mode, conn_b.mode), ("sendrecv", "sendrecv"))

        listed = {c["call_id"]: c for c in self.get("/api/calls")["calls"]}
        self.assertNotIn("ladder", listed[call_id])
        self.assertEqual((listed[call_id]["state"], listed[call_id]["callee"]), ("connected", B))
        ends = {e["name"]: e for e in self.get("/api/endpoints")["endpoints"]}
        for name, conn in ((A, conn_a), (B, conn_b)):
            self.assertEqual((ends[name]["state"], ends[name]["hook"], ends[name]["call_id"]), ("connected", "off", call_id))
            [view] = ends[name]["connections"]
            self.assertEqual((view["connection_id"], view["call_id"], view["mode"]), (conn.connection_id, call_id, "sendrecv"))
        self.assertEqual(self.get("/api/gateways/rgw1")["active_calls"], 1)
        self.assertEqual(self.get("/api/stats")["calls"]["active"], 1)

        answer = self.request("DELETE", f"/api/calls/{call_id}")
        self.assertEqual(answer.code, 200, answer.body)
        ended = answer.json()
        self.assertEqual((ended["call_id"], ended["state"], ended["cause"]), (call_id, "ended", "admin"))
        self.assertEqual((first.connections, second.connections), ((), ()))
        self.assertEqual(self.switch.gw1.connection_count() + self.switch.gw2.connection_count(), 0)
        call = self.get(f"/api/calls/{call_id}")
        self.assertEqual(call["ladder"][-1]["summary"].split()[0], "250")  # the last DLCX answered
        self.assertEqual([e["summary"].split()[0] for e in call["ladder"]].count("DLCX"), 2)
        self.assertEqual(self.get("/api/stats")["calls"], {"active": 0, "outcomes": {"admin": 1}})
        # Both handsets are still off hook: they hear busy tone until they hang up.
        self.switch.run(0.5)
        self.assertIn("L/bz", first.signals)
        self.assertIn("L/bz", second.signals)
        first.on_hook()
        second.on_hook()
        self.switch.run(0.5)
        self.assertIdle()
        [record] = self.switch.recorder.records
        self.assertEqual((record.call_id, record.caller, record.callee, record.cause.value),
                         (call_id, "1001", "2002", "admin"))

    def test_hang_up_while_ringing(self) -> None:
        """DELETE while the first line still rings: the ringing stops, the line is idle again."""
        call_id = self.post("/api/calls", {"from": A, "to": B}).json()["call_id"]
        first = self.phone(A)
        self.assertTrue(first.ringing)
        answer = self.request("DELETE", f"/api/calls/{call_id}")
        self.assertEqual((answer.code, answer.json()["state"], answer.json()["cause"]), (200, "ended", "admin"))
        self.switch.run(0.5)
        self.assertFalse(first.ringing)
        self.assertFalse(self.phone(B).ringing)
        self.assertIdle()

    def test_hang_up_while_the_second_line_rings(self) -> None:
        """DELETE once the first answered and the second rings: both connections deleted, all idle after hang-up."""
        call_id = self.post("/api/calls", {"from": A, "to": B}).json()["call_id"]
        first, second = self.phone(A), self.phone(B)
        first.off_hook()
        self.run_until(lambda: second.ringing, what="the second line rings")
        self.switch.run(0.2)
        answer = self.request("DELETE", f"/api/calls/{call_id}")
        self.assertEqual((answer.code, answer.json()["cause"]), (200, "admin"))
        self.switch.run(0.5)
        self.assertFalse(second.ringing)
        self.assertEqual((first.connections, second.connections), ((), ()))
        first.on_hook()
        self.switch.run(0.5)
        self.assertIdle()

    def test_ladder_length_in_lists_and_events(self) -> None:
        """GET /api/calls and the event stream give each call's ladder_length: the length of its ladder."""
        reader = self.open_stream()
        call_id, first, second = self.connect()
        ladder = self.get(f"/api/calls/{call_id}")["ladder"]
        [listed] = self.get("/api/calls")["calls"]
        self.stub.flush()
        [*_, (name, last)] = [f for f in self.frames(reader) if f[0].startswith("call-")]
        self.assertEqual(name, "call-state-changed")
        self.request("DELETE", f"/api/calls/{call_id}")
        first.on_hook()
        second.on_hook()
        self.switch.run(0.5)
        self.assertEqual(listed["ladder_length"], len(ladder))
        self.assertGreater(last["call"]["ladder_length"], 0)

    def test_the_callee_hangs_up(self) -> None:
        """A call ended by a phone shows as ended with cause normal; DELETE then is 409."""
        call_id, first, second = self.connect()
        second.on_hook()
        self.switch.run(0.5)
        call = self.get(f"/api/calls/{call_id}")
        self.assertEqual((call["state"], call["cause"]), ("ended", "normal"))
        self.assertError(self.request("DELETE", f"/api/calls/{call_id}"), 409, "conflict", "already ended")
        first.on_hook()
        self.switch.run(0.5)
        self.assertIdle()

    def test_two_calls_at_once(self) -> None:
        """Two originated calls on distinct lines both connect and are listed; each hangs up alone."""
        one, a1, b1 = self.connect("aaln/1@rgw1", "aaln/1@rgw2")
        two, a2, b2 = self.connect("aaln/2@rgw1", "aaln/3@rgw1")
        self.assertNotEqual(one, two)
        states = {c["call_id"]: c["state"] for c in self.get("/api/calls")["calls"]}
        self.assertEqual(states, {one: "connected", two: "connected"})
        # Calls, not lines in calls: call two has both its parties on rgw1.
        self.assertEqual(self.get("/api/gateways/rgw1")["active_calls"], 2)
        self.assertEqual(self.request("DELETE", f"/api/calls/{one}").json()["state"], "ended")
        self.assertEqual(self.get(f"/api/calls/{two}")["state"], "connected")
        self.assertEqual(len(a2.connections) + len(b2.connections), 2)
        self.assertEqual(self.request("DELETE", f"/api/calls/{two}").json()["state"], "ended")
        for phone in (a1, b1, a2, b2):
            phone.on_hook()
        self.switch.run(0.5)
        self.assertIdle()
        self.assertEqual(self.get("/api/stats")["calls"]["outcomes"], {"admin": 2})


class Acting(RealCase):
    def test_audit_reports_the_hook(self) -> None:
        """POST .../audit sends an AUEP; the hook it reports is the phone's, off and on."""
        phone = self.phone("aaln/3@rgw1")
        before = self.counters()["commands_sent AUEP"]
        view = self.post("/api/endpoints/aaln/3@rgw1/audit").json()
        self.assertEqual((view["name"], view["state"], view["hook"]), ("aaln/3@rgw1", "idle", "on"))
        self.assertEqual(self.counters()["commands_sent AUEP"], before + 1)
        phone.off_hook()
        self.switch.run(0.5)
        self.assertIn("L/dl", phone.signals)  # dial tone
        view = self.post("/api/endpoints/" + quote("aaln/3@rgw1", safe="") + "/audit").json()
        self.assertEqual((view["hook"], view["state"]), ("off", "collecting"))
        self.assertEqual(view["hook"], phone.hook)
        phone.on_hook()
        self.switch.run(0.5)
        view = self.request("POST", "/api/endpoints/aaln/3@rgw1/audit", headers={"content-type": "application/json"})
        self.assertEqual((view.code, view.json()["hook"], view.json()["state"]), (200, "on", "idle"))
        self.assertEqual(self.counters()["commands_sent AUEP"], before + 3)
        self.assertIdle()

    def test_audit_during_a_call(self) -> None:
        """An audited endpoint in a call reports the call and its connection."""
        call_id, first, second = self.connect()
        view = self.post(f"/api/endpoints/{B}/audit").json()
        self.assertEqual((view["hook"], view["state"], view["call_id"]), ("off", "connected", call_id))
        self.assertEqual([c["connection_id"] for c in view["connections"]], [second.connections[0].connection_id])
        self.assertEqual(self.get(f"/api/calls/{call_id}")["state"], "connected")
        self.request("DELETE", f"/api/calls/{call_id}")
        first.on_hook()
        second.on_hook()
        self.switch.run(0.5)
        self.assertIdle()

    def test_gateway_out_of_service_and_back(self) -> None:
        """A gateway out of service takes no calls; back in, it is audited, up, and takes them again."""
        answer = self.post("/api/gateways/rgw2/service", {"in_service": False})
        self.assertEqual(answer.code, 200, answer.body)
        self.assertEqual((answer.json()["in_service"], answer.json()["state"]), (False, "out-of-service"))
        self.assertEqual(self.get("/api/gateways/rgw2")["state"], "out-of-service")
        self.assertEqual(self.get("/api/gateways/rgw1")["state"], "up")
        self.assertEqual({e["in_service"] for e in self.get("/api/endpoints?gateway=rgw2")["endpoints"]}, {False})
        stats = self.get("/api/stats")
        self.assertEqual((stats["gateways"]["out-of-service"], stats["endpoints"]["registered"]), (1, 8))
        self.assertError(self.post("/api/calls", {"from": A, "to": B}), 409, "conflict", "out of service")
        self.assertError(self.post("/api/calls", {"from": B, "to": A}), 409, "conflict", "out of service")
        self.assertFalse(self.phone(A).ringing)
        self.assertEqual(self.switch.control.calls(), [])

        audits = self.counters()["commands_sent AUEP"]
        answer = self.post("/api/gateways/rgw2/service", {"in_service": True})
        self.assertEqual(answer.code, 200, answer.body)
        self.assertTrue(answer.json()["in_service"])
        self.assertIn(answer.json()["state"], ("registering", "up"))
        self.run_until(lambda: self.switch.service.get_gateway("rgw2").state.value == "up", what="rgw2 up")
        self.assertEqual(self.counters()["commands_sent AUEP"], audits + 8)  # every line audited again
        self.assertEqual(self.get("/api/stats")["endpoints"]["registered"], 16)
        call_id, first, second = self.connect()
        self.request("DELETE", f"/api/calls/{call_id}")
        first.on_hook()
        second.on_hook()
        self.switch.run(0.5)
        self.assertIdle()


class Errors(RealCase):
    def test_not_found(self) -> None:
        """Unknown call, gateway, endpoint and route: 404 with the name; nothing is sent."""
        before = self.counters()
        self.assertError(self.request("GET", "/api/calls/nope"), 404, "not-found", "'nope'")
        self.assertError(self.request("DELETE", "/api/calls/nope"), 404, "not-found", "'nope'")
        self.assertError(self.request("GET", "/api/gateways/rgw9"), 404, "not-found", "'rgw9'")
        self.assertError(self.post("/api/gateways/rgw9/service", {"in_service": False}), 404, "not-found", "rgw9")
        self.assertError(self.request("GET", "/api/endpoints?gateway=rgw9"), 404, "not-found", "rgw9")
        self.assertError(self.request("GET", "/api/endpoints/aaln/9@rgw1"), 404, "not-found", "aaln/9@rgw1")
        self.assertError(self.request("GET", "/api/endpoints/aaln/1@rgw9"), 404, "not-found", "aaln/1@rgw9")
        self.assertError(self.post("/api/endpoints/aaln/9@rgw1/audit"), 404, "not-found", "aaln/9@rgw1")
        self.assertError(self.post("/api/calls", {"from": A, "to": "aaln/9@rgw2"}), 404, "not-found", "aaln/9@rgw2")
        self.assertError(self.request("GET", f"/api/endpoints/{A}/nope"), 404, "not-found")
        self.assertError(self.request("GET", "/api/gateways/rgw1/reboot"), 404, "not-found")
        self.assertError(self.request("GET", "/api/calls/x/more"), 404, "not-found")
        self.assertError(self.request("GET", "/api/stats/more"), 404, "not-found")
        self.assertError(self.request("GET", "/api/nope"), 404, "not-found", "/api/nope")
        self.assertEqual(self.counters(), before)
        self.assertIdle()

    def test_bad_requests(self) -> None:
        """Bad endpoint names, wildcards, malformed JSON, missing or mistyped fields: 400; nothing happens."""
        before = self.counters()
        self.assertError(self.request("GET", "/api/endpoints/aaln/1"), 400, "bad-request", "bad endpoint name")
        self.assertError(self.request("GET", "/api/endpoints/a%20b@rgw1"), 400, "bad-request", "bad endpoint name")
        self.assertError(self.request("GET", "/api/endpoints/aaln/*@rgw1"), 400, "bad-request", "wildcard")
        self.assertError(self.post("/api/endpoints/aaln/*@rgw1/audit"), 400, "bad-request", "wildcard")
        json_type = {"content-type": "application/json"}
        cases: list[tuple[Any, str]] = [
            ({"to": B}, "missing field 'from'"),
            ({"from": A}, "missing field 'to'"),
            ({"from": 1001, "to": B}, "must be a string"),
            ({"from": "1001", "to": B}, "bad endpoint name"),
            ({"from": "aaln/*@rgw1", "to": B}, "wildcard"),
            ({"from": A, "to": A.upper()}, "same endpoint"),
            ([A, B], "JSON object"),
        ]
        for body, reason in cases:
            self.assertError(self.post("/api/calls", body), 400, "bad-request", reason)
        self.assertError(self.request("POST", "/api/calls", data=b'{"from": "x"', headers=json_type),
                         400, "bad-request", "malformed JSON")
        self.assertError(self.request("POST", "/api/calls", data=b"", headers=json_type), 400, "bad-request", "empty")
        self.assertError(self.request("POST", "/api/calls", data=b"\xff\xfe", headers=json_type),
                         400, "bad-request", "malformed JSON")
        path = "/api/gateways/rgw1/service"
        self.assertError(self.post(path, {}), 400, "bad-request", "in_service")
        self.assertError(self.post(path, {"in_service": "no"}), 400, "bad-request", "in_service")
        self.assertError(self.request("POST", path, data=b"{nope", headers=json_type), 400, "bad-request", "malformed JSON")
        self.assertError(self.request("POST", f"/api/endpoints/{A}/audit", data=b"[1", headers=json_type),
                         400, "bad-request", "malformed JSON")
        big = json.dumps({"from": A, "to": B, "pad": "x" * 70000}).encode()
        self.assertError(self.request("POST", "/api/calls", data=big, headers=json_type), 413, "payload-too-large")
        self.assertEqual(self.counters(), before)
        self.assertEqual(self.get("/api/gateways/rgw1")["in_service"], True)
        self.assertIdle()

    def test_wrong_methods(self) -> None:
        """405 with Allow on every route, for a method it does not take."""
        cases = [
            ("PUT", "/api/calls/x", "DELETE, GET, HEAD"),
            ("PATCH", "/api/calls", "GET, POST, HEAD"),
            ("DELETE", "/api/gateways", "GET, HEAD"),
            ("GET", "/api/gateways/rgw1/service", "POST"),
            ("DELETE", f"/api/endpoints/{A}", "GET, HEAD"),
            ("GET", f"/api/endpoints/{A}/audit", "POST"),
            ("POST", "/api/stats", "GET, HEAD"),
            ("POST", "/api/events", "GET, HEAD"),
            ("POST", "/api", "GET, HEAD"),
            ("POST", "/metrics", "GET, HEAD"),
        ]
        for method, path, allow in cases:
            answer = self.request(method, path)
            self.assertError(answer, 405, "method-not-allowed", method)
            self.assertEqual(answer.header("allow"), allow, (method, path))
        self.assertIdle()

    def test_unsupported_media_type(self) -> None:
        """A POST that is not application/json is 415 and does nothing (a cross-site form cannot act)."""
        form = {"content-type": "application/x-www-form-urlencoded"}
        self.assertError(self.request("POST", "/api/calls", data=f"from={A}&to={B}".encode(), headers=form),
                         415, "unsupported-media-type")
        self.assertError(self.request("POST", "/api/gateways/rgw1/service", data=b'{"in_service": false}',
                                      headers={"content-type": "text/plain"}), 415, "unsupported-media-type")
        self.assertError(self.request("POST", f"/api/endpoints/{A}/audit"), 415, "unsupported-media-type")
        self.assertFalse(self.phone(A).ringing)
        self.assertEqual(self.get("/api/gateways/rgw1")["state"], "up")
        self.assertIdle()

    def test_busy_line_conflict(self) -> None:
        """Originating from or to a line in a call, or off hook, is call control's 409 with its reason."""
        call_id, first, second = self.connect()
        for a, b in ((A, "aaln/5@rgw1"), ("aaln/5@rgw1", B)):
            body = self.assertError(self.post("/api/calls", {"from": a, "to": b}), 409, "conflict", "busy")
            self.assertIn("connected", body["reason"])
        self.assertFalse(self.phone("aaln/5@rgw1").ringing)
        off = self.phone("aaln/6@rgw1")
        off.off_hook()
        self.switch.run(0.5)
        self.assertError(self.post("/api/calls", {"from": "aaln/6@rgw1", "to": "aaln/7@rgw1"}), 409, "conflict",
                         "(collecting)")
        self.assertEqual([c["call_id"] for c in self.get("/api/calls")["calls"]], [call_id])
        self.request("DELETE", f"/api/calls/{call_id}")
        for phone in (first, second, off):
            phone.on_hook()
        self.switch.run(0.5)
        self.assertIdle()

    def test_ended_call_conflict(self) -> None:
        """Hanging up a call that has ended is 409; the ended call stays readable."""
        call_id = self.post("/api/calls", {"from": A, "to": B}).json()["call_id"]
        self.assertEqual(self.request("DELETE", f"/api/calls/{call_id}").code, 200)
        self.assertError(self.request("DELETE", f"/api/calls/{call_id}"), 409, "conflict", "already ended")
        self.assertEqual(self.get(f"/api/calls/{call_id}")["state"], "ended")
        self.switch.run(0.5)
        self.assertIdle()


class Authentication(AuthSetup, RealCase):
    def test_required(self) -> None:
        """Without credentials every path is refused and call control is not touched."""
        before = self.switch.service.transaction_stats()["counters"]
        for path in ("/", "/static/app.js", "/api", "/api/gateways", f"/api/endpoints/{A}", "/api/calls",
                     "/api/stats", "/api/events", "/metrics"):
            self.assertRefused(self.request("GET", path), "authentication required")
        self.assertRefused(self.post("/api/calls", {"from": A, "to": B}), "authentication required")
        self.assertRefused(self.post(f"/api/endpoints/{A}/audit"), "authentication required")
        self.assertRefused(self.post("/api/gateways/rgw1/service", {"in_service": False}), "authentication required")
        self.assertFalse(self.phone(A).ringing)
        self.assertEqual(self.switch.service.get_gateway("rgw1").in_service, True)
        self.assertEqual(self.switch.service.transaction_stats()["counters"], before)
        self.assertEqual(self.switch.control.calls(), [])

    def test_refused(self) -> None:
        """Wrong password, unknown user, wrong token, malformed or unknown scheme: 401, nothing done."""
        self.assertRefused(self.post("/api/calls", {"from": A, "to": B}, headers=basic("alice", "nope")),
                           "bad credentials")
        self.assertRefused(self.post("/api/calls", {"from": A, "to": B}, headers=basic("bob", "wonderland")),
                           "bad credentials")
        self.assertRefused(self.request("DELETE", "/api/calls/x", headers={"authorization": "Bearer s3cret"}),
                           "bad credentials")
        self.assertRefused(self.request("GET", "/api/calls", headers={"authorization": "Basic !!!"}), "malformed")
        self.assertRefused(self.request("GET", "/api/calls", headers={"authorization": "Digest x=1"}),
                           "unsupported authorization scheme")
        self.assertFalse(self.phone(A).ringing)
        self.assertEqual(self.switch.control.calls(), [])

    def test_basic_user_places_and_ends_a_call(self) -> None:
        """With a users file, Basic credentials read the switch and act on it."""
        auth = basic("alice", "wonderland")
        gateways = self.get("/api/gateways", headers=auth)["gateways"]
        self.assertEqual({g["state"] for g in gateways}, {"up"})
        answer = self.post("/api/calls", {"from": A, "to": B}, auth=("alice", "wonderland"))
        self.assertEqual(answer.code, 201, answer.body)
        call_id = answer.json()["call_id"]
        self.assertTrue(self.phone(A).ringing)
        self.assertEqual(self.request("DELETE", f"/api/calls/{call_id}", headers=auth).json()["cause"], "admin")
        self.switch.run(0.5)
        self.assertIdle_with(auth)

    def test_token(self) -> None:
        """A bearer token reads and acts; /metrics and the page too."""
        good = {"authorization": "Bearer " + TOKEN}
        self.assertEqual(self.get("/api/stats", headers=good)["endpoints"], {"total": 16, "registered": 16})
        self.assertEqual(self.request("GET", "/metrics", headers=good).code, 200)
        self.assertEqual(self.request("GET", "/", headers=good).code, 200)
        view = self.post(f"/api/endpoints/{A}/audit", headers=good).json()
        self.assertEqual((view["state"], view["hook"]), ("idle", "on"))
        answer = self.post("/api/gateways/rgw1/service", {"in_service": False}, headers=good)
        self.assertEqual(answer.json()["state"], "out-of-service")
        answer = self.post("/api/gateways/rgw1/service", {"in_service": True}, headers=good)
        self.assertTrue(answer.json()["in_service"])
        self.run_until(lambda: self.switch.service.get_gateway("rgw1").state.value == "up", what="rgw1 up")
        self.assertIdle_with(good)

    def assertIdle_with(self, headers: dict[str, str]) -> None:
        self.assertTrue(self.switch.idle())
        endpoints = self.get("/api/endpoints", headers=headers)["endpoints"]
        self.assertEqual({(e["state"], e["hook"]) for e in endpoints}, {("idle", "on")})


class Events(RealCase):
    def test_a_real_call_streamed(self) -> None:
        """
        A call originated through the API, answered and hung up shows in the
        stream: call-started, call-state-changed up to connected, the lines'
        endpoint-state-changed, call-ended with its CDR; a gateway taken out
        of service and back shows as gateway-state-changed.
        """
        reader = self.open_stream()
        self.assertTrue(b"".join(reader.chunks).startswith(b"retry: 3000\n"))
        self.assertEqual(self.frames(reader), [])
        [(_, sample)] = self.frames(reader, stats=True)
        self.assertEqual(sample["active_calls"], 0)
        self.assertGreater(sample["transactions"], 16)  # at least the 16 audits of registration
        call_id, first, second = self.connect()
        self.request("DELETE", f"/api/calls/{call_id}")
        first.on_hook()
        second.on_hook()
        self.switch.run(0.5)
        self.stub.flush()
        self.assertIdle()
        events = self.frames(reader)
        names = [name for name, _ in events]

        calls = [(name, data["call"]["state"]) for name, data in events if name.startswith("call-")]
        self.assertEqual(calls, [
            ("call-started", "setup"),
            ("call-state-changed", "alerting"),
            ("call-state-changed", "connected"),
            ("call-state-changed", "releasing"),
            ("call-ended", "ended"),
        ])
        for name, data in events:
            if name.startswith("call-"):
                self.assertEqual(data["call"]["call_id"], call_id)
                self.assertNotIn("ladder", data["call"])
        [ended] = [data for name, data in events if name == "call-ended"]
        self.assertEqual((ended["call"]["cause"], ended["record"]["cause"]), ("admin", "admin"))
        self.assertEqual((ended["record"]["caller"], ended["record"]["callee"]), ("1001", "2002"))
        changed = [data for name, data in events if name == "call-state-changed"]
        self.assertEqual([c["previous"] for c in changed], ["setup", "alerting", "connected"])

        def states(endpoint: str) -> list[str]:
            return [data["endpoint"]["state"] for name, data in events
                    if name == "endpoint-state-changed" and data["endpoint"]["name"] == endpoint]

        self.assertEqual(states(A)[0], "ringing")
        self.assertIn("connected", states(A))
        self.assertEqual(states(A)[-1], "idle")
        self.assertEqual(states(B)[0], "ringing")
        self.assertIn("connected", states(B))
        self.assertEqual(states(B)[-1], "idle")
        self.assertEqual(names.index("call-started"), 0)
        self.assertLess(names.index("call-ended"), len(names))

        del reader.chunks[:]
        self.post("/api/gateways/rgw2/service", {"in_service": False})
        self.post("/api/gateways/rgw2/service", {"in_service": True})
        self.run_until(lambda: self.switch.service.get_gateway("rgw2").state.value == "up", what="rgw2 up")
        self.switch.run(0.1)
        self.stub.flush()
        gateways = [(d["gateway"]["name"], d["previous"], d["gateway"]["state"])
                    for name, d in self.frames(reader) if name == "gateway-state-changed"]
        self.assertEqual(gateways, [
            ("rgw2", "up", "out-of-service"),
            ("rgw2", "out-of-service", "registering"),
            ("rgw2", "registering", "up"),
        ])

    def test_keepalive_on_the_switch_clock(self) -> None:
        """A comment line every 15 s of the switch's clock; hanging up unsubscribes."""
        reader = self.open_stream()
        del reader.chunks[:]
        self.switch.run(15.1)
        self.stub.flush()
        self.assertIn(b": keepalive\n\n", b"".join(reader.chunks))
        self.assertEqual(self.frames(reader), [])  # an idle switch has nothing to say
        self.close_stream(reader)
        del reader.chunks[:]
        self.post("/api/calls", {"from": A, "to": B})
        self.switch.run(0.5)
        self.stub.flush()
        self.assertEqual(reader.chunks, [])


C = "aaln/3@rgw1"  # directory number 1003


class Services(RealCase):
    """A line's services through the admin (issue 13), as the real call control applies them."""

    def patch(self, endpoint: str, body: Any) -> Answer:
        return self.request("PATCH", f"/api/endpoints/{quote(endpoint, safe='')}/services", json=body)

    def test_message_waiting_and_dnd(self) -> None:
        """
        message_waiting lights the idle line's indicator (L/vmwi) at once;
        dnd makes the line refuse calls: a call to it ends do-not-disturb
        and it never rings (a caller hears busy).  Both are in the line's
        view and on the stream.
        """
        reader = self.open_stream()
        answer = self.patch(A, {"message_waiting": True})
        self.assertEqual(answer.code, 200, answer.body)
        self.assertTrue(answer.json()["services"]["message_waiting"])
        self.run_until(lambda: "L/vmwi" in self.phone(A).signals, what="the indicator on")
        view = self.patch(B, {"dnd": True, "forward_no_answer": "1004"}).json()
        self.assertEqual((view["services"]["dnd"], view["services"]["forward_no_answer"]), (True, "1004"))
        self.assertEqual(self.get(f"/api/endpoints/{B}")["services"], view["services"])
        self.run_until(lambda: b"".join(reader.chunks).count(b"event: line-services-changed") == 2,
                       what="both changes streamed")
        changed = [data for name, data in self.frames(reader) if name == "line-services-changed"]
        self.assertEqual([(d["endpoint"], d["services"]["message_waiting"], d["services"]["dnd"]) for d in changed],
                         [(A, True, False), (B, False, True)])

        first = self.phone(A)
        first.off_hook()
        self.switch.run(0.5)
        first.dial("2002", gap=0.05)
        self.run_until(lambda: "L/bz" in first.signals, what="busy tone for the caller")
        [call] = [c for c in self.get("/api/calls")["calls"] if c["caller"] == A]
        self.assertEqual((call["state"], call["callee"], call["cause"]), ("ended", B, "do-not-disturb"))
        self.assertFalse(self.phone(B).ringing)
        first.on_hook()
        self.patch(A, {"message_waiting": False})
        self.run_until(lambda: "L/vmwi" not in self.phone(A).signals, what="the indicator off")
        self.switch.run(0.5)
        self.assertIdle()

    def test_by_number_and_refusals(self) -> None:
        """The real call control refuses nothing the API let through; the API refuses the mistakes first."""
        self.assertError(self.patch(B, {"dnd": 1}), 400, "bad-request", "dnd must be true or false")
        self.assertError(self.patch(B, {"colour": "red"}), 400, "bad-request", "unknown service 'colour'")
        self.assertError(self.patch("aaln/9@rgw2", {"dnd": True}), 404, "not-found")
        self.assertFalse(self.switch.service.get_endpoint(B).services.dnd)
        self.assertEqual(self.get(f"/api/endpoints/{B}/services")["call_waiting"], True)

    def test_call_waiting_and_hold_show(self) -> None:
        """
        A talks to B; C calls B: B's line shows the new call waiting, the
        call's B leg is marked waiting; B flashes: the first call is held,
        the second answered.  Endpoint, calls and the call's page say so.
        """
        first_id, a, b = self.connect()
        c = self.phone(C)
        c.off_hook()
        self.switch.run(0.5)
        c.dial("2002", gap=0.05)
        self.run_until(lambda: len(self.get(f"/api/endpoints/{B}")["calls"]) == 2, what="a second call on B")
        line = self.get(f"/api/endpoints/{B}")
        [second_id] = [x for x in line["calls"] if x != first_id]
        self.assertEqual(line["waiting"], [second_id])
        legs = {leg["endpoint"]: leg for leg in self.get(f"/api/calls/{second_id}")["legs"]}
        self.assertTrue(legs[B]["waiting"])
        self.assertFalse(legs[C]["waiting"])

        self.run_until(lambda: "L/wt" in b.signals, what="the call-waiting tone")
        b.flash()
        self.run_until(lambda: self.get(f"/api/endpoints/{B}")["held"] == [first_id], what="the first call held")
        self.run_until(lambda: self.get(f"/api/calls/{second_id}")["state"] == "connected", what="C answered")
        held = {leg["endpoint"]: leg for leg in self.get(f"/api/calls/{first_id}")["legs"]}
        self.assertTrue(held[B]["held"])
        self.assertEqual(self.get(f"/api/endpoints/{B}")["waiting"], [])
        page = self.request("GET", f"/calls/{first_id}")
        self.assertIn(b'"held":true', page.body)

        for phone in (a, b, c):
            phone.on_hook()
        self.run_until(lambda: self.switch.control.calls() == [], what="every call ended")
        self.switch.run(1.0)
        self.assertIdle()


@implementer(IClusterMember)
class Member:
    """
    The cluster membership of an agent, played by the test (the real one
    needs PostgreSQL: tests/test_cluster_*): a standby while another agent
    (C{OTHER}) holds the lease, then active when the test elects it.
    """

    def __init__(self, name: str, store: Any) -> None:
        self.name = name
        self.store = store
        self.role = Role.STANDBY
        self.epoch = 6
        self.holder: Any = OTHER
        self.became_active: Any = None
        self.lost_leadership: Any = None

    @property
    def call_id_prefix(self) -> Any:
        return call_id_prefix(self.epoch) if self.role is Role.ACTIVE else None

    def holds_lease(self) -> bool:
        return self.role is Role.ACTIVE

    def view(self) -> ClusterView:
        takeovers = 1 if self.role is Role.ACTIVE else 0
        return ClusterView(self.name, self.role, self.epoch, self.holder, 0.25, 1_700_000_000.0, takeovers,
                           {"store_refused_rows": 3, "leadership_renewals": 9})

    def elect(self) -> None:
        """The other agent is gone: this one takes the next epoch."""
        self.role, self.epoch, self.holder = Role.ACTIVE, self.epoch + 1, self.name
        self.became_active(self.epoch)


OTHER = "ca-b@127.0.0.4:2727"


class Standby(RealCase):
    """
    The admin of the real call control while it stands by in a cluster:
    it shows what it knows, refuses every change with 503 naming the
    active agent, and takes changes once it is elected.
    """

    def setUp(self) -> None:  # not RealCase's: the gateways start when the agent is elected
        self.member = Member("ca-a@127.0.0.1:2727", MemoryStore())
        member = self.member

        class Clustered(Switch):
            def _agent(self) -> CallControlService:
                return CallControlService(
                    self.reactor, self.settings, StaticDialPlan.from_settings(self.settings), self.profiles,
                    [self.recorder], random_source=random.Random(self.seed), cluster=member,
                )

        self.switch = Clustered(start=False, keepalive=0)
        self.addCleanup(self.switch.stop)
        verifyObject(IClusterMember, member)
        self.switch.service.startService()
        self.site = make_site(self.switch.service, self.settings, self.switch.reactor)
        self.stub = StubTreq(self.site.resource)

    def test_read_only_until_elected(self) -> None:
        """Standing by: stats say so, metrics too, every change is 503; elected: the same admin changes things."""
        cluster = self.get("/api/stats")["cluster"]
        self.assertEqual((cluster["role"], cluster["epoch"], cluster["holder"], cluster["read_only"]),
                         ("standby", 6, OTHER, f"this call agent stands by: make changes at the active agent ({OTHER})"))
        self.assertEqual(len(self.get("/api/endpoints")["endpoints"]), 16)  # it shows what it knows
        for method, path, body in (
            ("PATCH", f"/api/endpoints/{A}/services", {"dnd": True}),
            ("POST", "/api/calls", {"from": A, "to": B}),
            ("POST", f"/api/endpoints/{A}/audit", {}),
            ("POST", "/api/gateways/rgw1/service", {"in_service": False}),
        ):
            answer = self.request(method, path, json=body)
            self.assertEqual((answer.code, answer.json()["error"], answer.json()["active"]), (503, "standby", OTHER),
                             (method, path))
        self.assertFalse(self.switch.service.get_endpoint(A).services.dnd)
        metrics = self.request("GET", "/metrics").body.decode()
        self.assertIn('mgcp_cluster_role{role="standby"} 1.0', metrics)
        self.assertIn("mgcp_cluster_store_rows_refused_total 3.0", metrics)
        self.assertEqual(self.switch.network.log, [])  # a standby commands nothing

        self.member.elect()
        self.switch.gw1.start()
        self.switch.gw2.start()
        self.switch.run(3.0)
        self.assertTrue(self.switch.registered())
        cluster = self.get("/api/stats")["cluster"]
        self.assertEqual((cluster["role"], cluster["epoch"], cluster["read_only"]), ("active", 7, None))
        answer = self.request("PATCH", f"/api/endpoints/{A}/services", json={"dnd": True})
        self.assertEqual(answer.code, 200, answer.body)
        self.assertTrue(self.switch.service.get_endpoint(A).services.dnd)
        self.assertIn('mgcp_cluster_role{role="active"} 1.0', self.request("GET", "/metrics").body.decode())
