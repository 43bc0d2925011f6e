"""
The overload guard's faces (issue 15 §2) against a L{FakeCallControl}:
C{/api/stats} carries its snapshot, C{/metrics} its state, admitted share,
lateness and calls shed, the page embeds it and the event stream's
samples carry it each second, so the page's badge follows it.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families

from .support.web import WebCase
from .test_web_page import embedded


def scrape(case: WebCase) -> dict[str, Any]:
    """C{/metrics} as {name,label=value...: value}, parsed by prometheus_client's own parser."""
    samples: dict[str, Any] = {}
    answer = case.request("GET", "/metrics")
    case.assertEqual(answer.code, 200)
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[key] = sample.value
    return samples


class Overload(WebCase):
    def test_stats(self) -> None:
        """/api/stats has the guard's snapshot: normal, then overloaded with the share and the calls shed."""
        self.assertEqual(self.request("GET", "/api/stats").json()["transactions"]["overload"]["state"], "normal")
        self.fake.overload(0.25, shed=310)
        overload = self.request("GET", "/api/stats").json()["transactions"]["overload"]
        self.assertEqual((overload["state"], overload["admitted_share"], overload["calls_shed"], overload["episodes"]),
                         ("overloaded", 0.25, 310, 1))

    def test_metrics(self) -> None:
        """State, admitted share, lateness (in seconds) and the calls shed, admitted and episodes as counters."""
        self.assertEqual({k: v for k, v in scrape(self).items() if k.startswith("mgcp_overload")}, {
            "mgcp_overloaded": 0, "mgcp_overload_admitted_share": 1.0, "mgcp_overload_lateness_seconds": 0.0008,
            "mgcp_overload_calls_shed_total": 0, "mgcp_overload_calls_admitted_total": 40,
            "mgcp_overload_episodes_total": 0,
        })
        self.fake.overload(0.4, shed=12, lateness_ms=65.0)
        samples = scrape(self)
        self.assertEqual(
            (samples["mgcp_overloaded"], samples["mgcp_overload_admitted_share"],
             samples["mgcp_overload_lateness_seconds"], samples["mgcp_overload_calls_shed_total"],
             samples["mgcp_overload_episodes_total"]),
            (1, 0.4, 0.065, 12, 1),
        )

    def test_receive_buffer(self) -> None:
        """Where the kernel says (Linux), the datagrams dropped at the agent's socket and the bytes queued."""
        self.assertNotIn("mgcp_receive_dropped_total", scrape(self))  # an in-memory port: nothing read
        self.fake.stats["overload"] = {**self.fake.stats["overload"], "receive_dropped": 134,
                                       "receive_queued_bytes": 212_480}
        samples = scrape(self)
        self.assertEqual((samples["mgcp_receive_dropped_total"], samples["mgcp_receive_queued_bytes"]),
                         (134, 212_480))

    def test_admission_rate(self) -> None:
        """Once learned, the admission rate, the CPU per call it comes from, and the calls it refused."""
        self.assertNotIn("mgcp_overload_admission_rate", scrape(self))  # not learned yet: nothing made up
        self.fake.stats["overload"] = {**self.fake.stats["overload"], "admission_rate": 412.5,
                                       "cpu_per_call_ms": 2.18, "calls_refused_by_rate": 907}
        samples = scrape(self)
        self.assertEqual((samples["mgcp_overload_admission_rate"], samples["mgcp_overload_cpu_per_call_seconds"],
                          samples["mgcp_overload_calls_refused_by_rate_total"]), (412.5, 0.00218, 907))

    def test_no_guard_no_metric(self) -> None:
        """A call control without an overload snapshot exports no overload family (nothing made up)."""
        del self.fake.stats["overload"]
        self.assertEqual([k for k in scrape(self) if k.startswith("mgcp_overload")], [])
        self.assertIn("mgcp_active_calls", scrape(self))

    def test_page_and_samples(self) -> None:
        """The page embeds the snapshot; each stats sample of the stream carries the guard's state as it is then."""
        self.fake.overload(0.5, shed=3)
        state = embedded(self.request("GET", "/"), "initial-state")
        self.assertEqual(state["stats"]["transactions"]["overload"]["admitted_share"], 0.5)
        chunks: list[bytes] = []
        self.stub.get("http://admin.test/api/events", unbuffered=True).addCallback(
            lambda r: treq.collect(r, chunks.append))
        self.stub.flush()
        self.fake.overload(0.2, shed=40)
        self.clock.advance(1)
        self.fake.overload(1.0, shed=41)
        self.clock.advance(1)
        self.stub.flush()
        samples = [json.loads(f.split(b"data: ")[1]) for f in b"".join(chunks).split(b"\n\n")
                   if f.startswith(b"event: stats")]
        self.assertEqual([(s["overload"]["state"], s["overload"]["admitted_share"], s["overload"]["calls_shed"])
                          for s in samples],
                         [("overloaded", 0.5, 3), ("overloaded", 0.2, 40), ("normal", 1.0, 41)])
