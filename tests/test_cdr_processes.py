"""
CDRs across a crash with real processes (issue 16 "Nothing lost"): the
switch (C{twistd -n mgcpswitch --no-simulator}, SQLite store) is killed
with SIGKILL by its PID while calls talk and just after others ended, then
started again on the same database.  The gateways are simulated in this
test's process (on the real reactor), so their phones are driven call by
call and stay up across the crash.

What the store promises (README "What survives a crash"): a call's
checkpoint is written when it is answered and its record when it ends,
each at most C{flush_interval} late; a restarted agent takes the
checkpointed calls back, its audit tells which are still up, and every
call ends with exactly one record.  tests/test_agent_restart.py checks the
same in memory; this is the real-process one.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from mgcpswitch.gateway import GatewayConfig, SimulatedGateway
from mgcpswitch.load import make_config

from .support.live import free_ports
from .support.processes import SwitchProcess, poll
from .test_loss_processes import consecutive_udp_ports

LINES = 8


def _quiet(d: Any) -> Any:
    """A phone's NTFY may time out while the switch is dead: that is expected here."""
    return d.addErrback(lambda failure: None)


def _talking(line: Any) -> bool:
    return len(line.connections) == 1 and line.connections[0].mode == "sendrecv"


def _idle(line: Any) -> bool:
    return line.hook == "on" and not line.connections and [str(e.name) for e in line.requested_events] == ["L/hd"]


class Crash(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-crash-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        [agent] = free_ports(socket.SOCK_DGRAM, 1)
        [web] = free_ports(socket.SOCK_STREAM, 1)
        base = consecutive_udp_ports(2)
        self.db = f"{self.directory}/switch.sqlite"
        self.config = f"{self.directory}/switch.ini"
        text = make_config(2, LINES, base_port=base, agent=("127.0.0.1", agent), web=str(web),
                           keepalive_interval=15, store=f"sqlite:{self.db}")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(text.replace("[store]\n", "[store]\nflush_interval = 0.5\n"))
        self.web = web
        self.gateways = [
            SimulatedGateway(reactor, GatewayConfig(
                domain=f"lg{g + 1}", lines=LINES, port=base + g, interface="127.0.0.1",
                call_agent=("127.0.0.1", agent), restart_delay=0.0, rtp=False,
            ))
            for g in range(2)
        ]
        self.addCleanup(lambda: gatherResults([gw.stop() for gw in self.gateways]))
        self.switch = self.new_switch()

    def new_switch(self) -> SwitchProcess:
        switch = SwitchProcess(self.directory, self.config, self.web)
        self.addCleanup(switch.stop)
        return switch

    def phone(self, number: int) -> Any:
        """Numbers 1000-1007 are lg1's lines, 1008-1015 lg2's (mgcpload config's numbering)."""
        return self.gateways[(number - 1000) // LINES].line((number - 1000) % LINES + 1)

    @staticmethod
    def endpoint(number: int) -> str:
        return f"aaln/{(number - 1000) % LINES + 1}@lg{(number - 1000) // LINES + 1}"

    def rows(self, table: str = "cdr") -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db, timeout=5) as db:
            if table == "cdr":
                return db.execute("SELECT call_id, caller, callee, answer, cause FROM cdr ORDER BY caller").fetchall()
            return db.execute("SELECT call_id FROM calls").fetchall()

    async def talk(self, caller: int, callee: int) -> None:
        a, b = self.phone(caller), self.phone(callee)
        _quiet(a.off_hook())
        await a.when_signal("L/dl")
        _quiet(a.dial(str(callee), gap=0.02))
        await b.when(lambda line: line.ringing)
        _quiet(b.off_hook())
        await gatherResults([a.when(_talking), b.when(_talking)])

    async def hang_up(self, *numbers: int) -> None:
        for n in numbers:
            _quiet(self.phone(n).on_hook())

    async def calls(self, switch: SwitchProcess) -> dict[str, str]:
        """The switch's calls not ended: caller endpoint -> call id."""
        calls = (await switch.get("/api/calls"))["calls"]
        return {c["caller"]: c["call_id"] for c in calls if c["state"] != "ended"}

    async def test_kill_9_loses_no_record_and_writes_none_twice(self) -> None:
        """
        Before the kill: two calls ended (their records on disk), six
        talking (their checkpoints on disk); then two of those hang up and
        the switch ends them, and SIGKILL comes at once, before their
        records need be written.  While the switch is down two more hang
        up.  After the restart and its audit: the two calls still up are
        taken back and end normally when hung up; every other call has its
        record, closed as normal or agent-restart; every call id has
        exactly one row, no checkpoint is left, no connection stays on a
        gateway and every line is idle and armed.
        """
        switch = self.switch
        switch.start()
        await switch.ready()
        for gw in self.gateways:
            gw.start()
        await poll(switch.view, lambda v: not v["not_idle"] and not v["gateways_not_up"], 30, "both gateways up")

        pairs = {"A": ((1000, 1008), (1001, 1009)), "B": ((1002, 1010), (1003, 1011)),
                 "C": ((1004, 1012), (1005, 1013)), "D": ((1006, 1014), (1007, 1015))}
        # A: two calls that end well before the crash.
        for caller, callee in pairs["A"]:
            await self.talk(caller, callee)
            await self.hang_up(caller, callee)
        await poll(self.rows, lambda rows: len(rows) == 2, 30, "the records of the calls ended")
        # B, C, D: six calls talking, their checkpoints written.
        for group in "BCD":
            for caller, callee in pairs[group]:
                await self.talk(caller, callee)
        await poll(lambda: self.rows("calls"), lambda rows: len(rows) == 6, 30, "six checkpoints")
        before = await self.calls(switch)
        self.assertEqual(len(before), 6)
        # D: hung up; the switch ends them; the crash follows at once.
        await self.hang_up(*[n for pair in pairs["D"] for n in pair])
        await poll(lambda: self.calls(switch), lambda calls: len(calls) == 4, 10, "D's calls ended")
        assert switch.child is not None
        switch.child.signal("KILL")
        await switch.child.ended()
        self.assertEqual(switch.child.reason.value.signal, 9)  # type: ignore[union-attr]

        # B: hung up while no switch runs.
        await self.hang_up(*[n for pair in pairs["B"] for n in pair])
        again = self.new_switch()
        again.start()
        await again.ready()
        # The audit after the restart: B's and D's calls closed, C's taken back.
        await poll(lambda: self.calls(again), lambda calls: len(calls) == 2, 30, "only C's calls up")
        self.assertEqual(set(await self.calls(again)), {self.endpoint(c) for c, _ in pairs["C"]})
        await self.hang_up(*[n for pair in pairs["C"] for n in pair])
        await poll(again.view, lambda v: not v["not_idle"] and not v["gateways_not_up"], 30,
                   "every line idle, both gateways up")
        for gw in self.gateways:
            for line in gw.lines:
                await line.when(_idle)
            self.assertEqual(gw.connection_count(), 0)
        await again.stop()  # the store writes what it holds

        rows = self.rows()
        self.assertEqual(len(rows), 8, rows)
        self.assertEqual(len({r[0] for r in rows}), 8, "a call id twice")
        by_caller = {r[1]: r for r in rows}
        self.assertEqual(len(by_caller), 8, "a caller's call twice")
        for caller, callee in (pair for group in "BCD" for pair in pairs[group]):
            self.assertEqual(by_caller[str(caller)][0], before[self.endpoint(caller)],
                             "the record of a call talking at the crash has that call's id")
        for group, allowed in (("A", {"normal"}), ("B", {"normal", "agent-restart"}), ("C", {"normal"}),
                               ("D", {"normal", "agent-restart"})):
            for caller, callee in pairs[group]:
                row = by_caller[str(caller)]
                self.assertEqual(row[2], str(callee), (group, row))
                self.assertIn(row[4], allowed, (group, row))
                self.assertIsNotNone(row[3], (group, row))  # answered
        self.assertEqual(self.rows("calls"), [], "a checkpoint left")
        log = again.log_text()
        self.assertNotIn("Traceback", log)
