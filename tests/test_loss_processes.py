"""
Calls under loss with real processes on loopback (issue 16): the switch
(C{twistd -n mgcpswitch --no-simulator}, CDRs in SQLite) and the load tool
(C{mgcpload run}), whose simulated gateways drop 20 % of the datagrams
they send and receive, duplicate 5 % and delay 5 %.  What must hold is not
a completion rate (benchmarks/bench_loss.py gives the figures) but that
nothing is left behind: every call ends with a cause and one CDR, no
connection stays on a gateway, every line is idle and armed once the loss
stops, and no gateway is declared down (none was).
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import tempfile
from typing import Any

from twisted.trial.unittest import TestCase

from mgcpswitch.agent.model import ReleaseCause
from mgcpswitch.load import make_config

from .support.live import free_ports
from .support.processes import SwitchProcess, mgcpload, poll

GATEWAYS, LINES, CALLS = 2, 20, 100


def consecutive_udp_ports(count: int) -> int:
    """A base port with C{count} free UDP ports from it (the tool's gateways listen on BASE+N-1)."""
    for _ in range(50):
        [base] = free_ports(socket.SOCK_DGRAM, 1)
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
        try:
            for i, s in enumerate(sockets):
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no run of free UDP ports")


class UnderLoss(TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-loss-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        [agent] = free_ports(socket.SOCK_DGRAM, 1)
        [web] = free_ports(socket.SOCK_STREAM, 1)
        self.db = f"{self.directory}/cdr.sqlite"
        self.config = f"{self.directory}/switch.ini"
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(make_config(GATEWAYS, LINES, base_port=consecutive_udp_ports(GATEWAYS), agent=("127.0.0.1", agent),
                                web=str(web), keepalive_interval=15, store=f"sqlite:{self.db}"))
        self.switch = SwitchProcess(self.directory, self.config, web)
        self.addCleanup(self.switch.stop)

    def cdrs(self) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT call_id, cause, answer FROM cdr").fetchall()

    async def test_nothing_is_left_behind_at_20_percent_loss(self) -> None:
        """
        100 calls over 2 gateways x 20 lines at 20 % loss each way (plus 5 %
        duplicates and delays): every call the tool placed completed or
        failed with a cause; the switch started as many calls as it ended
        and wrote one CDR for each (the completed ones answered); within
        30 s of the loss stopping the switch shows every endpoint idle, on
        hook, without connection, and both gateways up, while the tool's
        gateways hold no connection and every line is armed for the
        off-hook; no liveness check failed and nothing was logged as a
        traceback.
        """
        self.switch.start()
        await self.switch.ready()
        tool = mgcpload([
            "run", "--config", self.config, "--calls", str(CALLS), "--rate", "10", "--duration", "200",
            "--warmup", "0", "--hold", "0.2", "--step-timeout", "10", "--drop", "0.2", "--duplicate", "0.05",
            "--delay", "0.05", "--seed", "16", "--settle", "60", "--progress-interval", "0", "--agent-pid", "-1",
            "--json",
        ], self.directory)
        self.addCleanup(tool.stop)
        await tool.said(b"faults stopped")
        converged = await poll(
            self.switch.view,
            lambda v: v["endpoints"] == GATEWAYS * LINES and not v["not_idle"] and not v["gateways_not_up"],
            30, "every endpoint idle and armed at the switch within 30 s of the loss stopping",
        )
        self.assertEqual(converged["endpoints"], GATEWAYS * LINES)
        tool.signal("TERM")  # the settle ends: the tool's census of now
        await tool.ended()
        self.assertIn(tool.exit_code(), (0, 1), tool.err[-3000:])  # 1: some calls failed
        report = json.loads(tool.out)
        stats = await self.switch.get("/api/stats")
        counters = stats["transactions"]["call_control"]
        await self.switch.stop()  # SIGTERM: the store writes what it holds
        log = self.switch.log_text()

        # Every call the tool placed ended, with a cause when it failed; the loss was real.
        self.assertEqual(report["attempted"], CALLS)
        self.assertEqual(report["unfinished"], 0)
        self.assertEqual(report["completed"] + report["failed"], CALLS)
        self.assertEqual(sum(report["failures"].values()), report["failed"])
        self.assertGreater(report["completed"], 0)
        for key in ("sent_dropped", "received_dropped", "sent_duplicated", "received_delayed"):
            self.assertGreater(report["faults"].get(key, 0), 0, key)
        # Nothing left on the gateways: no connection, every line idle and armed.
        self.assertEqual((report["connections_left"], report["connections_left_by_endpoint"]), (0, {}))
        self.assertEqual(report["lines_not_idle"], 0)
        # One CDR per call the switch started, each with a cause.
        rows = self.cdrs()
        self.assertEqual(len(rows), counters["calls_started"])
        self.assertEqual(counters["calls_started"], counters["calls_ended"])
        self.assertEqual(len({r[0] for r in rows}), len(rows), "a call id twice")
        causes = {c.value for c in ReleaseCause}
        self.assertEqual([r for r in rows if r[1] not in causes], [])
        self.assertGreaterEqual(sum(1 for r in rows if r[1] == "normal" and r[2] is not None), report["completed"])
        # No gateway was down, so none may be declared down.
        self.assertEqual(counters.get("gateways_down", 0), 0)
        self.assertNotIn(" is down", log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)
