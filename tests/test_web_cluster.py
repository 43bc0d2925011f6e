"""
The faces of redundant agents (issue 14) in the JSON API, the page and
C{/metrics}, against a L{FakeCallControl}: C{/api/stats} (and the event
stream's samples, and the page's embedded state) carry the agent's place
in its cluster, or null for a single agent; a standby's admin is
read-only, every change answered 503 with the active agent's name; the
cluster's gauges and counters are scraped only from an agent that is in
a cluster.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families

from .support.fake_control import ACTIVE, GW1, STANDBY, T0
from .support.web import WebCase
from .test_web_page import embedded

A1, A3, A4 = (f"aaln/{n}@{GW1}" for n in (1, 3, 4))
REFUSAL = f"this call agent stands by: make changes at the active agent ({ACTIVE})"

#: Every change the admin offers: (method, path, body).
CHANGES = [
    ("POST", "/api/calls", {"from": A3, "to": A4}),
    ("DELETE", "/api/calls/c1", None),
    ("POST", f"/api/endpoints/{A3}/audit", {}),
    ("POST", f"/api/gateways/{GW1}/service", {"in_service": False}),
    ("PATCH", f"/api/endpoints/{A3}/services", {"dnd": True}),
]


class Stats(WebCase):
    def test_single_agent(self) -> None:
        """A single agent's stats say cluster: null."""
        self.assertIsNone(self.request("GET", "/api/stats").json()["cluster"])

    def test_standby(self) -> None:
        """A standby's stats: its name and role, the active, the epoch, the lease's age, why it is read-only."""
        self.fake.stand_by()
        cluster = self.request("GET", "/api/stats").json()["cluster"]
        self.assertEqual(
            {k: cluster[k] for k in ("name", "role", "epoch", "holder", "lease_age", "last_takeover", "takeovers")},
            {"name": STANDBY, "role": "standby", "epoch": 7, "holder": ACTIVE, "lease_age": 0.4,
             "last_takeover": T0 + 40, "takeovers": 0},
        )
        self.assertEqual(cluster["read_only"], REFUSAL)
        self.assertEqual(cluster["counters"]["leadership_renewals"], 480)

    def test_active(self) -> None:
        """Once it takes over, the same agent is active and takes changes: read_only is null."""
        self.fake.stand_by()
        self.fake.take_over()
        cluster = self.request("GET", "/api/stats").json()["cluster"]
        self.assertEqual((cluster["role"], cluster["epoch"], cluster["holder"], cluster["read_only"]),
                         ("active", 8, STANDBY, None))
        self.assertEqual(self.request("DELETE", "/api/calls/c1").code, 200)

    def test_page_and_samples(self) -> None:
        """The page embeds the cluster with the stats; each stats sample of the stream carries it too."""
        self.fake.stand_by()
        state = embedded(self.request("GET", "/"), "initial-state")
        self.assertEqual(state["stats"]["cluster"]["role"], "standby")
        chunks: list[bytes] = []
        self.stub.get("http://admin.test/api/events", unbuffered=True).addCallback(
            lambda r: treq.collect(r, chunks.append))
        self.stub.flush()
        self.fake.take_over()
        self.clock.advance(1)
        self.stub.flush()
        samples = [json.loads(f.split(b"data: ")[1]) for f in b"".join(chunks).split(b"\n\n")
                   if f.startswith(b"event: stats")]
        self.assertEqual([(s["cluster"]["role"], s["cluster"]["epoch"]) for s in samples],
                         [("standby", 7), ("active", 8)])


class ReadOnly(WebCase):
    def test_every_change_refused(self) -> None:
        """On a standby every change is 503 with the reason and the active's name; nothing changed."""
        self.fake.stand_by()
        before = self.request("GET", "/api/endpoints").json()
        for method, path, body in CHANGES:
            answer = self.request(method, path, **({"json": body} if body is not None else {}))
            self.assertEqual(answer.code, 503, (method, path))
            self.assertEqual(answer.json(), {"error": "standby", "reason": REFUSAL, "active": ACTIVE}, (method, path))
            self.assertIsNone(answer.header("retry-after"))
        self.assertEqual(self.request("GET", "/api/endpoints").json(), before)
        self.assertEqual(self.request("GET", "/api/calls/c1").json()["state"], "connected")
        self.assertEqual([a[0] for a in self.fake.actions], ["originate", "hangup", "audit", "in_service", "services"])

    def test_no_active_known(self) -> None:
        """With no active known (between two terms), the body says active: null."""
        self.fake.stand_by(active=None)
        answer = self.request("DELETE", "/api/calls/c1")
        self.assertEqual(answer.json(), {
            "error": "standby", "active": None,
            "reason": "this call agent stands by: make changes at the active agent (none is known now)",
        })

    def test_bad_requests_still_bad(self) -> None:
        """A request that is wrong anyway is answered as such: the refusal is for changes that could be made."""
        self.fake.stand_by()
        self.assertEqual(self.request("PATCH", f"/api/endpoints/{A3}/services", json={"dnd": "yes"}).code, 400)
        self.assertEqual(self.request("DELETE", "/api/calls/nope").code, 404)


class Metrics(WebCase):
    def scrape(self) -> dict[str, Any]:
        samples: dict[str, Any] = {}
        body = self.request("GET", "/metrics").body.decode()
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[key] = sample.value
        return samples

    def test_single_agent_has_none(self) -> None:
        """A single agent exports no cluster metric."""
        self.assertEqual([k for k in self.scrape() if k.startswith("mgcp_cluster")], [])

    def test_member(self) -> None:
        """Role as a labelled gauge, epoch, lease age, last takeover, takeovers, refused rows, leadership events."""
        self.fake.stand_by()
        samples = self.scrape()
        cluster = {k: v for k, v in samples.items() if k.startswith("mgcp_cluster")}
        self.assertEqual(cluster, {
            "mgcp_cluster_role,role=stopped": 0, "mgcp_cluster_role,role=standby": 1, "mgcp_cluster_role,role=active": 0,
            "mgcp_cluster_epoch": 7, "mgcp_cluster_lease_age_seconds": 0.4,
            "mgcp_cluster_last_takeover_timestamp_seconds": T0 + 40,
            "mgcp_cluster_takeovers_total": 0, "mgcp_cluster_store_rows_refused_total": 0,
            "mgcp_cluster_txid_blocks_drawn_total": 4,
            "mgcp_cluster_leadership_events_total,event=attempts": 5,
            "mgcp_cluster_leadership_events_total,event=renewals": 480,
            "mgcp_cluster_leadership_events_total,event=renewal_failures": 1,
            "mgcp_cluster_leadership_events_total,event=database_failures": 0,
        })
        self.fake.take_over()
        samples = self.scrape()
        self.assertEqual((samples["mgcp_cluster_role,role=active"], samples["mgcp_cluster_role,role=standby"]), (1, 0))
        self.assertEqual((samples["mgcp_cluster_epoch"], samples["mgcp_cluster_takeovers_total"],
                          samples["mgcp_cluster_store_rows_refused_total"]), (8, 1, 2))

    def test_unknown_values_left_out(self) -> None:
        """A member that has seen no epoch yet exports its role, not a made-up epoch or lease age."""
        from dataclasses import replace

        self.fake.stand_by()
        self.fake.cluster_view = replace(self.fake.cluster_view, epoch=None, lease_age=None, last_takeover=None,
                                         holder=None, counters={})
        samples = self.scrape()
        self.assertEqual(samples["mgcp_cluster_role,role=standby"], 1)
        for name in ("mgcp_cluster_epoch", "mgcp_cluster_lease_age_seconds",
                     "mgcp_cluster_last_takeover_timestamp_seconds"):
            self.assertNotIn(name, samples)
        self.assertEqual(samples["mgcp_cluster_store_rows_refused_total"], 0)
