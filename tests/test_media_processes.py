"""
Three real processes on loopback: C{twistd -n mgcpswitch --no-simulator}
and two C{twistd -n mgcpgateway --media --control ...}.  The test is the
subscribers: it lifts, dials, flashes and hangs up through each gateway's
driving API over HTTP, sets a line's services through the switch's admin
API, and checks with the gateways' real RTP counts (UDP on 127.0.0.1) who
hears whom: a three-way call mixed by the initiator's gateway (RFC 3435
App. D: its two connections in confrnce mode), the transfer when the
initiator hangs up, a consultative transfer; then every line idle with no
connection on either gateway.

Waits poll over HTTP every 20 ms of the reactor, with deadlines; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from mgcpswitch.gateway.mixing import line_source

from .support.live import free_ports, switch_ini
from . import test_tap as tap_tests  # its twistd helpers; not its TestCases, which pytest would collect again

A, B, C = "aaln/1@rgw1", "aaln/1@rgw2", "aaln/2@rgw2"
NAMES = {line_source(name): name for name in (A, B, C)}
#: Packets a handset must hear from each party in a window: half a second of 20 ms packets.
ENOUGH = 25


def _turn() -> Any:
    """Let the reactor run 20 ms between two polls (the processes keep talking meanwhile)."""
    return deferLater(reactor, 0.02, lambda: None)


class MediaProcesses(TestCase):
    timeout = 90

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-media-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [tap_tests.ROOT] + [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )

    # -- processes ------------------------------------------------------------

    def spawn(self, name: str, *arguments: str) -> None:
        """Run C{twistd -n ARGUMENTS}, logging to NAME.log; stopped (SIGINT by its pid) at cleanup."""
        command = tap_tests.twistd_command() + [
            "-n", "--pidfile=", "--logfile", os.path.join(self.directory, f"{name}.log"), *arguments,
        ]
        twistd = tap_tests._Twistd()
        process = reactor.spawnProcess(twistd, command[0], command, env=self.env, path=self.directory)
        self.addCleanup(tap_tests.Twistd.stop, self, process, twistd)

    def log(self, name: str) -> str:
        try:
            with open(os.path.join(self.directory, f"{name}.log"), encoding="utf-8", errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return "(no log)"

    # -- HTTP -------------------------------------------------------------------

    async def call(self, method: str, url: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {b"content-type": [b"application/json"]} if data is not None else None
        response = await treq.request(method, url, data=data, headers=headers, pool=self.pool, timeout=5,
                                      reactor=reactor)
        answer = await response.json()
        self.assertEqual(response.code, 200, (method, url, answer))
        return answer

    def line_url(self, endpoint: str) -> str:
        local, _, domain = endpoint.partition("@")
        return f"{self.control[domain]}/lines/{local.rpartition('/')[2]}"

    async def phone(self, endpoint: str, action: str | None = None, **body: Any) -> Any:
        """GET the line, or POST an action to it (C{off-hook}, C{dial} with digits...)."""
        if action is None:
            return await self.call("GET", self.line_url(endpoint))
        return await self.call("POST", f"{self.line_url(endpoint)}/{action}", body)

    async def until(self, endpoint: str, predicate: Any, what: str, timeout: float = 10.0) -> Any:
        """Poll the line until C{predicate(line)}; return the line."""
        deadline = reactor.seconds() + timeout
        while True:
            line = await self.phone(endpoint)
            if predicate(line):
                return line
            if reactor.seconds() > deadline:
                raise AssertionError(f"{endpoint}: timed out waiting for {what}; last: {line}")
            await _turn()

    async def heard(self) -> dict[str, dict[str, int]]:
        """Packets each party's handset heard, by party (summed over the line's connections)."""
        result = {}
        for endpoint in (A, B, C):
            line = await self.phone(endpoint)
            total: dict[str, int] = {}
            for conn in line["connections"]:
                for source, packets in conn["heard"].items():
                    who = NAMES.get(int(source), source)
                    total[who] = total.get(who, 0) + packets
            result[endpoint] = total
        return result

    async def hearing(self, expected: dict[str, set[str]], timeout: float = 10.0) -> None:
        """
        From now on, each party's handset hears at least ENOUGH new packets
        from each party C{expected} names for it, and none from anybody else.
        """
        before = await self.heard()
        deadline = reactor.seconds() + timeout
        while True:
            now = await self.heard()
            grown = {
                who: {src for src, n in now[who].items() if n > before[who].get(src, 0)} for who in (A, B, C)
            }
            for who in (A, B, C):
                self.assertLessEqual(grown[who], expected[who], f"{who} hears more than it should: {now}")
            if all(now[who].get(src, 0) - before[who].get(src, 0) >= ENOUGH
                   for who in (A, B, C) for src in expected[who]):
                return
            if reactor.seconds() > deadline:
                raise AssertionError(f"timed out: expected {expected}, before {before}, now {now}")
            await _turn()

    async def modes(self, endpoint: str) -> list[str]:
        return sorted(conn["mode"] for conn in (await self.phone(endpoint))["connections"])

    # -- the scenario -----------------------------------------------------------

    async def start(self) -> None:
        text, ports = switch_ini(simulator_extra="")
        control1, control2 = free_ports(socket.SOCK_STREAM, 2)
        config = os.path.join(self.directory, "switch.ini")
        with open(config, "w", encoding="utf-8") as f:
            f.write(text)
        self.admin = f"http://127.0.0.1:{ports['web']}"
        self.control = {"rgw1": f"http://127.0.0.1:{control1}", "rgw2": f"http://127.0.0.1:{control2}"}
        self.spawn("switch", "mgcpswitch", "--config", config, "--no-simulator")
        for domain, port, control in (("rgw1", ports["gw1"], control1), ("rgw2", ports["gw2"], control2)):
            self.spawn(domain, "mgcpgateway", "--domain", domain, "--port", str(port), "--lines", "8",
                       "--call-agent", f"127.0.0.1:{ports['agent']}", "--media",
                       "--control", f"tcp:{control}:interface=127.0.0.1")

        async def ready() -> bool:
            try:
                gateways = await self.call("GET", f"{self.admin}/api/gateways")
                endpoints = await self.call("GET", f"{self.admin}/api/endpoints")
                await self.call("GET", f"{self.control['rgw1']}/lines")
                await self.call("GET", f"{self.control['rgw2']}/lines")
            except Exception:
                return False
            return all(g["state"] == "up" for g in gateways["gateways"]) and len(endpoints["endpoints"]) == 16 \
                and all(e["state"] == "idle" for e in endpoints["endpoints"])

        deadline = reactor.seconds() + 30
        while not await ready():
            if reactor.seconds() > deadline:
                raise AssertionError("the switch and its gateways did not come up: " + self.log("switch"))
            await _turn()

    async def connect(self, caller: str, callee: str, number: str) -> None:
        """Caller (off hook or not) dials number; callee's phone rings and answers; they talk."""
        if (await self.phone(caller))["hook"] == "on":
            await self.phone(caller, "off-hook")
        await self.until(caller, lambda line: line["tone"] in ("L/dl", "L/sl"), "dial tone")
        await self.phone(caller, "dial", digits=number, gap=0.05)
        await self.until(callee, lambda line: line["ringing"], "ringing")
        await self.phone(callee, "off-hook")
        await self.until(callee, lambda line: [c["mode"] for c in line["connections"]] == ["sendrecv"],
                         "a sendrecv connection")

    async def all_idle(self) -> None:
        """Every phone on hook; wait until no line of either gateway has a connection and the switch is idle."""
        for endpoint in (A, B, C):
            if (await self.phone(endpoint))["hook"] == "off":
                await self.phone(endpoint, "on-hook")

        async def idle() -> bool:
            lines = [line for domain in ("rgw1", "rgw2")
                     for line in (await self.call("GET", f"{self.control[domain]}/lines"))["lines"]]
            endpoints = (await self.call("GET", f"{self.admin}/api/endpoints"))["endpoints"]
            return all(not line["connections"] for line in lines) and all(
                e["state"] == "idle" for e in endpoints)

        deadline = reactor.seconds() + 10
        while not await idle():
            if reactor.seconds() > deadline:
                raise AssertionError("lines not idle: " + json.dumps(
                    (await self.call("GET", f"{self.admin}/api/endpoints"))["endpoints"])[:3000])
            await _turn()

    async def test_three_way_and_transfers(self) -> None:
        """
        A (1001 on rgw1) talks with B (2001 on rgw2), flashes, calls C
        (2002), flashes again: A's gateway mixes, and each of the three
        hears the other two.  Transfer-on-hangup, set through the admin
        API: A hangs up and B and C hear each other, A nobody.  Then a
        consultative transfer (A consults C, hangs up): B and C again.
        Each time, all hang up: every line idle, 0 connections.
        """
        await self.start()
        services = f"{self.admin}/api/endpoints/aaln%2F1%40rgw1/services"
        await self.call("PATCH", services, {"transfer_on_hangup": True})

        await self.connect(A, B, "2001")
        await self.hearing({A: {B}, B: {A}, C: set()})
        await self.phone(A, "flash")
        await self.until(A, lambda line: line["tone"] == "L/sl", "recall dial tone")
        await self.connect(A, C, "2002")
        await self.hearing({A: {C}, B: set(), C: {A}})  # B is held
        await self.phone(A, "flash")
        await self.until(A, lambda line: sorted(c["mode"] for c in line["connections"]) == ["confrnce"] * 2,
                         "two confrnce connections")
        await self.hearing({A: {B, C}, B: {A, C}, C: {A, B}})
        forwarded = [c["forwarded"] for c in (await self.phone(A))["connections"]]
        self.assertTrue(all(n >= ENOUGH for n in forwarded), forwarded)

        await self.phone(A, "on-hook")
        await self.until(A, lambda line: not line["connections"], "A's connections deleted")
        await self.hearing({A: set(), B: {C}, C: {B}})
        self.assertEqual((await self.modes(B), await self.modes(C)), (["sendrecv"], ["sendrecv"]))
        await self.all_idle()

        await self.call("PATCH", services, {"transfer_on_hangup": False})
        await self.connect(A, B, "2001")
        await self.phone(A, "flash")
        await self.until(A, lambda line: line["tone"] == "L/sl", "recall dial tone")
        await self.connect(A, C, "2002")
        await self.phone(A, "on-hook")
        await self.until(A, lambda line: not line["connections"], "A's connections deleted")
        await self.hearing({A: set(), B: {C}, C: {B}})
        calls = (await self.call("GET", f"{self.admin}/api/calls"))["calls"]
        self.assertTrue(any(call.get("transferred_by") == A for call in calls), calls)
        await self.all_idle()
