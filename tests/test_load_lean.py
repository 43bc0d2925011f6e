"""
The lean generator (C{mgcpload run --lean}, mgcpswitch.load.lean and
mgcpswitch.load.wire): complete calls against the real CallControlService
on the in-memory network, every line idle afterwards, its retransmissions
and its duplicate handling under seeded loss; the gateway side of MGCP it
speaks, command by command, against a scripted agent; and one run over
real UDP on loopback.  No timed assertions: the clocks are advanced.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mgcpswitch.agent.dialplan import StaticDialPlan
from mgcpswitch.agent.model import LineState
from mgcpswitch.agent.profiles import DEFAULT_PROFILE
from mgcpswitch.agent.service import CallControlService
from mgcpswitch.config import parse_settings
from mgcpswitch.load import LoadOptions, Report, build_parser, format_report, make_config, options_from_args
from mgcpswitch.load.lean import LeanRunner
from mgcpswitch.load.wire import LeanGateway, LeanTimers
from mgcpswitch.mgcp import Response, decode
from mgcpswitch.testing import MemoryNetwork, MemoryReactor

AGENT = ("127.0.0.1", 2727)


def _options(**changes: Any) -> LoadOptions:
    values: dict[str, Any] = dict(rate=20, duration=2.0, warmup=0.5, hold=0.2, agent_pid=None,
                                  progress_interval=0, gc_freeze=False)
    values.update(changes)
    return LoadOptions(**values)


class AgainstTheSwitch(SynchronousTestCase):
    """Lean gateways and the real call agent on one in-memory network."""

    def build(self, loss: float = 0.0, embedded: bool = True, lines: int = 20, seed: int = 0) -> None:
        self.reactor = MemoryReactor()
        self.network = MemoryNetwork(self.reactor, latency=0.0005, loss=loss, seed=seed)
        self.reactor.network = self.network
        self.settings = parse_settings(make_config(2, lines, base_port=31000, web="default",
                                                   embedded_dial_tone=embedded))
        self.service = CallControlService(
            self.reactor, self.settings, StaticDialPlan.from_settings(self.settings),
            {"default": DEFAULT_PROFILE}, [], random_source=random.Random(1),
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def drive(self, options: LoadOptions, seconds: float = 120.0, profiler: Any = None) -> Report:
        runner = LeanRunner(self.reactor, self.settings, options, random=random.Random(2))
        runner.profiler = profiler
        self.runner = runner
        self.addCleanup(runner.stop_gateways)
        result: list[Any] = []
        runner.start_gateways().addCallback(result.append)
        self.network.run(10.0, step=0.001)
        self.assertEqual(len(result), 1, "every line armed")
        runner.place_calls().addBoth(result.append)
        for _ in range(int(seconds / 0.5)):
            self.network.run(0.5, step=0.001)
            if len(result) == 2:
                break
        self.assertEqual(len(result), 2, "the run ended")
        report = result[1]
        self.assertIsInstance(report, Report, report)
        return report  # type: ignore[no-any-return]

    def assertEverythingIdle(self) -> None:
        """Every lean line and every line at the switch idle; no call, no connection anywhere."""
        self.network.run(2.0, step=0.001)  # the last answers and retransmissions settle
        busy = [ep for ep in self.runner.parties if not ep.idle()]
        self.assertEqual(busy, [])
        control = self.service.control
        self.assertEqual(control.calls(), [])
        states = {control.line(ep.name.decode()).state for ep in self.runner.parties}
        self.assertEqual(states, {LineState.IDLE})

    def test_paced_run_completes_every_call(self) -> None:
        """20 calls/s for 2 s: 40 measured calls, all completed in 12 transactions each."""
        self.build()
        report = self.drive(_options())
        self.assertEqual(report.generator, "lean")
        self.assertEqual((report.attempted, report.completed), (40, 40))
        self.assertEqual((report.failed, report.unfinished, report.suspect_lines), (0, 0, 0))
        self.assertEqual(report.setup_ms["count"], 40)
        self.assertGreater(report.setup_ms["p50"], 0.0)
        # The dial tone comes from the idle request's embedded request: 12
        # transactions a call (4 NTFYs, 2 CRCX, 2 MDCX, 2 DLCX, 2 RQNT).
        self.assertAlmostEqual(report.transactions_per_second, 11 * 20, delta=20)
        self.assertEqual((report.retransmissions, report.timeouts, report.duplicates_received), (0, 0, 0))
        self.assertEqual(self.service.control.outcomes["normal"], self.runner.all_outcomes["completed"])
        self.assertEverythingIdle()
        self.assertIn("lean gateway(s)", format_report(report))
        self.assertIsNone(report.python_calls_per_call, "no profiler, no count")

    def test_python_calls_per_call(self) -> None:
        """With a profiler, the report counts the tool's Python function calls per call of the window."""
        import cProfile

        self.build()
        report = self.drive(_options(rate=10, duration=1.0), profiler=cProfile.Profile())
        self.assertEqual(report.completed, 10)
        assert report.python_calls_per_call is not None
        self.assertGreater(report.python_calls_per_call, 100)  # the switch's calls too: one process here
        self.assertIn("Python function calls per completed call", format_report(report))

    def test_surge_and_timeline(self) -> None:
        """
        --surge 3,1,1 at 10 calls/s: the window's second second starts 30
        calls, the others 10, and the timeline counts them and their ends.
        """
        self.build(lines=40)
        report = self.drive(_options(rate=10, duration=3.0, warmup=0.5, surge=(3.0, 1.0, 1.0)))
        started = [second.get("started", 0) for second in report.timeline]
        self.assertEqual(started, [10, 30, 10])
        self.assertEqual(sum(second.get("completed", 0) for second in report.timeline), report.completions_in_window)
        self.assertEqual((report.failed, report.refused_ms["count"]), (0, 0))

    def test_refusals_are_timed(self) -> None:
        """
        With the overload guard admitting no new call (as after a long run
        of late probes), every call is refused: its caller hears reorder,
        and the time from its last digit to the reorder tone is reported.
        """
        self.build()
        guard = self.service.control.overload
        guard.stop()
        guard.settings = replace(guard.settings, floor=0.0)
        guard.share = 0.0
        report = self.drive(_options(rate=10, duration=1.0, warmup=0.5))
        self.assertEqual((report.completed, report.failures), (0, {"reorder": 10}))
        self.assertEqual(report.refused_ms["count"], 10)
        self.assertGreater(report.refused_ms["p50"], 0.0)
        self.assertLess(report.refused_ms["max"], 10.0)  # one NTFY's round trip and a tick on this network
        self.assertEqual(sum(second.get("reorder", 0) for second in report.timeline), 10)
        self.assertIn("refused (reorder) 10", format_report(report))

    def test_refusals_at_the_off_hook(self) -> None:
        """
        The same without the embedded dial tone: the guard refuses each call
        at its off-hook NTFY; the caller hears reorder instead of dial tone,
        hangs up, and the line (re-armed by the gateway) serves the next call.
        """
        self.build(embedded=False)
        guard = self.service.control.overload
        guard.stop()
        guard.settings = replace(guard.settings, floor=0.0)
        guard.share = 0.0
        report = self.drive(_options(rate=10, duration=1.0, warmup=0.5))
        self.assertEqual((report.completed, report.failures, report.unfinished), (0, {"reorder": 10}, 0))
        self.assertEqual(report.refused_ms["count"], 10)
        self.assertEqual(self.runner.counters()["timeouts"], 0)
        self.assertEverythingIdle()

    def test_plain_dial_tone(self) -> None:
        """Without the embedded request the line asks for dial tone: 14 transactions, every call completes."""
        self.build(embedded=False)
        report = self.drive(_options(hangup="alternate"))
        self.assertEqual((report.attempted, report.completed, report.failed), (40, 40, 0))
        self.assertAlmostEqual(report.transactions_per_second, 13 * 20, delta=20)
        self.assertEverythingIdle()

    def test_open_loop(self) -> None:
        """Open loop with 6 calls in progress and the callee hanging up: calls complete, lines idle."""
        self.build()
        report = self.drive(_options(rate=None, concurrency=6, warmup=0.0, hangup="callee"))
        self.assertEqual(report.peak_in_progress, 6)
        self.assertGreater(report.completed, 40)
        self.assertEqual((report.failed, report.unfinished), (0, 0))
        self.assertEverythingIdle()

    def test_loss_retransmissions_and_duplicates(self) -> None:
        """
        With 5 % of the datagrams lost (seeded), the generator retransmits its
        NTFYs and answers the agent's retransmitted commands from its cache,
        without executing them again: every call completes and every line
        ends idle, with no connection left on either side.
        """
        self.build(loss=0.05, lines=30, seed=7)
        report = self.drive(_options(rate=10, duration=4.0, hold=0.3))
        self.assertEqual((report.completed, report.failed, report.unfinished), (report.attempted, 0, 0))
        counters = self.runner.counters()
        self.assertGreater(counters["retransmissions"], 0)
        self.assertGreater(counters["duplicates"], 0)
        self.assertEqual(counters["timeouts"], 0)
        self.assertEverythingIdle()

    def one_call_losing(self, first: Any) -> bytes:
        """One call while the first datagram C{first(data)} picks is lost; that datagram."""
        self.build()
        self.network.record = True
        dropped: list[bytes] = []

        def pick(data: bytes) -> bool:
            if not dropped and first(data):
                dropped.append(data)
                return True
            return False

        self.network.drop_next(pick)
        report = self.drive(_options(rate=5, duration=1.0, warmup=0.0, max_calls=1))
        self.assertEqual((report.completed, report.failed), (1, 0))
        self.assertEverythingIdle()
        [lost] = dropped
        return lost

    def test_a_lost_answer_is_repeated_not_reexecuted(self) -> None:
        """
        The answer to a CRCX is lost: the agent sends the CRCX again and gets
        the same answer (the same connection id), and the line holds one
        connection, not two (the call ends with every line idle).
        """
        # Ours: "200 txid OK", I:, then the SDP; the agent's 200s answer NTFYs and carry no I:.
        lost = self.one_call_losing(
            lambda data: data.startswith(b"200 ") and b"\r\nI: " in data and b"\r\n.\r\n" not in data)
        again = [d.data for d in self.network.log if d.data == lost and d.fate == "delivered"]
        self.assertEqual(len(again), 1, "the same bytes answered the retransmitted CRCX")
        self.assertEqual(self.runner.counters()["duplicates"], 1)

    def test_a_lost_ntfy_is_retransmitted(self) -> None:
        """The caller's NTFY is lost: the generator sends the same bytes again and the call completes."""
        lost = self.one_call_losing(lambda data: data.startswith(b"NTFY "))
        sent = [d for d in self.network.log if d.data == lost]
        self.assertEqual([d.fate for d in sent], ["dropped", "delivered"])
        self.assertGreaterEqual(sent[1].time - sent[0].time, 0.1)  # after the backed-off timer, not at once
        self.assertEqual(self.runner.counters()["retransmissions"], 1)


class SheddingAgent(DatagramProtocol):
    """
    An agent that sheds every call at its first NTFY, as the overload guard
    does: 200, then reorder with the hang-up's only action an embedded
    request that re-arms the line.  C{idle}: the request it arms the lines
    with after their RSIP.  Records every NTFY's observed events.
    """

    def __init__(self, lines: int, idle: str) -> None:
        self.lines = lines
        self.idle = idle
        self.observed: list[str] = []
        self.txid = 5000

    def command(self, text: str, addr: Any) -> None:
        self.txid += 1
        assert self.transport is not None
        self.transport.write((text % self.txid).replace("\n", "\r\n").encode(), addr)

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        for message in decode(data):
            if isinstance(message, Response):
                continue
            assert self.transport is not None
            self.transport.write(b"200 %d OK\r\n" % message.transaction_id, addr)
            endpoint = str(message.endpoint)
            if data.startswith(b"RSIP "):
                domain = endpoint.split("@")[1]
                for i in range(1, self.lines + 1):
                    self.command(f"RQNT %d aaln/{i}@{domain} MGCP 1.0\nX: 1\nR: {self.idle}\nD: (xxxx)", addr)
                continue
            self.observed.append(data.split(b"\r\nO: ")[1].split(b"\r\n")[0].decode())
            self.command(f"RQNT %d {endpoint} MGCP 1.0\nX: 2\nR: L/hu(E(R(L/hd(N))))\nS: L/ro", addr)


class ShedCalls(SynchronousTestCase):
    """
    Calls refused at their first NTFY (the agent's overload shedding): the
    generator counts them as refused (reorder), hangs up, sends no NTFY for
    the hang-up (its only action re-arms the line) and reuses the line.
    """

    def shed(self, idle: str, first_ntfy: str) -> None:
        reactor = MemoryReactor()
        network = MemoryNetwork(reactor, latency=0.0005)
        reactor.network = network
        agent = SheddingAgent(4, idle)
        port = reactor.listenUDP(AGENT[1], agent, interface=AGENT[0])
        self.addCleanup(port.stopListening)
        settings = parse_settings(make_config(1, 4, base_port=31000, web="default"))
        runner = LeanRunner(reactor, settings, _options(rate=10, duration=1.0, warmup=0.0, agent=AGENT),
                            random=random.Random(5))
        self.addCleanup(runner.stop_gateways)
        result: list[Any] = []
        runner.run().addBoth(result.append)
        for _ in range(40):
            network.run(0.5, step=0.001)
            if result:
                break
        [report] = result
        self.assertIsInstance(report, Report, report)
        self.assertEqual((report.attempted, report.completed, report.failures), (10, 0, {"reorder": 10}))
        self.assertEqual((report.unfinished, report.suspect_lines), (0, 0))
        self.assertEqual(report.refused_ms["count"], 10)
        self.assertLess(report.refused_ms["max"], 10.0)  # off-hook -> reorder: one round trip and a tick
        # One NTFY per call, none for a hang-up; a line the shed re-armed
        # with L/hd(N) reports its next off-hook alone.
        self.assertEqual(len(agent.observed), 10)
        self.assertTrue(all(o == "L/hd" or o.startswith(first_ntfy) for o in agent.observed), agent.observed)
        self.assertIn(first_ntfy, " ".join(agent.observed))
        self.assertEqual(runner.counters()["timeouts"], 0)
        self.assertTrue(all(ep.idle() and ep.armed for ep in runner.parties))

    def test_shed_at_off_hook(self) -> None:
        """C{R: L/hu(E(R(L/hd(N))))} with C{S: L/ro} at the off-hook: refused, hung up in silence, re-armed."""
        self.shed("L/hd(N)", "L/hd")

    def test_shed_with_embedded_dial_tone(self) -> None:
        """
        With the switch's embedded dial tone the first NTFY carries the
        dialled number: the caller hears reorder after dialling, the same.
        """
        self.shed("L/hd(A,E(R(L/hu(N), D/[0-9#*T](D)),S(L/dl)))", "L/hd, D/1, D/0, D/0, D/")


class ScriptedAgent(DatagramProtocol):
    """The agent's side, by hand: records what the gateway sends."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        self.received.append(data)


class GatewaySide(SynchronousTestCase):
    """One lean gateway of two lines against a scripted agent: the answers, command by command."""

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.network = MemoryNetwork(self.reactor, latency=0.001)
        self.reactor.network = self.network
        self.agent = ScriptedAgent()
        self.port = self.reactor.listenUDP(AGENT[1], self.agent, interface=AGENT[0])
        self.timers = LeanTimers(t_hist=30.0)
        self.gw = LeanGateway(self.reactor, "lg1", 2, ("1001", "1002"), "127.0.0.9", 2427, AGENT,
                              random.Random(3), timers=self.timers)
        self.gw.listen(self.reactor)
        self.addCleanup(self.gw.stop)
        self.tick()
        [self.rsip] = self.agent.received
        self.answer_last()

    def tick(self, seconds: float = 0.01) -> None:
        self.network.run(seconds, step=0.001)
        self.gw.tick(self.reactor.seconds())
        self.network.run(0.005, step=0.001)

    def send(self, text: str) -> Response:
        """One command from the agent; the decoded answer."""
        before = len(self.agent.received)
        self.port.write(text.replace("\n", "\r\n").encode(), ("127.0.0.9", 2427))
        self.network.run(0.01, step=0.001)
        answers = [m for d in self.agent.received[before:] for m in decode(d) if isinstance(m, Response)]
        self.assertEqual(len(answers), 1, self.agent.received[before:])
        return answers[0]

    def answer_last(self, code: int = 200, extra: str = "") -> None:
        """The agent answers the gateway's latest command."""
        txid = self.agent.received[-1].split(b" ", 2)[1].decode()
        self.port.write(f"{code} {txid} OK\r\n{extra}".encode(), ("127.0.0.9", 2427))
        self.network.run(0.01, step=0.001)

    def test_rsip_then_audit(self) -> None:
        """RSIP restart for *@lg1 at start; AUEP answers I, N and ES; the wildcard lists the lines."""
        rsip = self.rsip
        self.assertTrue(rsip.startswith(b"RSIP ") and b" *@lg1 MGCP 1.0\r\nRM: restart\r\n" in rsip, rsip)
        self.assertTrue(self.gw.registered)
        audit = self.send("AUEP 100 aaln/1@lg1 MGCP 1.0\nF: I,N,ES,X")
        self.assertEqual(audit.code, 200)
        text = self.agent.received[-1]
        self.assertIn(b"\r\nES: L/hu\r\n", text)
        self.assertIn(b"\r\nN: 127.0.0.1:2727\r\n", text)
        self.assertIn(b"\r\nX: 0\r\n", text)
        listing = self.send("AUEP 101 *@lg1 MGCP 1.0")
        self.assertEqual(listing.code, 200)
        self.assertIn(b"Z: aaln/1@lg1\r\nZ: aaln/2@lg1\r\n", self.agent.received[-1])

    def test_return_codes(self) -> None:
        """Unknown endpoint 500, unknown verb 504, wrong connection 515, bad mode 517, hook preconditions."""
        self.assertEqual(self.send("RQNT 1 aaln/9@lg1 MGCP 1.0\nX: 1\nR: L/hd").code, 500)
        self.assertEqual(self.send("MESG 2 aaln/1@lg1 MGCP 1.0").code, 504)
        self.assertEqual(self.send("MDCX 3 aaln/1@lg1 MGCP 1.0\nC: 1\nI: FEED\nM: sendrecv").code, 515)
        self.assertEqual(self.send("CRCX 4 aaln/1@lg1 MGCP 1.0\nC: 1\nM: shout").code, 517)
        self.assertEqual(self.send("RQNT 5 aaln/1@lg1 MGCP 1.0\nX: 2\nR: L/hu(N)").code, 402)
        self.assertEqual(self.send("RQNT 6 aaln/1@lg1 MGCP 1.0\nX: 3\nR: L/hu(N), D/[0-9](D)").code, 402)
        self.gw.lines[0].off_hook()
        self.assertEqual(self.send("RQNT 7 aaln/1@lg1 MGCP 1.0\nX: 4\nS: L/rg").code, 401)
        self.assertEqual(self.send("RQNT 8 aaln/1@lg1 MGCP 1.0\nX: 5\nR: D/[0-9](D)").code, 519)
        self.assertEqual(self.send("RQNT 9 aaln/1@lg1 MGCP 1.0\nX: 6\nR: L/hu(N)\nS: L/dl").code, 200)
        self.assertEqual(self.gw.lines[0].signals, {"L/dl"})

    def test_connections(self) -> None:
        """CRCX answers I: and SDP, MDCX the SDP, DLCX of one connection 250 with P:."""
        created = self.send("CRCX 10 aaln/2@lg1 MGCP 1.0\nC: A1\nM: recvonly\nX: 7\nR: L/hd(N)")
        self.assertEqual(created.code, 200)
        [cid] = self.gw.lines[1].connections
        self.assertIn(b"\r\nI: " + cid + b"\r\n\r\nv=0\r\n", self.agent.received[-1])
        modified = self.send(f"MDCX 11 aaln/2@lg1 MGCP 1.0\nC: A1\nI: {cid.decode()}\nM: sendrecv")
        self.assertEqual(modified.code, 200)
        self.assertIn(b"\r\n\r\nv=0\r\n", self.agent.received[-1])
        self.assertTrue(self.gw.lines[1].talking())
        self.assertEqual(self.send(f"DLCX 12 aaln/2@lg1 MGCP 1.0\nC: B2\nI: {cid.decode()}").code, 516)
        deleted = self.send(f"DLCX 13 aaln/2@lg1 MGCP 1.0\nC: A1\nI: {cid.decode()}")
        self.assertEqual(deleted.code, 250)
        self.assertIn(b"\r\nP: PS=0", self.agent.received[-1])
        self.assertEqual(self.gw.lines[1].connections, {})

    def test_embedded_request_and_digit_map(self) -> None:
        """
        The idle request with an embedded dial-tone request: off-hook plays
        dial tone at once, the digits accumulate until the map matches, then
        one NTFY with the request's X and every observed event in order.
        """
        self.send("RQNT 20 aaln/1@lg1 MGCP 1.0\nX: 9A\n"
                  "R: L/hd(A,E(R(L/hu(N), D/[0-9#*T](D)),S(L/dl)))\nD: (xxxx|*xx)")
        ep = self.gw.lines[0]
        self.assertTrue(ep.armed)
        before = len(self.agent.received)
        ep.off_hook()
        self.assertEqual(ep.signals, {"L/dl"})
        ep.press("100")
        self.network.run(0.01, step=0.001)
        self.assertEqual(len(self.agent.received), before, "no NTFY before the map matches")
        self.assertEqual(ep.signals, frozenset(), "the first digit stops the dial tone")
        ep.press("2")
        self.network.run(0.01, step=0.001)
        ntfy = self.agent.received[-1]
        self.assertTrue(ntfy.startswith(b"NTFY "), ntfy)
        self.assertIn(b"aaln/1@lg1 MGCP 1.0\r\n", ntfy)
        self.assertIn(b"\r\nX: 9A\r\nO: L/hd, D/1, D/0, D/0, D/2\r\n", ntfy)

    def test_quarantine_until_the_next_request(self) -> None:
        """
        After a NTFY (step mode) events wait in quarantine until it is
        answered and a new request came; then the request in force decides.
        """
        self.send("RQNT 30 aaln/1@lg1 MGCP 1.0\nX: 1\nR: L/hd(N)")
        ep = self.gw.lines[0]
        ep.off_hook()
        self.network.run(0.01, step=0.001)
        self.assertEqual(len([d for d in self.agent.received if d.startswith(b"NTFY")]), 1)
        ep.press("5")
        self.assertEqual(ep.quarantine, [b"D/5"])
        self.answer_last()
        self.assertEqual(ep.quarantine, [b"D/5"], "step mode: no request since the NTFY")
        self.assertEqual(self.send("RQNT 31 aaln/1@lg1 MGCP 1.0\nX: 2\nR: L/hd(N)").code, 401)
        self.assertEqual(ep.quarantine, [b"D/5"], "a refused request changes nothing")
        self.send("RQNT 32 aaln/1@lg1 MGCP 1.0\nX: 3\nR: L/hu(N), D/[0-9](N)")
        self.assertEqual(ep.quarantine, [])
        self.network.run(0.01, step=0.001)
        answer, ntfy = self.agent.received[-2:]
        self.assertTrue(answer.startswith(b"200 32 "), "the answer to the request goes first")
        self.assertIn(b"\r\nX: 3\r\nO: D/5\r\n", ntfy)

    def test_duplicates_and_k_confirmations(self) -> None:
        """
        A retransmitted command gets the same bytes and is not executed
        again; once the agent confirms the answer with K:, the answer is
        dropped but the id still recognised (a late copy gets nothing);
        after at least T-HIST (at most twice that) the id is forgotten.
        """
        self.send("CRCX 40 aaln/1@lg1 MGCP 1.0\nC: C1\nM: recvonly")
        first = self.agent.received[-1]
        self.send("CRCX 40 aaln/1@lg1 MGCP 1.0\nC: C1\nM: recvonly")
        self.assertEqual(self.agent.received[-1], first)
        self.assertEqual(len(self.gw.lines[0].connections), 1)
        self.send("RQNT 41 aaln/1@lg1 MGCP 1.0\nK: 40\nX: 1\nR: L/hd(N)")
        self.assertIsNone(self.gw.answers[40])
        self.assertTrue(self.gw.remembers(40))
        before = len(self.agent.received)
        self.port.write(b"CRCX 40 aaln/1@lg1 MGCP 1.0\r\nC: C1\r\nM: recvonly\r\n", ("127.0.0.9", 2427))
        self.network.run(0.01, step=0.001)
        self.assertEqual(len(self.agent.received), before)
        self.assertEqual(self.gw.counters["duplicates"], 2)
        self.tick(31.0)
        self.assertTrue(self.gw.remembers(41), "kept at least T-HIST")
        self.tick(31.0)
        self.assertFalse(self.gw.remembers(40))
        self.assertFalse(self.gw.remembers(41))

    def test_ntfy_backoff_provisional_and_give_up(self) -> None:
        """
        An unanswered NTFY goes again with a growing interval; a provisional
        100 moves the next try to LONGTRAN; a final with an empty K: gets its
        000; one never answered is given up at T-MAX and the line leaves
        notification state.
        """
        self.send("RQNT 50 aaln/1@lg1 MGCP 1.0\nX: 1\nR: L/hd(N)")
        ep = self.gw.lines[0]
        ep.off_hook()
        self.network.run(0.005, step=0.001)
        ntfy = self.agent.received[-1]
        times = []
        start = self.reactor.seconds()
        for _ in range(300):
            self.tick(0.01)
            if self.agent.received[-1] == ntfy and len([d for d in self.agent.received if d == ntfy]) > len(times) + 1:
                times.append(self.reactor.seconds() - start)
            if len(times) == 3:
                break
        self.assertEqual(len(times), 3)
        gaps = [b - a for a, b in zip([0.0] + times, times)]
        self.assertLess(gaps[0], gaps[2], gaps)  # exponential backoff (with jitter)
        txid = ntfy.split(b" ", 2)[1].decode()
        self.port.write(f"100 {txid} Pending\r\n".encode(), ("127.0.0.9", 2427))
        copies = len([d for d in self.agent.received if d == ntfy])
        self.tick(4.5)
        self.assertEqual(len([d for d in self.agent.received if d == ntfy]), copies, "quiet during LONGTRAN")
        self.port.write(f"200 {txid} OK\r\nK:\r\n".encode(), ("127.0.0.9", 2427))
        self.network.run(0.01, step=0.001)
        self.assertEqual(self.agent.received[-1], f"000 {txid}\r\n".encode())
        self.assertEqual(ep.ntfy, 0)
        # A second NTFY nobody answers: given up at T-MAX.
        self.send("RQNT 51 aaln/1@lg1 MGCP 1.0\nX: 2\nR: L/hu(N)")
        ep.on_hook()
        self.assertNotEqual(ep.ntfy, 0)
        for _ in range(25):
            self.tick(1.0)
        self.assertEqual(ep.ntfy, 0)
        self.assertEqual(self.gw.counters["timeouts"], 1)
        self.assertEqual(self.gw.outstanding, {})

    def test_malformed_input_never_raises(self) -> None:
        """Garbage is counted and dropped; a command without an endpoint gets 400."""
        self.port.write(b"\x00\xffnonsense", ("127.0.0.9", 2427))
        self.network.run(0.01, step=0.001)
        self.assertEqual(self.gw.counters["malformed"], 1)
        self.assertEqual(self.send("RQNT 60").code, 400)
        self.assertEqual(self.send("RQNT 61 aaln/1@lg1 MGCP 1.0\nX: 1\nR: L/hd(((").code // 100, 5)


class Piggybacking(SynchronousTestCase):
    """How a datagram is cut into messages (L{mgcpswitch.load.wire._piggybacked}), without a regex."""

    def test_as_the_separator_line_says(self) -> None:
        """Every form of the line "." (CRLF or LF on either side), as RFC 3435's separator regex cuts."""
        import re

        from mgcpswitch.load.wire import _piggybacked

        separator = re.compile(rb"\r?\n\.\r?\n")
        messages = [b"200 1 OK", b"200 2 OK\r\nI: 1A\r\n\r\nv=0\r\ns=-", b"RQNT 3 aaln/1@gw MGCP 1.0\nX: 1",
                    b"x.y", b"a\r\n", b"b\n"]
        separators = [b"\r\n.\r\n", b"\n.\n", b"\r\n.\n", b"\n.\r\n"]
        rnd = random.Random(7)
        for _ in range(3000):
            data = rnd.choice(messages)
            for _ in range(rnd.randrange(3)):
                data += rnd.choice(separators) + rnd.choice(messages)
            self.assertEqual(_piggybacked(data), separator.split(data), data)


class PolledSockets(SynchronousTestCase):
    """A polled gateway reads one datagram per L{LeanGateway.read}; its owner's epoll says when more wait."""

    def test_a_burst_is_read_in_rounds_in_order(self) -> None:
        import select
        import socket

        from twisted.internet import reactor as real

        gw = LeanGateway(Clock(), "lg1", 2, ("1001", "1002"), "127.0.0.1", 0, ("127.0.0.1", 9),
                         random=random.Random(1))
        gw.listen(real, polled=True)
        self.addCleanup(gw.stop)
        fd = gw.fileno()
        assert fd is not None
        poller = select.epoll()
        self.addCleanup(poller.close)
        poller.register(fd, select.EPOLLIN)
        address = gw._udp.getHost()
        agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(agent.close)
        agent.bind(("127.0.0.1", 0))
        for txid in range(100, 105):
            agent.sendto(b"EPCF %d aaln/1@lg1 MGCP 1.0\r\n" % txid, (address.host, address.port))
        rounds = 0
        while poller.poll(1.0 if rounds == 0 else 0):
            gw.read()
            rounds += 1
        self.assertEqual(rounds, 5)
        gw.read()  # nothing waiting: no exception, nothing counted
        agent.settimeout(1.0)
        answers = [agent.recv(100) for _ in range(5)]
        self.assertEqual(answers, [b"200 %d OK\r\n" % t for t in range(100, 105)])
        self.assertEqual(gw.counters["commands_received"], 5)


class CommandLine(SynchronousTestCase):
    def test_lean_option(self) -> None:
        """C{run --lean} and C{register --lean} parse (a 2 ms tick); --gap and --track are refused with it."""
        args = build_parser().parse_args(["run", "--config", "x.ini", "--lean"])
        self.assertTrue(args.lean)
        self.assertEqual(options_from_args(args).gap, 0.0)
        self.assertEqual(options_from_args(args).tick, 0.002, "the lean sockets are read every 2 ms")
        plain = options_from_args(build_parser().parse_args(["run", "--config", "x.ini"]))
        self.assertEqual(plain.tick, LoadOptions().tick)
        longer = options_from_args(build_parser().parse_args(["run", "--config", "x.ini", "--lean", "--tick", "5"]))
        self.assertEqual(longer.tick, 0.005, "--tick is in ms")
        from mgcpswitch.load import main

        for argv in (["run", "--config", "x.ini", "--lean", "--gap", "0.1"],
                     ["register", "--config", "x.ini", "--lean", "--track"]):
            with self.assertRaises(SystemExit):
                main(argv)


class OverRealUDP(TestCase):
    """The lean gateways and the switch, as twistd builds it, over loopback sockets."""

    timeout = 60

    def test_calls_over_loopback(self) -> Deferred[None]:
        """A few calls at 20/s over real sockets, read at each tick: every one completes, every line idle."""
        return self.calls_over_loopback(polled=True)

    def test_calls_over_loopback_read_by_the_reactor(self) -> Deferred[None]:
        """The same with the reactor reading the sockets as datagrams come."""
        return self.calls_over_loopback(polled=False)

    def calls_over_loopback(self, polled: bool) -> Deferred[None]:
        import socket

        from twisted.internet import reactor

        from mgcpswitch.tap import build_switch

        def free() -> int:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                return int(s.getsockname()[1])

        ports = [free() for _ in range(3)]
        settings = parse_settings(make_config(2, 10, base_port=ports[1], agent=("127.0.0.1", ports[0]),
                                              web="default").replace(f"port = {ports[1] + 1}",
                                                                     f"port = {ports[2]}"))
        switch = build_switch(reactor, settings, web=False)
        switch.startService()
        self.addCleanup(switch.stopService)
        runner = LeanRunner(reactor, settings, _options(rate=20, duration=0.5, warmup=0.0, hold=0.05),
                            random=random.Random(4), polled=polled)
        self.addCleanup(runner.stop_gateways)

        def check(report: Report) -> None:
            self.assertEqual(runner._poller is not None, polled)
            self.assertEqual((report.attempted, report.failed, report.unfinished), (10, 0, 0))
            self.assertEqual(report.completed, 10)
            self.assertTrue(all(ep.idle() for ep in runner.parties))

        return runner.run().addCallback(check)


class _Reactor(Clock):
    """
    A task.Clock with what the lean loop reads of a real reactor:
    C{timeout()} (how long until its next timer is due), a blocking wait
    (L{block}: time moves, no timer runs, as while the real process
    blocks between ticks), and L{turn}, one iteration that runs the
    timers due when it begins (a C{callLater(0)} made during the turn
    waits for the next one, as on the real reactor; C{Clock.advance}
    would run it at once).
    """

    def timeout(self) -> Optional[float]:
        return max(0.0, self.calls[0].getTime() - self.rightNow) if self.calls else None

    def block(self, seconds: float) -> None:
        self.rightNow += seconds

    def turn(self) -> None:
        now = self.rightNow
        for call in [c for c in self.calls if c.getTime() <= now]:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


class OwnLoop(SynchronousTestCase):
    """The lean generator's own loop (L{mgcpswitch.load.lean._Loop}): ticks, slices, the reactor's timers."""

    def test_ticks_in_slices_and_yields_to_the_reactor(self) -> None:
        """A tick every interval; a slice ends after 0.1 s or when a reactor timer is due, which then runs."""
        from mgcpswitch.load.lean import _Loop

        reactor = _Reactor()
        ticks: list[float] = []
        fired: list[float] = []
        reactor.callLater(0.0301, lambda: fired.append(reactor.seconds()))
        loop = _Loop(reactor, 0.002, lambda: ticks.append(reactor.seconds()), wait=reactor.block)
        self.assertEqual(ticks, [], "the first slice at the reactor's next turn")
        reactor.turn()
        self.assertEqual(fired, [], "the slice ran alone")
        self.assertEqual(len(ticks), 17, "ticks at 0, 2, ... 32 ms, and then the reactor's timer was due")
        self.assertAlmostEqual(ticks[1] - ticks[0], 0.002)
        reactor.turn()  # the reactor's turn: its timer, then the next slice
        self.assertEqual(len(fired), 1)
        self.assertAlmostEqual(reactor.seconds(), 0.132)
        self.assertEqual(len(ticks), 17 + 50, "a whole slice of 0.1 s: no timer due")
        self.assertTrue(loop.running)
        loop.stop()
        reactor.turn()
        self.assertEqual(len(ticks), 67, "stopped: no more slices")
        self.assertEqual(reactor.calls, [])

    def test_a_failing_tick_is_logged_and_the_next_one_comes(self) -> None:
        from mgcpswitch.load.lean import _Loop

        reactor = _Reactor()
        ticks: list[float] = []

        def tick() -> None:
            ticks.append(reactor.seconds())
            if len(ticks) == 2:
                raise RuntimeError("boom")
            if len(ticks) == 5:
                loop.stop()

        loop = _Loop(reactor, 0.01, tick, wait=reactor.block)
        reactor.turn()
        self.assertEqual(len(ticks), 5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(reactor.calls, [])
