"""
The pages come with the state they show (issue 17: the first paint said
"connecting..." over empty tables): C{/} embeds what the API answers at that
instant, C{/calls/ID} the call's flow; the data block cannot be broken out
of; an unknown call is a 404 page.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from .support.web import FLOW, Answer, WebCase, flow_call


def embedded(answer: Answer, name: str) -> Any:
    """The JSON of the page's <script type="application/json" id=NAME> block."""
    found = re.search(rb'<script type="application/json" id="' + name.encode() + rb'">(.*?)</script>', answer.body,
                      re.DOTALL)
    assert found is not None, answer.body[:500]
    return json.loads(found.group(1))


class IndexPage(WebCase):
    def test_state_embedded(self) -> None:
        """GET / carries the answers of /api/gateways, /api/endpoints, /api/calls and /api/stats."""
        page = self.request("GET", "/")
        self.assertEqual(page.code, 200)
        self.assertNotIn(b"{{state}}", page.body)
        self.assertNotIn(b"connecting", page.body)
        state = embedded(page, "initial-state")
        self.assertEqual(state["now"], self.clock.seconds())
        self.assertEqual(state["gateways"], self.request("GET", "/api/gateways").json()["gateways"])
        self.assertEqual(state["endpoints"], self.request("GET", "/api/endpoints").json()["endpoints"])
        self.assertEqual(state["calls"], self.request("GET", "/api/calls").json()["calls"])
        self.assertEqual(state["stats"], self.request("GET", "/api/stats").json())

    def test_state_is_current(self) -> None:
        """Each load embeds the state of that moment."""
        self.post("/api/calls", {"from": "aaln/3@gw1.example.net", "to": "aaln/4@gw1.example.net"})
        calls = {c["call_id"]: c["state"] for c in embedded(self.request("GET", "/"), "initial-state")["calls"]}
        self.assertEqual(calls["call-1"], "alerting")

    def test_cannot_break_out(self) -> None:
        """Text from the network (a dialled string) cannot close the data block or open a tag."""
        hostile = "</script><script>alert(1)</script><!--&"
        self.fake.calls["c1"] = replace(self.fake.calls["c1"], dialled=hostile)
        page = self.request("GET", "/")
        self.assertEqual(page.body.count(b"</script>"), 3)  # common.js, app.js and the data block
        self.assertNotIn(b"<!--&", page.body)
        calls = {c["call_id"]: c for c in embedded(page, "initial-state")["calls"]}
        self.assertEqual(calls["c1"]["dialled"], hostile)

    def test_headers(self) -> None:
        """The page is never cached and keeps its strict policy: no inline script runs."""
        page = self.request("GET", "/")
        self.assertEqual(page.header("cache-control"), "no-cache")
        self.assertEqual(page.header("content-security-policy"),
                         "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        self.assertEqual(page.header("content-type"), "text/html; charset=utf-8")


class CallPage(WebCase):
    def setUp(self) -> None:
        super().setUp()
        self.fake.calls["c9"] = flow_call(self.clock.seconds() - 5)

    def test_flow_embedded(self) -> None:
        """GET /calls/ID carries the call's flow, as /api/calls/ID/flow answers it."""
        page = self.request("GET", "/calls/c9")
        self.assertEqual((page.code, page.header("content-type")), (200, "text/html; charset=utf-8"))
        flow = embedded(page, "initial-flow")
        self.assertEqual(flow, self.request("GET", "/api/calls/c9/flow").json())
        self.assertEqual([(m["label"], m["source"], m["target"], m["retransmission"], m["piggybacked"])
                          for m in flow["messages"]], FLOW)
        self.assertIn(b'src="/static/call.js"', page.body)

    def test_unknown(self) -> None:
        """An unknown call, no call, or more path: a 404 page."""
        for path in ("/calls/nope", "/calls/", "/calls", "/calls/c9/more"):
            answer = self.request("GET", path)
            self.assertEqual(answer.code, 404, path)
            self.assertIn(b"No such call", answer.body)
