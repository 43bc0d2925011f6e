"""
mgcpctl against a REAL running switch on loopback (tests/support/live.py):
call control, two simulated gateways of eight lines whose phones answer when
they ring, and the web admin, in this process on the real reactor.  Every
command as an operator would type it, its output and exit status, and the
errors: the switch's refusal (status 1 with its reason) and a stopped switch
(status 3).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from mgcpswitch import ctl
from mgcpswitch.agent.model import Hook

from .support.live import LiveSwitch
from .support.web import require_tshark, tshark_frames

A, B = "aaln/1@rgw1", "aaln/3@rgw2"  # 1001 and 2003


class RealSwitchCase(TestCase):
    timeout = 30

    async def start(self, **kwargs: object) -> LiveSwitch:
        switch = await LiveSwitch.start(**kwargs)  # type: ignore[arg-type]
        self.addCleanup(switch.stop)
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(self.pool.closeCachedConnections)
        self.switch = switch
        return switch

    async def ctl(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Run mgcpctl in-process against the switch; return (status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        if env is None:
            env = {"MGCPCTL_URL": self.switch.url}
        code = await ctl.run(reactor, argv, out, err, env=env, stdin=io.StringIO(""), pool=self.pool)
        return code, out.getvalue(), err.getvalue()

    async def ok(self, *argv: str) -> str:
        code, out, err = await self.ctl(*argv)
        self.assertEqual((code, err), (0, ""), (argv, out))
        return out

    def table(self, text: str) -> tuple[list[str], list[dict[str, str]]]:
        """A table mgcpctl printed: its header and each row as {column: first word}."""
        lines = text.rstrip("\n").split("\n")
        header = lines[0]
        names = header.split()
        starts = [header.index(name) for name in names]
        rows = []
        for line in lines[1:]:
            cells = {}
            for i, name in enumerate(names):
                end = starts[i + 1] if i + 1 < len(names) else None
                cells[name] = line[starts[i]:end].strip()
            rows.append(cells)
        return names, rows


class Session(RealSwitchCase):
    async def test_operator_session(self) -> None:
        """
        gateways (both up), endpoints (16 idle), call A B (the phones answer),
        calls, call show (the ladder), hangup, stats, audit: an operator's session.
        """
        switch = await self.start()
        switch.auto_answer()

        out = await self.ok("gateways")
        names, rows = self.table(out)
        self.assertEqual(names[:3], ["GATEWAY", "STATE", "SERVICE"])
        self.assertEqual([(r["GATEWAY"], r["STATE"], r["SERVICE"]) for r in rows],
                         [("rgw1", "up", "in"), ("rgw2", "up", "in")])
        self.assertIn(f"127.0.0.1:{switch.ports['gw1']}", out)
        self.assertIn(f"127.0.0.1:{switch.ports['gw2']}", out)
        self.assertEqual(out.count("restart, "), 2)

        out = await self.ok("endpoints")
        names, rows = self.table(out)
        self.assertEqual(len(rows), 16)
        self.assertEqual({(r["STATE"], r["HOOK"]) for r in rows}, {("idle", "on")})
        self.assertEqual(sorted(r["NUMBER"] for r in rows),
                         [f"100{n}" for n in range(1, 9)] + [f"200{n}" for n in range(1, 9)])
        names, rows = self.table(await self.ok("endpoints", "--gateway", "rgw2"))
        self.assertEqual([r["ENDPOINT"] for r in rows], [f"aaln/{n}@rgw2" for n in range(1, 9)])
        self.assertEqual(await self.ok("calls"), "no calls\n")

        out = await self.ok("call", A, B)
        match = re.fullmatch(rf"call (\S+) started: {re.escape(A)} -> {re.escape(B)}\n", out)
        assert match is not None, out
        call_id = match.group(1)
        await switch.wait_until(
            lambda: switch.control.get_call(call_id).state.value == "connected"
            and len(switch.phone(A).connections) == len(switch.phone(B).connections) == 1,
            what="the call connected",
        )

        names, rows = self.table(await self.ok("calls"))
        [listed] = rows
        self.assertEqual((listed["CALL"], listed["STATE"], listed["FROM"], listed["TO"], listed["DIALLED"]),
                         (call_id, "connected", A, B, "2003"))

        out = await self.ok("call", "show", call_id)
        lines = out.split("\n")
        self.assertEqual(lines[0], f"call {call_id}: {A} -> {B}  connected")
        self.assertIn("dialled 2003, codec PCMU", lines[1])
        parties = {line.split()[0]: line.split() for line in lines if line.startswith("  aaln/")}
        self.assertEqual({name: (row[2], row[4], row[5]) for name, row in parties.items()},
                         {A: ("caller", "sendrecv", "open"), B: ("called", "sendrecv", "open")})
        ladder = [line for line in lines if "agent --" in line or "agent <--" in line]
        # The first message goes out as the call starts (a few ms later on a busy machine).
        self.assertRegex(ladder[0].strip(), r"^\+0\.\d{3}s  agent ---> rgw1  RQNT ")
        sent = [line.split("agent ---> ")[1].split()[1] for line in ladder if "agent ---> " in line]
        self.assertEqual(sent.count("CRCX"), 2)
        self.assertEqual(sent.count("MDCX"), 1)
        self.assertIn("CRCX", " ".join(line for line in ladder if "rgw2" in line))
        self.assertTrue(any(re.search(r"agent <--- rgw[12]\s+200 ", line) for line in ladder))
        out = await self.ok("call", "show", call_id, "--messages")
        self.assertIn(f"      | C: {call_id}", out)

        out = await self.ok("hangup", call_id)
        self.assertEqual(out, f"call {call_id} hung up (ended)\n")
        self.assertEqual(sum(g.connection_count() for g in switch.gateways.values()), 0)
        names, rows = self.table(await self.ok("calls"))
        self.assertEqual([(r["CALL"], r["STATE"], r["CAUSE"]) for r in rows], [(call_id, "ended", "admin")])

        out = await self.ok("stats")
        self.assertIn("calls:         0 active; ended: admin 1", out)
        self.assertIn("gateways:      up 2", out)
        self.assertIn("endpoints:     16 registered of 16", out)
        self.assertIn("0 pending, 0 retransmissions, 0 timeouts", out)
        commands_out = re.search(r"commands out:  (.*)", out)
        assert commands_out is not None, out
        self.assertIn("CRCX 2", commands_out.group(1))
        self.assertIn("DLCX 2", commands_out.group(1))
        self.assertRegex(commands_out.group(1), r"\bMDCX 1\b")  # the answer's; ringback came with the CRCX
        self.assertIn("AUEP 16", commands_out.group(1))
        self.assertRegex(out, r"latency: +p50 <= [0-9.]+s, p90 <= [0-9.]+s, p99 <= [0-9.]+s \(\d+ answered\)")

        # The phones still off hook hear busy tone; the audit sees the hook.
        self.assertEqual(await self.ok("audit", A), f"{A}: busy, hook off\n")
        await switch.hang_up_all()
        self.assertEqual(await self.ok("audit", A), f"{A}: idle, hook on\n")
        self.assertEqual(await self.ok("audit", "aaln/8@rgw2"), "aaln/8@rgw2: idle, hook on\n")
        self.assertTrue(switch.idle(), switch.describe())

    async def test_call_pcap(self) -> None:
        """
        call ID --pcap FILE of a real call: tshark reads every message of the
        ladder as MGCP, in order, with its verb or code and transaction id,
        between the agent's and the gateways' real ports, at its real time.
        """
        require_tshark()
        switch = await self.start()
        switch.auto_answer()
        call_id = (await self.ok("call", A, B)).split()[1]
        await switch.wait_until(lambda: switch.control.get_call(call_id).state.value == "connected",
                                what="the call connected")
        await self.ok("hangup", call_id)
        directory = tempfile.mkdtemp(prefix="mgcpctl-real-pcap-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "call.pcap")
        ladder = switch.control.get_call(call_id).ladder
        out = await self.ok("call", call_id, "--pcap", path)
        self.assertEqual(out, f"call {call_id}: {len(ladder)} datagrams written to {path}\n")
        frames = tshark_frames(path, agent_port=switch.ports["agent"], gateway_port=switch.ports["gw1"])
        self.assertEqual(len(frames), len(ladder))
        ports = {"rgw1": str(switch.ports["gw1"]), "rgw2": str(switch.ports["gw2"])}
        agent = str(switch.ports["agent"])
        for frame, entry in zip(frames, ladder):
            first = entry.text.split("\r\n", 1)[0].split()
            self.assertRegex(frame["frame.protocols"][0], r"^raw:ip:udp:mgcp(:sdp)?$", entry.summary)
            self.assertEqual(frame["mgcp.transid"], [first[1]], entry.summary)
            if first[0].isdigit():
                self.assertEqual(frame["mgcp.rsp.rspcode"], [first[0]], entry.summary)
            else:
                self.assertEqual(frame["mgcp.req.verb"], [first[0]], entry.summary)
            expected = (agent, ports[entry.gateway]) if entry.direction == "out" else (ports[entry.gateway], agent)
            self.assertEqual((frame["udp.srcport"][0], frame["udp.dstport"][0]), expected, entry.summary)
            self.assertEqual((frame["ip.src"], frame["ip.dst"]), (["127.0.0.1"], ["127.0.0.1"]))
            self.assertLessEqual(abs(float(frame["frame.time_epoch"][0]) - entry.time), 1e-6, entry.summary)
        verbs = [f["mgcp.req.verb"][0] for f in frames if f["mgcp.req.verb"]]
        self.assertEqual((verbs.count("CRCX"), verbs.count("DLCX")), (2, 2))
        await switch.hang_up_all()

    async def test_gateway_out_and_in(self) -> None:
        """gateway out NAME refuses calls to it; gateway in NAME brings it back up."""
        switch = await self.start()
        self.assertEqual(await self.ok("gateway", "out", "rgw2"), "rgw2: out of service (out-of-service)\n")
        code, out, err = await self.ctl("call", A, B)
        self.assertEqual((code, out), (1, ""))
        self.assertIn("the switch refused (409): aaln/3@rgw2 is busy or out of service", err)
        out = await self.ok("gateway", "in", "rgw2")
        self.assertRegex(out, r"^rgw2: in service \((registering|up)\)\n$")
        await switch.wait_until(switch.registered, what="rgw2 up again")
        names, rows = self.table(await self.ok("gateways"))
        self.assertEqual([r["STATE"] for r in rows], ["up", "up"])

    async def test_json(self) -> None:
        """--json prints the API's answer: the real gateways and endpoints."""
        await self.start()
        data = json.loads(await self.ok("--json", "gateways"))
        self.assertEqual([(g["name"], g["state"]) for g in data["gateways"]], [("rgw1", "up"), ("rgw2", "up")])
        data = json.loads(await self.ok("endpoints", "--json"))
        self.assertEqual(len(data["endpoints"]), 16)


class Errors(RealSwitchCase):
    async def test_refusals(self) -> None:
        """Unknown call, unknown endpoint, a busy line: status 1 and the API's reason."""
        switch = await self.start()
        code, out, err = await self.ctl("call", "show", "nope")
        self.assertEqual((code, out, err), (1, "", "mgcpctl: the switch refused (404): unknown call 'nope'\n"))
        code, out, err = await self.ctl("hangup", "nope")
        self.assertEqual((code, out, err), (1, "", "mgcpctl: the switch refused (404): unknown call 'nope'\n"))
        code, _, err = await self.ctl("audit", "aaln/9@rgw1")
        self.assertEqual((code, err), (1, "mgcpctl: the switch refused (404): unknown endpoint 'aaln/9@rgw1'\n"))
        code, _, err = await self.ctl("call", A, "aaln/1")
        self.assertEqual(code, 1)
        self.assertIn("(400): bad endpoint name 'aaln/1'", err)
        code, _, err = await self.ctl("gateway", "out", "rgw9")
        self.assertEqual((code, err), (1, "mgcpctl: the switch refused (404): unknown gateway 'rgw9'\n"))
        # A line off hook (dialling) cannot be called from.
        switch.phone(A).off_hook()
        await switch.wait_until(lambda: switch.control.get_endpoint(A).hook is Hook.OFF, what=f"{A} off hook")
        code, _, err = await self.ctl("call", A, B)
        self.assertEqual(code, 1)
        self.assertIn(f"(409): {A} is busy or out of service", err)
        await switch.hang_up_all()
        self.assertEqual(switch.control.list_calls(), [])

    async def test_stopped_switch(self) -> None:
        """Once the switch has stopped, its port is closed: status 3, connection refused."""
        switch = await self.start()
        self.assertEqual((await self.ctl("calls"))[0], 0)
        await switch.stop()
        code, out, err = await self.ctl("gateways")
        self.assertEqual((code, out), (3, ""))
        self.assertEqual(err, f"mgcpctl: cannot reach the switch at {switch.url}: connection refused\n")

    async def test_token_required(self) -> None:
        """With tokens configured, no token is status 4; the right one works against the real switch."""
        switch = await self.start(web_extra="tokens = t0k3n\n")
        code, out, err = await self.ctl("gateways")
        self.assertEqual((code, out), (4, ""))
        self.assertIn("authentication failed (401)", err)
        self.assertEqual((await self.ctl("--token", "wrong", "gateways"))[0], 4)
        code, out, _ = await self.ctl("--token", "t0k3n", "audit", "aaln/2@rgw1")
        self.assertEqual((code, out), (0, "aaln/2@rgw1: idle, hook on\n"))
        self.assertTrue(switch.idle())
