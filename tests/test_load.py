"""
The load tool (mgcpswitch.load) against a real CallControlService on the
in-memory network: registration, a small paced run of complete basic calls,
open loop, failures by cause, and the report's shape.  No sockets, no
waiting: the MemoryReactor's clock is advanced.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.dialplan import StaticDialPlan
from mgcpswitch.agent.profiles import DEFAULT_PROFILE
from mgcpswitch.agent.service import CallControlService
from mgcpswitch.config import parse_settings
from mgcpswitch.load import (
    CAUSES,
    LoadOptions,
    LoadRunner,
    Report,
    build_parser,
    format_registration,
    format_report,
    gateway_layout,
    make_config,
    number_width,
    options_from_args,
    percentile,
    saturation_verdict,
)
from mgcpswitch.testing import MemoryNetwork, MemoryReactor


class Config(SynchronousTestCase):
    def test_the_config_parses_and_numbers_route(self) -> None:
        """Gateways lg1..lgK on their own ports, numbers of one width, a matching digit map."""
        text = make_config(3, 5, base_port=31000, agent=("127.0.0.1", 2999), web="default")
        settings = parse_settings(text)
        self.assertEqual([g.name for g in settings.gateways], ["lg1", "lg2", "lg3"])
        self.assertEqual([g.port for g in settings.gateways], [31000, 31001, 31002])
        self.assertEqual(settings.gateways[1].numbers, ("1005", "1006", "1007", "1008", "1009"))
        self.assertEqual(settings.switch.port, 2999)
        self.assertEqual(settings.switch.observers, ())
        self.assertFalse(settings.switch.ladder)
        self.assertEqual(str(settings.switch.digit_map), "(xxxx)")
        self.assertEqual(settings.store.url, "memory")  # a benchmark measures call control, not a disk
        self.assertEqual(parse_settings(make_config(1, 1, web="default", store="sqlite:x.db")).store.url, "sqlite:x.db")

    def test_wide_numbers_and_distinct_addresses(self) -> None:
        self.assertEqual(number_width(9000), 4)
        self.assertEqual(number_width(9001), 5)
        self.assertEqual(number_width(100_000), 6)
        layout = gateway_layout(300, 2, distinct_addresses=True, base_port=2427)
        self.assertEqual(len({host for _, host, _, _, _ in layout}), 300)
        self.assertTrue(all(port == 2427 for _, _, port, _, _ in layout))
        settings = parse_settings(make_config(100, 1000, web="0"))
        self.assertEqual(settings.gateways[-1].numbers[-1], "199999")
        self.assertEqual(settings.web.listen, "tcp:0:interface=127.0.0.1")

    def test_options_from_the_command_line(self) -> None:
        args = build_parser().parse_args(
            ["run", "--config", "x.ini", "--open-loop", "--concurrency", "7", "--hold", "0.5",
             "--agent-pid", "-1", "--hangup", "alternate"]
        )
        options = options_from_args(args)
        self.assertIsNone(options.rate)
        self.assertEqual(options.concurrency, 7)
        self.assertIsNone(options.agent_pid)
        self.assertEqual(options.hangup, "alternate")

    def test_percentile_and_verdict(self) -> None:
        self.assertIsNone(percentile([], 0.5))
        self.assertEqual(percentile([1.0, 2.0, 3.0], 0.5), 2.0)
        report = Report(cpu={"agent_cpu": 0.98, "tool_cpu": 0.6, "other_load": 0.1})
        self.assertIn("the agent saturated first", saturation_verdict(report))
        report = Report(cpu={"agent_cpu": 0.5, "tool_cpu": 0.97, "other_load": 0.1})
        self.assertIn("TOOL saturated first", saturation_verdict(report))

    def test_verdict_without_the_tools_cpu(self) -> None:
        """A report that has the agent's CPU but not the tool's (one read back, say) gets a verdict, not a TypeError."""
        report = Report(cpu={"agent_cpu": 0.98})
        verdict = saturation_verdict(report)
        self.assertIn("agent CPU 98 % of one core", verdict)
        self.assertIn("the tool's CPU is unknown", verdict)


class Run(SynchronousTestCase):
    """A switch and the tool's gateways on one in-memory network."""

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.network = MemoryNetwork(self.reactor, latency=0.0005, record=False)
        self.reactor.network = self.network
        self.settings = parse_settings(make_config(2, 20, base_port=31000, web="default"))
        self.service = CallControlService(
            self.reactor, self.settings, StaticDialPlan.from_settings(self.settings),
            {"default": DEFAULT_PROFILE}, [], random_source=random.Random(1),
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def drive(self, options: LoadOptions, seconds: float = 60.0, before: Any = None,
              register: float = 5.0) -> Report:
        runner = LoadRunner(self.reactor, self.settings, options, random=random.Random(2))
        self.runner = runner
        result: list[Any] = []
        runner.start_gateways().addCallback(result.append)
        self.network.run(register)
        self.assertEqual(len(result), 1, "every line armed")
        if before is not None:
            before()
        runner.place_calls().addBoth(result.append)
        for _ in range(int(seconds / 0.5)):
            self.network.run(0.5, step=0.001)
            if len(result) == 2:
                break
        self.addCleanup(runner.stop_gateways)
        self.assertEqual(len(result), 2, "the run ended")
        report = result[1]
        self.assertIsInstance(report, Report, report)
        return report  # type: ignore[no-any-return]

    def test_paced_run_completes_every_call(self) -> None:
        """20 calls/s for 2 s after a 0.5 s warm-up: 40 measured calls, all completed."""
        options = LoadOptions(rate=20, duration=2.0, warmup=0.5, hold=0.2, agent_pid=None,
                              progress_interval=0, gc_freeze=False)
        report = self.drive(options)
        self.assertEqual(report.attempted, 40)
        self.assertEqual(report.completed, 40)
        self.assertEqual((report.failed, report.unfinished, report.suspect_lines), (0, 0, 0))
        self.assertEqual(report.failures, {})
        self.assertEqual(report.lines, 40)
        self.assertEqual(report.starved_ticks, 0)
        self.assertEqual(report.gateways, 2)
        self.assertAlmostEqual(report.calls_per_second, 20.0, delta=1.0)
        self.assertEqual(report.setup_ms["count"], 40)
        self.assertGreater(report.setup_ms["p50"], 0.0)
        self.assertLessEqual(report.setup_ms["p50"], report.setup_ms["p99"])
        self.assertLessEqual(report.setup_ms["p99"], report.setup_ms["max"])
        # 12 transactions a basic call with the dial tone embedded in the idle
        # request (the generated config's default): ~240 commands/s.
        self.assertAlmostEqual(report.transactions_per_second, 11 * 20, delta=20)
        self.assertEqual((report.retransmissions, report.timeouts), (0, 0))
        # The switch ended every call normally and holds nothing.
        self.assertEqual(self.service.control.calls(), [])
        self.assertEqual(self.service.control.outcomes["normal"], self.runner.all_outcomes["completed"])
        for gw in self.runner.gateways:
            self.assertEqual(gw.connection_count(), 0)
        # The report's shape, as text and as JSON.
        text = format_report(report)
        for label in ("calls attempted", "calls completed", "calls failed", "calls/s",
                      "setup latency", "MGCP transactions", "retransmissions", "timeouts",
                      "agent CPU", "tool CPU", "other load", "saturation"):
            self.assertIn(label, text)
        data = json.loads(json.dumps(asdict(report), default=str))
        for key in ("attempted", "completed", "failed", "failures", "calls_per_second", "setup_ms",
                    "transactions_per_second", "retransmissions", "timeouts", "cpu", "saturation"):
            self.assertIn(key, data)

    def test_open_loop_keeps_calls_in_progress(self) -> None:
        """Open loop with 4 calls in progress; the callee hangs up first on alternate calls."""
        options = LoadOptions(rate=None, concurrency=4, duration=2.0, warmup=0.0, hold=0.1,
                              hangup="alternate", agent_pid=None, progress_interval=0,
                              gc_freeze=False)
        report = self.drive(options)
        self.assertEqual(report.peak_in_progress, 4)
        self.assertGreater(report.completed, 20)
        self.assertEqual((report.failed, report.unfinished, report.suspect_lines), (0, 0, 0))

    def test_failures_are_counted_by_cause_and_lines_recover(self) -> None:
        """
        With gateway lg2 out of service at the switch, calls to it get busy
        tone and calls from it reorder tone; every line recovers.
        """
        options = LoadOptions(rate=10, duration=2.0, warmup=0.0, hold=0.1, agent_pid=None,
                              progress_interval=0, gc_freeze=False)
        report = self.drive(
            options, before=lambda: self.service.set_gateway_in_service("lg2", False)
        )
        self.assertEqual(report.attempted, 20)
        self.assertEqual(report.completed + report.failed, 20)
        self.assertGreater(report.failed, 0)
        self.assertGreater(report.completed, 0)
        self.assertLessEqual(set(report.failures), {"busy", "reorder"})
        self.assertTrue(set(report.failures) <= set(CAUSES))
        self.assertEqual((report.unfinished, report.suspect_lines), (0, 0))
        self.assertEqual(len(self.runner.idle), 40)

    def test_register_only_counts_audits_per_line(self) -> None:
        """The RSIP-storm path: every line audited once and armed once, audits paced."""
        options = LoadOptions(agent_pid=None, progress_interval=0, restart_delay=0.5,
                              track_commands=True, gc_freeze=False)
        runner = LoadRunner(self.reactor, self.settings, options, random=random.Random(3))
        self.addCleanup(runner.stop_gateways)
        result: list[Any] = []
        runner.register().addBoth(result.append)
        self.network.run(5.0, step=0.001)
        [figures] = result
        self.assertIsInstance(figures, dict, figures)
        self.assertEqual(figures["lines"], 40)
        self.assertLessEqual(figures["rsip_due_s"]["last"], 0.5)
        self.assertGreaterEqual(figures["all_armed_s"], figures["rsip_due_s"]["last"])
        audits = figures["audits"]
        self.assertEqual(audits["auep_per_line"], {1: 40})
        self.assertEqual(audits["arming_rqnt_per_line"], {1: 40})
        self.assertLessEqual(audits["max_audits_in_flight_per_gateway"],
                             self.settings.switch.audit_concurrency)
        self.assertGreater(audits["max_audits_in_flight_per_gateway"], 1)
        self.assertEqual(figures["timeouts"], 0)
        text = format_registration(figures)
        self.assertIn("every line armed", text)


class Faults(SynchronousTestCase):
    """C{mgcpload run} with the simulated gateways' fault injection, and the end-of-run census."""

    setUp = Run.setUp
    drive = Run.drive

    def test_fault_options_from_the_command_line(self) -> None:
        """The fault options are twistd mgcpgateway's; --settle and --calls go to the options."""
        from mgcpswitch.gateway import FaultConfig

        args = build_parser().parse_args(
            ["run", "--config", "x.ini", "--drop", "0.3", "--duplicate", "0.05", "--delay", "0.05",
             "--delay-seconds", "0.25", "--settle", "30", "--calls", "10000"]
        )
        options = options_from_args(args)
        self.assertEqual(options.faults, FaultConfig(drop=0.3, duplicate=0.05, delay=0.05, delay_seconds=0.25))
        self.assertEqual((options.settle, options.max_calls), (30.0, 10000))
        plain = options_from_args(build_parser().parse_args(["run", "--config", "x.ini"]))
        self.assertEqual((plain.faults, plain.settle, plain.max_calls), (None, 0.0, None))

    def test_bad_fault_options_are_refused(self) -> None:
        """A rate out of [0, 1], faults with --lean, a negative --settle, --calls 0: a usage error naming it."""
        self.assertIn("drop must be a fraction in [0, 1]", self._error(["--drop", "1.5"]))
        self.assertIn("leave out --lean", self._error(["--lean", "--drop", "0.1"]))
        self.assertIn("--settle must be", self._error(["--settle", "-1"]))
        self.assertIn("--calls must be at least 1", self._error(["--calls", "0"]))

    def _error(self, argv: list[str]) -> str:
        """What C{mgcpload run --config x.ini ARGV} says on stderr; it must exit with status 2."""
        import contextlib
        import io

        from mgcpswitch.load import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit) as e:
            main(["run", "--config", "x.ini"] + argv)
        self.assertEqual(e.exception.code, 2, argv)
        self.assertIn("mgcpload: error:", err.getvalue())
        return err.getvalue()

    def test_calls_under_loss_end_cleanly_and_the_gateways_say_so(self) -> None:
        """
        20 % of the datagrams dropped each way (and 5 % duplicated, 5 %
        delayed) by the tool's own gateways: the injection is counted both
        ways, every call completes or fails with a cause, and after the
        faults stop (--settle) no connection is left and every line is idle
        again, as the report's census says.
        """
        from mgcpswitch.gateway import FaultConfig

        faults = FaultConfig(drop=0.2, duplicate=0.05, delay=0.05, delay_seconds=0.3)
        options = LoadOptions(rate=4, duration=5.0, warmup=0.0, hold=0.2, agent_pid=None,
                              progress_interval=0, gc_freeze=False, faults=faults, settle=20.0,
                              step_timeout=10.0, register_timeout=60.0)
        report = self.drive(options, seconds=180.0, register=60.0)
        self.assertEqual(report.attempted, 20)
        self.assertEqual(report.unfinished, 0)
        self.assertEqual(report.completed + report.failed, 20)
        self.assertEqual(sum(report.failures.values()), report.failed)
        for direction in ("sent", "received"):
            for fault in ("dropped", "duplicated", "delayed"):
                self.assertGreater(report.faults.get(f"{direction}_{fault}", 0), 0, (direction, fault))
        self.assertGreater(report.retransmissions, 0)
        # The faults stopped when the last call ended; the lines were idle within the settle.
        for gw in self.runner.gateways:
            self.assertEqual(gw.protocol.faults, FaultConfig())
        self.assertEqual(report.settle["seconds"], 20.0)
        self.assertIsNotNone(report.settle["idle_after_s"])
        self.assertEqual((report.connections_left, report.connections_left_by_endpoint, report.lines_not_idle),
                         (0, {}, 0))
        text = format_report(report)
        self.assertIn("faults injected", text)
        self.assertIn("0 connection(s) left on the gateways, 0 line(s) not idle", text)

    def test_the_census_names_connections_left(self) -> None:
        """A connection a gateway still holds at the end is counted against its endpoint, and the line is not idle."""
        options = LoadOptions(rate=10, duration=0.5, warmup=0.0, hold=0.1, agent_pid=None,
                              progress_interval=0, gc_freeze=False)
        report = self.drive(options)
        self.assertEqual((report.connections_left, report.lines_not_idle), (0, 0))
        ep = self.runner.gateways[0].endpoints[2]
        ep.connections["1234"] = object()
        try:
            self.assertEqual(self.runner.census(), ({"aaln/3@lg1": 1}, 1))
            self.assertEqual(self.runner.report().connections_left_by_endpoint, {"aaln/3@lg1": 1})
        finally:
            del ep.connections["1234"]

    def test_the_window_closes_when_every_call_of_calls_ended(self) -> None:
        """--calls 6 with a 100 s window: six calls, and the run ends when they have, not 100 s later."""
        options = LoadOptions(rate=10, duration=100.0, warmup=0.0, hold=0.1, agent_pid=None,
                              progress_interval=0, gc_freeze=False, max_calls=6)
        report = self.drive(options, seconds=20.0)
        self.assertEqual((report.attempted, report.completed), (6, 6))
        self.assertLess(report.window_seconds, 20.0)
        self.assertAlmostEqual(report.calls_per_second, 6 / report.window_seconds)

    def test_stopping_the_tool_during_the_settle_reports_at_once(self) -> None:
        """end_settle (what SIGTERM calls) during a 100 s settle: the report comes now, with the census."""
        options = LoadOptions(rate=10, duration=0.5, warmup=0.0, hold=0.1, agent_pid=None,
                              progress_interval=0, gc_freeze=False, settle=100.0)
        runner = LoadRunner(self.reactor, self.settings, options, random=random.Random(2))
        self.addCleanup(runner.stop_gateways)
        result: list[Any] = []
        runner.run().addBoth(result.append)
        self.network.run(10.0, step=0.001)
        self.assertEqual(result, [], "still settling")
        runner.end_settle()
        [report] = result
        self.assertIsInstance(report, Report, report)
        self.assertLess(report.settle["ended_after_s"], 100.0)
        self.assertEqual(report.settle["idle_after_s"], 0.0)
        self.assertEqual((report.completed, report.connections_left, report.lines_not_idle), (5, 0, 0))
        runner.end_settle()  # once only
        self.assertEqual(len(result), 1)


class Cpu(SynchronousTestCase):
    def test_the_tool_s_kernel_time_is_part_of_its_cpu(self) -> None:
        """
        The report's CPU section gives the tool's CPU seconds and, within
        them, its kernel time (system calls), and the agent's by PID (here
        this process, as a stand-in).
        """
        import os

        from mgcpswitch.load.procstat import CpuSampler

        sampler = CpuSampler(os.getpid())
        sampler.begin()
        for _ in range(20000):
            os.stat(".")  # a system call each
        out = sampler.end()
        self.assertGreaterEqual(out["tool_system_seconds"], 0.0)
        self.assertLessEqual(out["tool_system_seconds"], out["tool_cpu_seconds"])
        self.assertIsNotNone(out["agent_cpu_seconds"])
        self.assertGreaterEqual(out["agent_cpu_seconds"], 0.0)

    def test_kernel_time_never_exceeds_the_whole_by_rounding(self) -> None:
        """
        When only the kernel's time moved, the tool's CPU seconds equal its
        kernel seconds exactly: summing user and kernel before differencing
        once gave 0.049999999999954 against 0.05 and failed CI.
        """
        from mgcpswitch.load import procstat

        times = iter([(1234.56, 0.06), (1234.56, 0.11)])

        class FakeTimes:
            def __init__(self) -> None:
                self.user, self.system = next(times)

        self.patch(procstat.os, "times", FakeTimes)
        sampler = procstat.CpuSampler(None)
        sampler.begin()
        out = sampler.end()
        self.assertEqual(out["tool_system_seconds"], 0.11 - 0.06)
        self.assertEqual(out["tool_cpu_seconds"], out["tool_system_seconds"])
        self.assertIsNone(out["agent_cpu_seconds"])
