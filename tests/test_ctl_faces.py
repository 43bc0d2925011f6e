"""
mgcpctl's faces of overload (issue 15) and trunks (issue 18), against the
admin of a fake switch on a real loopback port: C{stats} says whether the
agent sheds new calls, C{trunks} lists the trunks and C{trunks NAME} shows
one in full; an unknown trunk is the switch's refusal (exit 1).
"""

from __future__ import annotations

import json
from dataclasses import replace

from .test_ctl import CtlCase


class Overload(CtlCase):
    async def test_normal(self) -> None:
        """stats: the guard admits every new call, with its counts and the lateness it watches."""
        code, out, _ = await self.ctl("stats")
        self.assertEqual(code, 0)
        self.assertIn("overload:      normal, every new call admitted; 0 shed, 40 admitted, 0 episode(s); "
                      "reactor 0.8 ms late", out)

    async def test_shedding(self) -> None:
        """stats while overloaded: how much is shed, and the calls shed so far."""
        self.fake.overload(0.25, shed=310, lateness_ms=71.25)
        code, out, _ = await self.ctl("stats")
        self.assertIn("overload:      OVERLOADED, shedding 75% of new calls; 310 shed, 40 admitted, 1 episode(s); "
                      "reactor 71.2 ms late", out)

    async def test_admission_rate(self) -> None:
        """stats with the rate refusing calls (the share still one): the rate and the CPU per call it comes from."""
        self.fake.stats["overload"] = {**self.fake.stats["overload"], "state": "overloaded", "calls_shed": 907,
                                       "admission_rate": 412.5, "cpu_per_call_ms": 2.18, "calls_refused_by_rate": 907}
        code, out, _ = await self.ctl("stats")
        self.assertIn("overload:      OVERLOADED, new calls beyond the admission rate shed; 907 shed, 40 admitted, "
                      "0 episode(s); reactor 0.8 ms late; at most 412 new calls/s (2.18 ms CPU a call)", out)

    async def test_no_guard(self) -> None:
        """A switch whose stats carry no overload snapshot: a dash, not an error."""
        del self.fake.stats["overload"]
        code, out, _ = await self.ctl("stats")
        self.assertEqual(code, 0)
        self.assertIn("overload:      -", out)


class Trunks(CtlCase):
    async def test_list(self) -> None:
        """trunks: one aligned row per trunk: state, registration, peer, channels, calls now, answered of placed."""
        self.fake.trunks["provider"] = replace(self.fake.trunks["provider"], calls=("c1",))
        code, out, err = await self.ctl("trunks")
        self.assertEqual((code, err), (0, ""))
        lines = self.assertColumns(out, "TRUNK", "STATE", "REGISTRATION", "PEER", "CHANNELS", "CALLS",
                                   "OUT ANSWERED", "IN ANSWERED", "FULL")
        self.assertEqual([line.split() for line in lines[1:]], [
            ["backup", "down", "none", "198.51.100.7:5070", "0/10", "0", "0/0", "0/0", "0"],
            ["provider", "up", "registered", "192.0.2.10:5060", "2/30", "1", "9/12", "4/5", "1"],
        ])

    async def test_one(self) -> None:
        """trunks NAME: the trunk in full, with the calls on it, its statuses and SIP message counts."""
        self.fake.trunks["provider"] = replace(self.fake.trunks["provider"], calls=("c1", "c9"))
        code, out, _ = await self.ctl("trunks", "PROVIDER")
        self.assertEqual(code, 0)
        self.assertEqual(out.splitlines()[:5], [
            "trunk provider (sip, peer 192.0.2.10:5060): up, registration registered",
            "  channels:      2 in use of 30; 1 calls refused full",
            "  calls now:     c1, c9",
            "  out:           9 answered of 12",
            "  in:            4 answered of 5",
        ])
        self.assertIn("  statuses:      in 200 4, in 487 1, out 200 9, out 486 2", out)
        self.assertIn("retransmissions 3", out)

    async def test_unknown_and_none(self) -> None:
        """An unknown trunk is the switch's 404 (exit 1, its reason); with no trunk the list says so."""
        code, out, err = await self.ctl("trunks", "nope")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("no trunk 'nope' (trunks: backup, provider)", err)
        self.fake.trunks.clear()
        code, out, _ = await self.ctl("trunks")
        self.assertEqual((code, out), (0, "no trunks configured\n"))

    async def test_json(self) -> None:
        """--json prints the API's answer."""
        code, out, _ = await self.ctl("trunks", "--json")
        self.assertEqual([t["name"] for t in json.loads(out)["trunks"]], ["backup", "provider"])
