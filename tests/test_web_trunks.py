"""
The trunks' faces (issue 18) against a L{FakeCallControl}: C{GET
/api/trunks} and C{/api/trunks/NAME}, the trunk families of C{/metrics}
(none without trunks), the page's embedded state and the event stream's
samples; and the call control service's side, with a real call in from a
SIP trunk on the in-memory network.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import treq
from treq.testing import StubTreq
from zope.interface.verify import verifyObject

from mgcpswitch.interfaces import ICallControl
from mgcpswitch.web import WebSettings, make_site

from .support.web import WebCase
from .test_agent_trunks import Trunked
from .test_web_overload import scrape
from .test_web_page import embedded


class Api(WebCase):
    def test_list(self) -> None:
        """GET /api/trunks: every trunk by name, with its state, registration, channels, counters and calls."""
        body = self.request("GET", "/api/trunks").json()
        self.assertEqual(body["now"], self.clock.seconds())
        self.assertEqual([t["name"] for t in body["trunks"]], ["backup", "provider"])
        provider = body["trunks"][1]
        self.assertEqual(
            {k: provider[k] for k in ("kind", "peer", "state", "registration", "channels_in_use", "max_channels",
                                      "calls_out", "calls_in", "answered_out", "answered_in", "refused_full", "calls")},
            {"kind": "sip", "peer": "192.0.2.10:5060", "state": "up", "registration": "registered",
             "channels_in_use": 2, "max_channels": 30, "calls_out": 12, "calls_in": 5, "answered_out": 9,
             "answered_in": 4, "refused_full": 1, "calls": []},
        )
        self.assertEqual(provider["statuses"], {"in 200": 4, "in 487": 1, "out 200": 9, "out 486": 2})
        self.assertEqual(provider["messages"]["retransmissions"], 3)

    def test_one(self) -> None:
        """GET /api/trunks/NAME (any case) is one trunk with the calls on it; an unknown name is 404 naming the others."""
        self.fake.trunks["provider"] = replace(self.fake.trunks["provider"], calls=("c1",))
        self.assertEqual(self.request("GET", "/api/trunks/Provider").json()["calls"], ["c1"])
        self.assertEqual(self.request("GET", "/api/trunks/backup").json()["state"], "down")
        self.assertError(self.request("GET", "/api/trunks/nope"), 404, "not-found", "trunks: backup, provider")
        self.assertError(self.request("GET", "/api/trunks/provider/more"), 404, "not-found")
        self.assertError(self.request("POST", "/api/trunks", json={}), 405, "method-not-allowed")
        self.fake.trunks.clear()
        self.assertEqual(self.request("GET", "/api/trunks").json()["trunks"], [])
        self.assertError(self.request("GET", "/api/trunks/provider"), 404, "not-found", "none configured")

    def test_listed(self) -> None:
        """/api lists the trunk routes."""
        paths = {r["path"] for r in self.request("GET", "/api").json()["routes"]}
        self.assertLessEqual({"/api/trunks", "/api/trunks/NAME"}, paths)


class Metrics(WebCase):
    def test_gauges_and_counters(self) -> None:
        """Each trunk's state and registration as labelled gauges, channels, calls, statuses and SIP messages."""
        self.fake.trunks["provider"] = replace(self.fake.trunks["provider"], calls=("c1", "c7"))
        samples = scrape(self)
        provider = {k: v for k, v in samples.items() if k.startswith("mgcp_trunk") and "trunk=provider" in k}
        self.assertEqual(provider, {
            "mgcp_trunk_state,state=unknown,trunk=provider": 0, "mgcp_trunk_state,state=up,trunk=provider": 1,
            "mgcp_trunk_state,state=down,trunk=provider": 0,
            "mgcp_trunk_registration,state=none,trunk=provider": 0,
            "mgcp_trunk_registration,state=registering,trunk=provider": 0,
            "mgcp_trunk_registration,state=registered,trunk=provider": 1,
            "mgcp_trunk_registration,state=failed,trunk=provider": 0,
            "mgcp_trunk_channels_in_use,trunk=provider": 2, "mgcp_trunk_channels,trunk=provider": 30,
            "mgcp_trunk_calls_in_progress,trunk=provider": 2,
            "mgcp_trunk_calls_total,direction=out,trunk=provider": 12,
            "mgcp_trunk_calls_total,direction=in,trunk=provider": 5,
            "mgcp_trunk_calls_answered_total,direction=out,trunk=provider": 9,
            "mgcp_trunk_calls_answered_total,direction=in,trunk=provider": 4,
            "mgcp_trunk_calls_refused_full_total,trunk=provider": 1,
            "mgcp_trunk_final_statuses_total,code=200,direction=in,trunk=provider": 4,
            "mgcp_trunk_final_statuses_total,code=487,direction=in,trunk=provider": 1,
            "mgcp_trunk_final_statuses_total,code=200,direction=out,trunk=provider": 9,
            "mgcp_trunk_final_statuses_total,code=486,direction=out,trunk=provider": 2,
            "mgcp_trunk_sip_messages_total,event=received,trunk=provider": 160,
            "mgcp_trunk_sip_messages_total,event=sent,trunk=provider": 171,
            "mgcp_trunk_sip_messages_total,event=malformed,trunk=provider": 1,
            "mgcp_trunk_sip_messages_total,event=stray_responses,trunk=provider": 0,
            "mgcp_trunk_sip_messages_total,event=retransmissions,trunk=provider": 3,
            "mgcp_trunk_sip_transactions,trunk=provider": 2, "mgcp_trunk_sip_dialogs,trunk=provider": 2,
        })
        self.assertEqual((samples["mgcp_trunk_state,state=down,trunk=backup"],
                          samples["mgcp_trunk_calls_in_progress,trunk=backup"]), (1, 0))

    def test_none_without_trunks(self) -> None:
        """A switch with no trunk exports no trunk family."""
        self.fake.trunks.clear()
        self.assertEqual([k for k in scrape(self) if k.startswith("mgcp_trunk")], [])


class Page(WebCase):
    def test_embedded_and_sampled(self) -> None:
        """The page embeds the trunks; each stats sample carries them as they are then (a trunk going down)."""
        self.assertEqual([t["name"] for t in embedded(self.request("GET", "/"), "initial-state")["trunks"]],
                         ["backup", "provider"])
        chunks: list[bytes] = []
        self.stub.get("http://admin.test/api/events", unbuffered=True).addCallback(
            lambda r: treq.collect(r, chunks.append))
        self.stub.flush()
        from mgcpswitch.trunk import TrunkState

        self.fake.trunks["provider"] = replace(self.fake.trunks["provider"], state=TrunkState.DOWN)
        self.clock.advance(1)
        self.stub.flush()
        samples = [json.loads(f.split(b"data: ")[1]) for f in b"".join(chunks).split(b"\n\n")
                   if f.startswith(b"event: stats")]
        self.assertEqual([[(t["name"], t["state"]) for t in s["trunks"]] for s in samples],
                         [[("backup", "down"), ("provider", "up")], [("backup", "down"), ("provider", "down")]])


class OfTheRealCallControl(Trunked):
    def test_a_call_in_shows_on_its_trunk(self) -> None:
        """
        The call control service provides the new ICallControl methods:
        a call in from the trunk is listed on it (API, metrics) while it
        lasts, with the trunk's own channel and counts, and gone after.
        """
        s, far = self.switch()
        verifyObject(ICallControl, s.service)
        site = make_site(s.service, WebSettings(), s.reactor)
        web = StubTreq(site.resource)

        def get(path: str) -> Any:
            answers: list[Any] = []
            web.get("http://admin.test" + path).addCallback(treq.content).addCallback(answers.append)
            web.flush()
            return answers[0]

        [idle] = s.service.list_trunks()
        self.assertEqual((idle.name, idle.calls, idle.channels_in_use), ("provider", (), 0))
        far.call("2001")
        s.run(1.0)
        s.phone("2001").off_hook()
        s.run(0.5)
        [call] = [c.call_id for c in s.service.list_calls()]
        view = s.service.get_trunk("PROVIDER")
        self.assertEqual((view.calls, view.channels_in_use, view.calls_in, view.answered_in), ((call,), 1, 1, 1))
        self.assertIsNone(s.service.get_trunk("nope"))
        self.assertEqual(json.loads(get("/api/trunks/provider"))["calls"], [call])
        self.assertIn(b'mgcp_trunk_calls_in_progress{trunk="provider"} 1.0', get("/metrics"))
        [far_call] = far.trunk.channels
        far_call.hang_up()
        s.run(0.5)
        s.phone("2001").on_hook()
        self.settled(s, far)
        self.assertEqual(json.loads(get("/api/trunks"))["trunks"][0]["calls"], [])
