"""
The faces of the phone services (issue 13) in the JSON API, against a
L{FakeCallControl}: a line's services read and changed with
C{PATCH /api/endpoints/EP/services} (each mistake a 4xx naming the field,
before call control is asked), changes told on the event stream, and a
call's parties (held, waiting, three-way) and history (forwarded,
transferred, related) in the call's JSON, its flow and the page that
embeds it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import treq

from mgcpswitch.errors import CallControlError

from .support.fake_control import GW1
from .support.web import WebCase, three_way
from .test_web_page import embedded

A1, A2, A3, A4 = (f"aaln/{n}@{GW1}" for n in (1, 2, 3, 4))
PLAIN = {
    "name": None, "private": False, "call_waiting": True, "three_way": True, "transfer": True,
    "transfer_on_hangup": False, "forward_always": None, "forward_busy": None, "forward_no_answer": None,
    "dnd": False, "message_waiting": False,
}


class Services(WebCase):
    def patch(self, endpoint: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", f"/api/endpoints/{quote(endpoint, safe='')}/services", json=body, **kwargs)

    def test_read(self) -> None:
        """A line's services are in its endpoint view, and on their own at .../services."""
        view = self.request("GET", f"/api/endpoints/{quote(A3, safe='')}").json()
        self.assertEqual(view["services"], dict(PLAIN, forward_busy="1004", message_waiting=True))
        self.assertEqual(self.request("GET", f"/api/endpoints/{A3}/services").json(), view["services"])
        listed = {e["name"]: e["services"] for e in self.request("GET", "/api/endpoints").json()["endpoints"]}
        self.assertEqual(listed[A4], PLAIN)

    def test_change(self) -> None:
        """PATCH changes the fields named, leaves the others, and answers the endpoint as it is now."""
        answer = self.patch(A4, {"dnd": True, "forward_always": "1003", "name": "Dora"})
        self.assertEqual(answer.code, 200)
        view = answer.json()
        self.assertEqual((view["name"], view["number"]), (A4, "1004"))
        self.assertEqual(view["services"], dict(PLAIN, dnd=True, forward_always="1003", name="Dora"))
        self.assertEqual(self.fake.actions, [("services", A4, {"dnd": True, "forward_always": "1003", "name": "Dora"})])
        # null clears a number; the other fields stay.
        view = self.patch(A4, {"forward_always": None}).json()
        self.assertEqual(view["services"], dict(PLAIN, dnd=True, name="Dora"))
        self.assertEqual(self.request("GET", f"/api/endpoints/{A4}").json(), view)

    def test_refusals_name_the_field(self) -> None:
        """Each mistake is a 4xx with a JSON reason (naming the field), and call control is not asked."""
        for body, reason in (
            (["dnd"], "the body must be a JSON object"),
            ({"bogus": True}, "unknown service 'bogus'"),
            ({"dnd": "yes"}, "dnd must be true or false"),
            ({"message_waiting": 1}, "message_waiting must be true or false"),
            ({"forward_busy": 2003}, "forward_busy must be a number of digits"),
            ({"forward_always": "20 03"}, "forward_always must be a number of digits"),
            ({"name": "x" * 65}, "name must be text of at most 64 characters"),
        ):
            self.assertError(self.patch(A4, body), 400, "bad-request", reason)
        path = f"/api/endpoints/{A4}/services"
        self.assertError(self.request("PATCH", path, data=b'{"dnd": tru', headers={"content-type": "application/json"}),
                         400, "bad-request", "malformed JSON body")
        self.assertError(self.request("PATCH", path, data=b"", headers={"content-type": "application/json"}),
                         400, "bad-request", "the body is empty")
        # A cross-site form cannot send JSON: a PATCH without it is refused like a POST.
        self.assertError(self.request("PATCH", path, data=b"dnd=true",
                                      headers={"content-type": "application/x-www-form-urlencoded"}),
                         415, "unsupported-media-type")
        self.assertError(self.patch(f"aaln/9@{GW1}", {"dnd": True}), 404, "not-found", f"unknown endpoint 'aaln/9@{GW1}'")
        self.assertError(self.patch("*@" + GW1, {"dnd": True}), 400, "bad-request", "wildcard")
        answer = self.request("POST", path, json={"dnd": True})
        self.assertError(answer, 405, "method-not-allowed")
        self.assertEqual(answer.header("allow"), "GET, PATCH, HEAD")
        self.assertEqual(self.fake.actions, [])

    def test_call_control_refuses(self) -> None:
        """What call control itself refuses is a 409 with its reason."""
        self.fake.fail_next = CallControlError("the line is being removed")
        self.assertError(self.patch(A4, {"dnd": True}), 409, "conflict", "the line is being removed")

    def test_body_limit(self) -> None:
        """A body over the admin's limit is refused (413) as for every write, whatever its method."""
        answer = self.request("PATCH", f"/api/endpoints/{A4}/services", data=b"{" + b" " * 70_000 + b"}",
                              headers={"content-type": "application/json"})
        self.assertError(answer, 413, "payload-too-large")
        self.assertEqual(self.fake.actions, [])

    def test_change_is_streamed(self) -> None:
        """A change goes out on the event stream as line-services-changed, for every page open."""
        frames: list[bytes] = []
        d = self.stub.get("http://admin.test/api/events", unbuffered=True)
        d.addCallback(lambda r: treq.collect(r, frames.append))
        self.stub.flush()
        self.patch(A4, {"message_waiting": True})
        self.stub.flush()
        events = [f for f in b"".join(frames).split(b"\n\n") if f.startswith(b"event: line-services-changed")]
        self.assertEqual(len(events), 1)
        data = json.loads(events[0].split(b"data: ")[1])
        self.assertEqual((data["endpoint"], data["services"]), (A4, dict(PLAIN, message_waiting=True)))


class CallParties(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.fake.calls["c7"] = three_way(self.clock.seconds() - 10)

    def test_call_json(self) -> None:
        """A call shows each party's flags and how it came about, in the list and on its own."""
        call = self.request("GET", "/api/calls/c7").json()
        self.assertEqual([(leg["endpoint"], leg["held"], leg["waiting"], leg["conference"]) for leg in call["legs"]],
                         [(A1, False, False, True), (A3, True, False, False), (A4, False, True, False)])
        self.assertEqual((call["forwarded_from"], call["transferred_by"], call["related"]), (A2, A1, ["c5", "c6"]))
        listed = {c["call_id"]: c for c in self.request("GET", "/api/calls").json()["calls"]}
        self.assertEqual(listed["c7"]["legs"], call["legs"])
        self.assertEqual(listed["c7"]["related"], ["c5", "c6"])

    def test_call_page(self) -> None:
        """The call's page embeds its parties and history with its flow."""
        flow = embedded(self.request("GET", "/calls/c7"), "initial-flow")
        self.assertEqual(flow["call"]["legs"][1]["held"], True)
        self.assertEqual(flow["call"]["forwarded_from"], A2)
        page = self.request("GET", "/calls/c7")
        self.assertIn(b'<table id="legs">', page.body)

    def test_endpoint_calls(self) -> None:
        """An endpoint view says which of its calls are held or waiting, and whether they are joined."""
        self.fake.endpoints[A1] = replace(self.fake.endpoints[A1], calls=("c1", "c7"), held=("c1",), conference=True)
        view = self.request("GET", f"/api/endpoints/{A1}").json()
        self.assertEqual((view["calls"], view["held"], view["waiting"], view["conference"]), (["c1", "c7"], ["c1"], [], True))
