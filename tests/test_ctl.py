"""
mgcpctl against the admin of a fake switch on a real loopback port: every
command's output and exit status, and the clear errors (switch down,
credentials wrong, refused actions, usage).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from mgcpswitch import ctl
from mgcpswitch.web import WebSettings, make_site
from mgcpswitch.web.auth import PasswordHash, hash_password
from mgcpswitch.web.throttle import SOURCE_BURST

from .support.fake_control import ACTIVE, GW1, GW2, STANDBY, FakeCallControl
from .support.loopback import closed_port, serve
from .support.web import flow_call, require_ipv6, require_tshark, serve_on, three_way, tshark_frames

A1, A3, A4 = (f"aaln/{n}@{GW1}" for n in (1, 3, 4))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CtlCase(TestCase):
    timeout = 20
    settings = WebSettings()

    def setUp(self) -> None:
        self.fake = FakeCallControl(reactor)
        self.url = serve(self, make_site(self.fake, self.settings, reactor))
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(self.pool.closeCachedConnections)

    async def ctl(self, *argv: str, env: dict[str, str] | None = None, stdin: str = "") -> tuple[int, str, str]:
        """Run mgcpctl in-process; return (status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        if env is None:
            env = {"MGCPCTL_URL": self.url}
        code = await ctl.run(reactor, argv, out, err, env=env, stdin=io.StringIO(stdin), pool=self.pool)
        return code, out.getvalue(), err.getvalue()

    def assertColumns(self, text: str, *headers: str) -> list[str]:
        """A table: the header line names the columns, and rows start at their offsets."""
        lines = text.rstrip("\n").split("\n")
        for header in headers:
            self.assertIn(header, lines[0])
        return lines


class Reading(CtlCase):
    async def test_gateways(self) -> None:
        """gateways: one aligned row per gateway."""
        code, out, err = await self.ctl("gateways")
        self.assertEqual((code, err), (0, ""))
        lines = self.assertColumns(out, "GATEWAY", "STATE", "SERVICE", "ADDRESS", "LAST RSIP", "LAST SEEN")
        self.assertEqual(len(lines), 3)
        state = lines[0].index("STATE")
        self.assertEqual(lines[1][state:].split()[0], "up")
        self.assertEqual(lines[2][state:].split()[0], "down")
        self.assertIn("restart, 1m30s ago", lines[1])
        self.assertIn("127.0.0.1:2427", lines[1])
        self.assertIn("never", lines[2])
        # CALLS is the view's active_calls: one call, though two of gw1's lines are in it.
        calls = lines[0].index("CALLS")
        self.assertEqual([line[calls:].split()[0] for line in lines[1:]], ["1", "0"])

    async def test_endpoints(self) -> None:
        """endpoints, of all gateways or of one."""
        code, out, _ = await self.ctl("endpoints")
        self.assertEqual(code, 0)
        lines = self.assertColumns(out, "ENDPOINT", "STATE", "HOOK", "NUMBER", "CALL", "CONNECTIONS")
        self.assertEqual(len(lines), 6)
        self.assertIn("A1 sendrecv", out)
        code, out, _ = await self.ctl("endpoints", "--gateway", GW2)
        self.assertEqual(out.count("\n"), 2)
        self.assertIn(f"aaln/1@{GW2}", out)

    async def test_calls(self) -> None:
        """calls: in progress and recently ended, with durations."""
        code, out, _ = await self.ctl("calls")
        lines = self.assertColumns(out, "CALL", "STATE", "FROM", "TO", "DURATION", "CAUSE")
        rows = {line.split()[0]: line for line in lines[1:]}
        self.assertIn("connected", rows["c1"])
        self.assertIn("25s", rows["c1"])
        self.assertIn("busy", rows["c0"])

    async def test_call_show(self) -> None:
        """call show ID: the call and its MGCP ladder, with --messages in full."""
        code, out, _ = await self.ctl("call", "show", "c1")
        self.assertEqual(code, 0)
        self.assertIn(f"call c1: {A1} -> aaln/2@{GW1}  connected", out)
        self.assertIn(f"+0.000s  agent ---> {GW1}  CRCX 1001 {A1} MGCP 1.0", out)
        self.assertIn(f"+0.012s  agent <--- {GW1}  200 1001 OK", out)
        self.assertNotIn("| C: c1", out)
        code, out, _ = await self.ctl("call", "show", "c1", "--messages")
        self.assertIn("      | C: c1", out)

    async def test_stats(self) -> None:
        """stats: calls, gateways, transactions and latency percentiles."""
        code, out, _ = await self.ctl("stats")
        self.assertEqual(code, 0)
        self.assertIn("1 active; ended: busy 1, normal 3", out)
        self.assertIn("commands out:  AUEP 4, CRCX 6, RQNT 9", out)
        self.assertIn("3 retransmissions, 1 timeouts", out)
        self.assertIn("p50 <= 0.01s, p90 <= 1s, p99 > 1s (19 answered)", out)

    async def test_json(self) -> None:
        """--json (before or after the command) prints the API's answer."""
        code, out, _ = await self.ctl("--json", "gateways")
        self.assertEqual([g["name"] for g in json.loads(out)["gateways"]], [GW1, GW2])
        code, out, _ = await self.ctl("calls", "--json")
        self.assertEqual({c["call_id"] for c in json.loads(out)["calls"]}, {"c0", "c1"})


class Pcap(CtlCase):
    def setUp(self) -> None:
        super().setUp()
        self.started = self.fake.clock.seconds() - 10
        self.fake.calls["c9"] = flow_call(self.started)
        self.directory = tempfile.mkdtemp(prefix="mgcpctl-pcap-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    async def test_call_pcap(self) -> None:
        """call ID --pcap FILE writes the ladder as a pcap that tshark reads as MGCP."""
        require_tshark()
        path = os.path.join(self.directory, "c9.pcap")
        code, out, err = await self.ctl("call", "c9", "--pcap", path)
        self.assertEqual((code, out, err), (0, f"call c9: 9 datagrams written to {path}\n", ""))
        frames = tshark_frames(path)
        self.assertEqual([f["mgcp.transid"] for f in frames],
                         [["2001"], ["2001"], ["2001"], ["2002"], ["2002"], ["77"], ["77", "2003"], ["2003"], ["2004"]])
        self.assertEqual(frames[0]["mgcp.req.verb"], ["CRCX"])
        code, out, _ = await self.ctl("call", "show", "c9", "--pcap", path)  # 'show' may be kept
        self.assertEqual(code, 0)

    async def test_errors(self) -> None:
        """An unknown call is the switch's 404; bad arguments and unwritable files are usage errors."""
        path = os.path.join(self.directory, "x.pcap")
        code, _, err = await self.ctl("call", "nope", "--pcap", path)
        self.assertEqual((code, err), (1, "mgcpctl: the switch refused (404): unknown call 'nope'\n"))
        self.assertFalse(os.path.exists(path))
        for argv, message in (
            (("call", "show"), "use 'call ID'"),
            (("call", "c9", "--pcap", path, "--messages"), "--messages goes with"),
            (("call", "c9", A3, "--pcap", path), "use 'call ID --pcap FILE'"),
        ):
            code, _, err = await self.ctl(*argv)
            self.assertEqual(code, 2, argv)
            self.assertIn(message, err)
        code, _, err = await self.ctl("call", "c9", "--pcap", os.path.join(self.directory, "no", "such", "dir"))
        self.assertEqual(code, 2)
        self.assertIn("cannot write", err)


class Acting(CtlCase):
    async def test_call(self) -> None:
        """call A B (and originate A B) ring A and print the call id."""
        code, out, err = await self.ctl("call", A3, A4)
        self.assertEqual((code, out, err), (0, f"call call-1 started: {A3} -> {A4}\n", ""))
        self.fake.hangup("call-1")
        code, out, _ = await self.ctl("originate", A3, A4)
        self.assertEqual(out, f"call call-2 started: {A3} -> {A4}\n")
        self.assertEqual([a for a in self.fake.actions if a[0] == "originate"], [("originate", A3, A4)] * 2)

    async def test_hangup(self) -> None:
        """hangup ID."""
        code, out, _ = await self.ctl("hangup", "c1")
        self.assertEqual((code, out), (0, "call c1 hung up (ended)\n"))
        self.assertEqual(self.fake.actions, [("hangup", "c1")])

    async def test_audit(self) -> None:
        """audit ENDPOINT (the name is percent-encoded in the URL)."""
        code, out, _ = await self.ctl("audit", f"aaln/1@{GW2}")
        self.assertEqual((code, out), (0, f"aaln/1@{GW2}: idle, hook on\n"))
        self.assertEqual(self.fake.actions, [("audit", f"aaln/1@{GW2}")])

    async def test_gateway_service(self) -> None:
        """gateway out NAME, gateway in NAME."""
        code, out, _ = await self.ctl("gateway", "out", GW1)
        self.assertEqual((code, out), (0, f"{GW1}: out of service (out-of-service)\n"))
        code, out, _ = await self.ctl("gateway", "in", GW1)
        self.assertEqual(out, f"{GW1}: in service (up)\n")
        self.assertEqual(self.fake.actions, [("in_service", GW1, False), ("in_service", GW1, True)])

    async def test_refused(self) -> None:
        """The switch's 4xx reason is printed and the status is 1."""
        code, out, err = await self.ctl("hangup", "nope")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "mgcpctl: the switch refused (404): unknown call 'nope'\n")
        code, _, err = await self.ctl("call", A1, A3)
        self.assertEqual(code, 1)
        self.assertIn("(409): endpoint", err)
        self.assertIn("busy", err)
        code, _, err = await self.ctl("audit", "not-an-endpoint")
        self.assertEqual(code, 1)
        self.assertIn("(400): bad endpoint name", err)


class Lines(CtlCase):
    """A line's services: shown by 'line', changed by 'line ... set' (issue 13)."""

    async def test_show(self) -> None:
        """line NAME (an endpoint or a number): state, calls, connections and every service."""
        code, out, err = await self.ctl("line", A3)
        self.assertEqual((code, err), (0, ""))
        lines = out.split("\n")
        self.assertEqual(lines[0], f"{A3} (1003): idle, hook on")
        services = dict(line.split(None, 1) for line in lines[lines.index("services:") + 1:] if line.strip())
        self.assertEqual(services["forward_busy"], "1004")
        self.assertEqual((services["message_waiting"], services["dnd"], services["name"]), ("yes", "no", "-"))
        self.assertEqual(len(services), 11)
        code, by_number, _ = await self.ctl("line", "1003")
        self.assertEqual((code, by_number), (0, out))

    async def test_set(self) -> None:
        """line NAME set KEY=VALUE...: flags take yes/no, numbers their digits or off; only those are sent."""
        code, out, err = await self.ctl("line", "1004", "set", "dnd=yes", "forward_always=1003", "call-waiting=off")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(self.fake.actions, [
            ("services", A4, {"dnd": True, "forward_always": "1003", "call_waiting": False}),
        ])
        self.assertTrue(out.startswith("changed dnd yes, forward_always 1003, call_waiting no\n"))
        self.assertIn("  forward_always      1003\n", out)
        code, out, _ = await self.ctl("line", A4, "set", "forward_always=off", "name=Dora Smith")
        self.assertEqual(self.fake.actions[-1], ("services", A4, {"forward_always": None, "name": "Dora Smith"}))
        self.assertIn("  forward_always      -\n", out)
        code, out, _ = await self.ctl("--json", "line", A4, "set", "name=")
        self.assertEqual(json.loads(out)["services"]["name"], None)

    async def test_endpoints_show_services(self) -> None:
        """endpoints: what differs from a plain line, in a column."""
        await self.ctl("line", A4, "set", "dnd=yes", "three_way=no")
        code, out, _ = await self.ctl("endpoints")
        rows = {line.split()[0]: line for line in out.split("\n")[1:] if line}
        self.assertIn("mwi, fwd-busy->1004", rows[A3])
        self.assertIn("dnd, no three-way", rows[A4])
        self.assertIn('"Alice"', rows[A1])

    async def test_refusals(self) -> None:
        """Usage mistakes are status 2 before anything is sent; the switch's refusals are 1 with its reason."""
        for argv, message in (
            (("line", A4, "set"), "use 'line LINE' or 'line LINE set KEY=VALUE...'"),
            (("line", A4, "dnd=yes"), "use 'line LINE' or 'line LINE set KEY=VALUE...'"),
            (("line", A4, "set", "dnd"), "'dnd': expected KEY=VALUE"),
            (("line", A4, "set", "dnd=maybe"), "'dnd=maybe': dnd is yes or no"),
        ):
            code, out, err = await self.ctl(*argv)
            self.assertEqual((code, out), (2, ""), argv)
            self.assertIn(message, err)
        code, _, err = await self.ctl("line", A4, "set", "bogus=1")
        self.assertEqual(code, 1)
        self.assertIn("(400): unknown service 'bogus'", err)
        code, _, err = await self.ctl("line", A4, "set", "forward_busy=12ab")
        self.assertEqual(code, 1)
        self.assertIn("(400): forward_busy must be a number of digits", err)
        code, _, err = await self.ctl("line", "5555")
        self.assertEqual((code, err), (1, "mgcpctl: no line has the number '5555' (name an endpoint as local@gateway)\n"))
        code, _, err = await self.ctl("line", f"aaln/9@{GW1}")
        self.assertEqual(code, 1)
        self.assertIn("(404): unknown endpoint", err)
        self.assertEqual(self.fake.actions, [])  # refused by the API before call control was asked


class Calls(CtlCase):
    async def test_parties_and_history(self) -> None:
        """call ID (show is optional): the parties with held/waiting/three-way, forwarded/transferred/related."""
        self.fake.calls["c7"] = three_way(self.fake.clock.seconds() - 10)
        code, out, err = await self.ctl("call", "c7")
        self.assertEqual((code, err), (0, ""))
        lines = out.split("\n")
        self.assertEqual(lines[2], f"  forwarded from aaln/2@{GW1}; transferred by {A1}; related: c5, c6")
        table = lines[lines.index("") + 1:]
        self.assertEqual(table[0].split(), ["PARTY", "NUMBER", "SIDE", "CONNECTION", "MODE", "STATE", "FLAGS"])
        self.assertEqual(table[1].split(), [A1, "1001", "caller", "C1", "confrnce", "open", "three-way"])
        self.assertEqual(table[2].split(), [A3, "1003", "called", "C3", "sendrecv", "open", "held"])
        self.assertEqual(table[3].split(), [A4, "1004", "called", "-", "-", "new", "waiting"])
        self.assertEqual((await self.ctl("call", "show", "c7"))[1], out)

    async def test_line_calls(self) -> None:
        """A line's calls are marked held or waiting, and three-way when joined."""
        from dataclasses import replace

        self.fake.endpoints[A1] = replace(self.fake.endpoints[A1], calls=("c1", "c7", "c8"), held=("c1",),
                                          waiting=("c8",), conference=True)
        code, out, _ = await self.ctl("line", A1)
        self.assertIn("  calls:        c1 (held), c7, c8 (waiting), three-way\n", out)


class Cluster(CtlCase):
    """The cluster in mgcpctl (issue 14): shown, and a standby's refusal of every change."""

    async def test_single_agent(self) -> None:
        """cluster on a single agent says so; stats too."""
        code, out, _ = await self.ctl("cluster")
        self.assertEqual((code, out), (0, "a single call agent: not in a cluster\n"))
        self.assertIn("cluster:       none (a single call agent)\n", (await self.ctl("stats"))[1])

    async def test_standby(self) -> None:
        """cluster on a standby: role, active, epoch, lease age, last takeover, counts, and why it is read-only."""
        self.fake.stand_by()
        code, out, _ = await self.ctl("cluster")
        self.assertEqual(code, 0)
        lines = out.rstrip("\n").split("\n")
        self.assertEqual(lines[0], f"agent {STANDBY}: STANDBY")
        self.assertEqual(lines[1], f"  active agent:   {ACTIVE}")
        self.assertEqual(lines[2], "  epoch:          7")
        self.assertEqual(lines[3], "  lease age:      0.4s (as last seen)")
        self.assertIn("  takeovers:      0 by this agent", lines)
        self.assertIn("  txid blocks:    drawn 4, in_hand 1", lines)
        self.assertIn("renewals 480", out)
        self.assertEqual(lines[-1], f"read-only: this call agent stands by: make changes at the active agent ({ACTIVE})")
        self.assertIn(f"cluster:       standby, epoch 7, active {ACTIVE}, lease age 0.4s\n", (await self.ctl("stats"))[1])
        code, out, _ = await self.ctl("--json", "cluster")
        self.assertEqual(json.loads(out)["cluster"]["role"], "standby")

    async def test_active(self) -> None:
        """cluster on the active: no read-only line."""
        self.fake.stand_by()
        self.fake.take_over()
        code, out, _ = await self.ctl("cluster")
        self.assertTrue(out.startswith(f"agent {STANDBY}: ACTIVE\n"))
        self.assertNotIn("read-only", out)
        self.assertNotIn("as last seen", out)

    async def test_changes_refused_on_a_standby(self) -> None:
        """Every command that changes something prints the standby's reason and exits 1; reading still works."""
        self.fake.stand_by()
        reason = f"mgcpctl: the switch refused (503): this call agent stands by: make changes at the active agent ({ACTIVE})\n"
        for argv in (("call", A3, A4), ("originate", A3, A4), ("hangup", "c1"), ("audit", A3),
                     ("gateway", "out", GW1), ("line", A3, "set", "dnd=yes")):
            code, out, err = await self.ctl(*argv)
            self.assertEqual((code, out, err), (1, "", reason), argv)
        for argv in (("gateways",), ("calls",), ("line", A3), ("call", "c1"), ("stats",)):
            self.assertEqual((await self.ctl(*argv))[0], 0, argv)


class Failing(TestCase):
    timeout = 20

    async def run_ctl(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        code = await ctl.run(reactor, argv, out, err, env=env or {}, stdin=io.StringIO(""), pool=pool)
        return code, out.getvalue(), err.getvalue()

    async def test_unreachable(self) -> None:
        """Nothing listening: status 3 and the reason."""
        url = f"http://127.0.0.1:{closed_port()}"
        code, out, err = await self.run_ctl("--url", url, "calls")
        self.assertEqual((code, out), (3, ""))
        self.assertEqual(err, f"mgcpctl: cannot reach the switch at {url}: connection refused\n")

    async def test_silent(self) -> None:
        """A server that never answers: status 3 after --timeout."""

        class Silent(Resource):
            isLeaf = True

            def render(self, request: Any) -> int:
                return NOT_DONE_YET

        url = serve(self, Site(Silent()))
        code, _, err = await self.run_ctl("--url", url, "--timeout", "0.2", "calls")
        self.assertEqual(code, 3)
        self.assertEqual(err, f"mgcpctl: no answer from the switch at {url} within 0.2 s\n")

    async def test_not_the_switch(self) -> None:
        """A server that is not the admin: status 1, said plainly."""

        class Other(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                return b"<html>hello</html>"

        url = serve(self, Site(Other()))
        code, _, err = await self.run_ctl("--url", url, "gateways")
        self.assertEqual(code, 1)
        self.assertIn("not JSON): is this the mgcpswitch admin?", err)

    async def test_deeply_nested_answer(self) -> None:
        """An answer of 30,000 nested arrays is 'not JSON' (status 1), not a RecursionError."""

        class Deep(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                request.setHeader(b"content-type", b"application/json")
                return b"[" * 30_000

        url = serve(self, Site(Deep()))
        code, _, err = await self.run_ctl("--url", url, "gateways")
        self.assertEqual(code, 1)
        self.assertIn("not JSON): is this the mgcpswitch admin?", err)

    async def test_usage(self) -> None:
        """Usage errors are status 2, help is 0."""
        self.assertEqual((await self.run_ctl("frobnicate"))[0], 2)
        self.assertEqual((await self.run_ctl())[0], 2)
        self.assertEqual((await self.run_ctl("gateway", "sideways", GW1))[0], 2)
        code, _, err = await self.run_ctl("--url", "ftp://x", "calls")
        self.assertEqual(code, 2)
        self.assertIn("not an http:// or https:// URL", err)
        code, _, err = await self.run_ctl("--user", "alice", "calls")
        self.assertEqual(code, 2)
        self.assertIn("--user needs --password", err)
        code, out, _ = await self.run_ctl("--help")
        self.assertEqual(code, 0)
        self.assertIn("hash-password", out)

    def test_console_script(self) -> None:
        """scripts/mgcpctl exits with the command's status (here: unreachable, 3)."""
        url = f"http://127.0.0.1:{closed_port()}"
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts", "mgcpctl"), "--url", url, "gateways"],
            capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": ROOT},
        )
        self.assertEqual((result.returncode, result.stdout), (3, ""))
        self.assertIn("connection refused", result.stderr)


def _python_without_twisted() -> str | None:
    """A system Python that cannot import Twisted (as after the quick start), or None."""
    for candidate in ("/usr/bin/python3", shutil.which("python3", path=os.defpath)):
        if candidate and os.access(candidate, os.X_OK):
            found = subprocess.run([candidate, "-c", "import twisted"], capture_output=True, timeout=30,
                                   env=_clean_env(), cwd="/")
            if found.returncode != 0:
                return candidate
    return None


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new shell: no virtualenv, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.defpath
    return {**env, **extra}


def _readme_commands() -> list[str]:
    """The mgcpctl command lines of the README's shell blocks, without their comments."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            if "mgcpctl" in line.split("#")[0].split(" ")[0]:
                commands.append(line.split("  #")[0].strip())
    return commands


class AsWritten(CtlCase):
    """mgcpctl as a new user runs it after the quick start (issue 17)."""

    timeout = 60

    async def test_readme_examples(self) -> None:
        """The README's read-only mgcpctl examples run exactly as written, from the checkout, in a new shell."""
        commands = _readme_commands()
        self.assertTrue(commands, "no mgcpctl example in the README")
        for command in commands:
            self.assertTrue(command.startswith(".venv/bin/mgcpctl "), f"{command!r}: not what the quick start installs")
        program = os.path.join(ROOT, ".venv", "bin", "mgcpctl")
        if not os.access(program, os.X_OK):
            raise SkipTest(f"README TEST SKIPPED: {program} is missing: run the suite with scripts/run-tests")
        ran = 0
        for command in commands:
            argv = shlex.split(command)
            if argv[-1] not in ("gateways", "calls", "stats"):
                continue  # the examples that act (call, hang up, audit) name lines of the default switch
            out, err, code = await getProcessOutputAndValue(
                argv[0], argv[1:], env=_clean_env(MGCPCTL_URL=self.url), path=ROOT, reactor=reactor
            )
            self.assertEqual((code, err), (0, b""), command)
            self.assertIn(b"gw1.example.net" if argv[-1] == "gateways" else b"c1" if argv[-1] == "calls" else b"active",
                          out, command)
            ran += 1
        self.assertGreaterEqual(ran, 3)

    async def test_script_under_system_python(self) -> None:
        """scripts/mgcpctl run by a python3 without Twisted runs itself again with the checkout's .venv."""
        python = _python_without_twisted()
        if python is None:
            raise SkipTest("SCRIPT TEST SKIPPED: every python3 on this machine has Twisted; nothing to show")
        if not os.access(os.path.join(ROOT, ".venv", "bin", "python"), os.X_OK):
            raise SkipTest("SCRIPT TEST SKIPPED: no .venv in the checkout: run the suite with scripts/run-tests")
        out, err, code = await getProcessOutputAndValue(
            python, [os.path.join("scripts", "mgcpctl"), "--url", self.url, "gateways"],
            env=_clean_env(), path=ROOT, reactor=reactor,
        )
        self.assertEqual((code, err), (0, b""))
        self.assertIn(GW1.encode(), out)

    async def test_script_without_venv(self) -> None:
        """Without a .venv to use, scripts/mgcpctl says how to make one (status 2), no traceback."""
        python = _python_without_twisted()
        if python is None:
            raise SkipTest("SCRIPT TEST SKIPPED: every python3 on this machine has Twisted; nothing to show")
        directory = tempfile.mkdtemp(prefix="mgcpctl-novenv-")
        self.addCleanup(shutil.rmtree, directory, True)
        os.mkdir(os.path.join(directory, "scripts"))
        shutil.copy(os.path.join(ROOT, "scripts", "mgcpctl"), os.path.join(directory, "scripts", "mgcpctl"))
        shutil.copytree(os.path.join(ROOT, "mgcpswitch"), os.path.join(directory, "mgcpswitch"))
        out, err, code = await getProcessOutputAndValue(
            python, [os.path.join(directory, "scripts", "mgcpctl"), "gateways"], env=_clean_env(), path=directory,
            reactor=reactor,
        )
        self.assertEqual((code, out), (2, b""))
        self.assertIn(b"python3 -m venv .venv && .venv/bin/pip install .", err)
        self.assertNotIn(b"Traceback", err)


class IPv6(TestCase):
    timeout = 20

    async def test_ipv6_literal_url(self) -> None:
        """mgcpctl --url http://[::1]:PORT talks to an admin listening on ::1 (issue 17: an IDNA crash before)."""
        require_ipv6()
        site = make_site(FakeCallControl(reactor), WebSettings(listen=r"tcp6:0:interface=\:\:1"), reactor)
        port = await serve_on(self, site, r"tcp6:0:interface=\:\:1")
        self.assertEqual(port.getHost().host, "::1")
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        for url in (f"http://[::1]:{port.getHost().port}", f"http://[::1]:{port.getHost().port}/"):
            out, err = io.StringIO(), io.StringIO()
            code = await ctl.run(reactor, ["--url", url, "gateways"], out, err, env={}, stdin=io.StringIO(""), pool=pool)
            self.assertEqual((code, err.getvalue()), (0, ""))
            self.assertIn(GW1, out.getvalue())
        out, err = io.StringIO(), io.StringIO()
        url = f"http://[::1]:{port.getHost().port}"
        code = await ctl.run(reactor, ["--url", url, "call", "show", "c1"], out, err, env={}, pool=pool)
        self.assertEqual((code, err.getvalue()), (0, ""))
        self.assertIn("CRCX 1001", out.getvalue())


class Authenticating(CtlCase):
    def setUp(self) -> None:
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "users")
        with open(path, "w") as f:
            f.write("alice:" + hash_password("wonderland", iterations=1000) + "\n")
        self.addCleanup(lambda: (os.remove(path), os.rmdir(directory)))
        self.settings = WebSettings(users_file=path, tokens=("tok-1",))
        super().setUp()

    async def test_no_credentials(self) -> None:
        """No credentials: status 4 and what to check."""
        code, out, err = await self.ctl("calls")
        self.assertEqual((code, out), (4, ""))
        self.assertEqual(err, "mgcpctl: authentication failed (401): check --user/--password or --token\n")

    async def test_wrong_credentials(self) -> None:
        """A wrong password or token: status 4."""
        self.assertEqual((await self.ctl("--user", "alice", "--password", "x", "calls"))[0], 4)
        self.assertEqual((await self.ctl("--token", "tok-2", "calls"))[0], 4)

    async def test_throttled(self) -> None:
        """Past the allowance of wrong passwords the switch answers 429: status 4 with when to retry."""
        for _ in range(SOURCE_BURST):
            self.assertEqual((await self.ctl("--user", "alice", "--password", "x", "calls"))[0], 4)
        code, out, err = await self.ctl("--user", "alice", "--password", "x", "calls")
        self.assertEqual((code, out), (4, ""))
        self.assertEqual(err, "mgcpctl: too many failed logins (429): retry in 5 s\n")

    async def test_good_credentials(self) -> None:
        """User and password, from options or the environment, or a token."""
        code, out, _ = await self.ctl("--user", "alice", "--password", "wonderland", "calls")
        self.assertEqual(code, 0)
        self.assertIn("c1", out)
        env = {"MGCPCTL_URL": self.url, "MGCPCTL_USER": "alice", "MGCPCTL_PASSWORD": "wonderland"}
        self.assertEqual((await self.ctl("gateways", env=env))[0], 0)
        self.assertEqual((await self.ctl("hangup", "c1", "--token", "tok-1"))[0], 0)
        self.assertEqual((await self.ctl("stats", env={"MGCPCTL_URL": self.url, "MGCPCTL_TOKEN": "tok-1"}))[0], 0)


class HashPassword(TestCase):
    async def hash(self, *argv: str, stdin: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await ctl.run(reactor, ["hash-password", *argv], out, err, env={}, stdin=io.StringIO(stdin))
        return code, out.getvalue(), err.getvalue()

    async def test_line_for_the_users_file(self) -> None:
        """hash-password USER --stdin prints USER:HASH, which verifies."""
        code, out, _ = await self.hash("alice", "--stdin", "--iterations", "1000", stdin="wonderland\n")
        self.assertEqual(code, 0)
        user, _, encoded = out.strip().partition(":")
        self.assertEqual(user, "alice")
        self.assertTrue(PasswordHash.parse(encoded).verify(b"wonderland"))
        self.assertEqual(PasswordHash.parse(encoded).iterations, 1000)

    async def test_hash_only(self) -> None:
        """Without a user, only the hash."""
        code, out, _ = await self.hash("--stdin", "--iterations", "1000", stdin="pw\n")
        self.assertTrue(out.startswith("pbkdf2_sha256$1000$"))

    async def test_refusals(self) -> None:
        """An empty password or a user name with ':' is refused."""
        code, _, err = await self.hash("--stdin", stdin="\n")
        self.assertEqual(code, 2)
        self.assertIn("empty password", err)
        code, _, err = await self.hash("a:b", "--stdin", "--iterations", "1000", stdin="pw\n")
        self.assertEqual(code, 2)
        self.assertIn("':'", err)
