# -*- test-case-name: tests.test_load -*-
"""
C{mgcpload}: a load generator for the call agent (issue 8).

It runs K simulated gateways of M lines each in its own process against a
running call agent, over real UDP, registers them, and places complete
basic calls at a target rate (or keeps C calls in progress, open loop),
then reports what happened.  Four subcommands:

  - C{mgcpload config --gateways K --lines M ...} prints a switch INI for
    that population, so that one file configures both the switch
    (C{twistd -n mgcpswitch --config FILE --no-simulator}) and the tool;
  - C{mgcpload run --config FILE --rate R --duration D ...} reads the same
    file, builds and binds the gateways, waits until every line is armed
    (holds the switch's C{R: L/hd}), runs the calls, and prints a report
    (text, or JSON with C{--json});
  - C{mgcpload register --config FILE [--restart-delay S] [--track]} only
    registers (the RSIP storm): the time until every line is armed, and
    with C{--track} the AUEPs and RQNTs each line received and the audits
    in flight per gateway;
  - C{mgcpload answer --config FILE --duration S} registers lean gateways
    whose lines answer every call placed on them and hang up when its far
    end has, placing none: calls in through a SIP trunk, driven by SIPp
    (benchmarks/bench_trunk.py).  It prints one JSON line when every line
    is armed, and its counts when the time is up or it is stopped (SIGTERM).

The call each pair of lines plays is described in
L{mgcpswitch.load.script}.  This module is the command line: only L{main}
picks the running reactor; the engines take it as an argument.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from ..config import Settings, parse_settings
from ..gateway import FaultConfig, GatewayConfig
from ..gwtap import Options as GatewayOptions
from .options import LoadOptions
from .population import make_config
from .report import Report, format_registration, format_report
from .lean import LeanRunner
from .scripted import LoadRunner

__all__ = ["build_parser", "options_from_args", "main"]


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    description = "\n\n".join(__doc__.split("\n\n")[1:3]) if __doc__ else None
    p = argparse.ArgumentParser(prog="mgcpload", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("config", help="print a switch INI for K gateways x M lines")
    c.add_argument("--gateways", "-k", type=int, required=True)
    c.add_argument("--lines", "-m", type=int, required=True)
    c.add_argument("--address", default="127.0.0.1", help="the gateways' address (default 127.0.0.1)")
    c.add_argument("--base-port", type=int, default=30000, help="gateway N listens on BASE+N-1")
    c.add_argument("--distinct-addresses", action="store_true",
                   help="each gateway on its own 127.1.x.y address (port BASE)")
    c.add_argument("--agent", type=_host_port, default=("127.0.0.1", 2727), help="HOST:PORT of the switch")
    c.add_argument("--web", default="free", help="web admin port, 'free' (default) or 'default' (8080)")
    c.add_argument("--observers", default="", help="observer plugins (default: none)")
    c.add_argument("--ladder", action="store_true", help="keep each call's ladder (default: no)")
    c.add_argument("--plain-dial-tone", action="store_true",
                   help="embedded_dial_tone = no: an NTFY and an RQNT per call for the dial tone")
    c.add_argument("--keepalive", type=float, default=60.0, help="keepalive_interval (default 60 s)")
    c.add_argument("--audit-concurrency", type=int, default=None)
    c.add_argument("--store", default="memory",
                   help="[store] url (default: memory, so a run measures call control, not a disk)")
    c.add_argument("--output", "-o", default=None, help="write to FILE instead of stdout")

    r = sub.add_parser("run", help="register the gateways and place calls")
    r.add_argument("--config", "-c", required=True, help="the INI (from 'mgcpload config')")
    r.add_argument("--agent", type=_host_port, default=None, help="HOST:PORT (default: [switch])")
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=float, default=None, help="calls started per second (default 100)")
    mode.add_argument("--open-loop", action="store_true", help="keep --concurrency calls in progress")
    r.add_argument("--concurrency", type=int, default=100)
    r.add_argument("--calls", type=int, default=None,
                   help="start no more than N calls in all (warm-up included); the window closes when they "
                        "have all ended, or at the end of --duration, whichever comes first")
    r.add_argument("--duration", type=float, default=10.0, help="measurement window (s)")
    r.add_argument("--warmup", type=float, default=2.0, help="not measured (s)")
    r.add_argument("--hold", type=float, default=1.0, help="talk time (s)")
    r.add_argument("--answer-delay", type=float, default=0.0)
    r.add_argument("--gap", type=float, default=0.0, help="between dialled digits (s)")
    r.add_argument("--hangup", choices=("caller", "callee", "alternate"), default="caller")
    r.add_argument("--agent-pid", type=int, default=0,
                   help="the switch's PID for its CPU (default: found from its UDP port; -1: none)")
    r.add_argument("--step-timeout", type=float, default=5.0)
    r.add_argument("--register-timeout", type=float, default=120.0)
    r.add_argument("--restart-delay", type=float, default=0.0, help="gateways' RSIP spread (MWD)")
    r.add_argument("--gateways", default=None, help="simulate only these gateways (comma separated)")
    r.add_argument("--progress-interval", type=float, default=2.0)
    r.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    r.add_argument("--raw", action="store_true", help="every setup latency in the JSON (to merge runs)")
    r.add_argument("--surge", default=None, metavar="FACTOR,START,LENGTH",
                   help="start calls at FACTOR x --rate from START s into the window for LENGTH s")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--lean", action="store_true",
                   help="the lean generator: pre-built datagrams, minimal parsing (about a third of "
                        "the simulator's CPU per call), instead of full simulated gateways; its sockets "
                        "are read every 2 ms")
    r.add_argument("--tick", type=float, default=None, metavar="MS",
                   help="the scheduler's period in ms (default 5; 2 with --lean, whose sockets are read at "
                        "each tick: a longer tick costs fewer wake-ups and adds up to a tick to each answer)")
    r.add_argument("--profile", default=None,
                   help="write a cProfile of the tool over the measured window to FILE (.prof); the report "
                        "adds the Python function calls per completed call (the CPU figures then include "
                        "the profiler's cost)")
    faults = r.add_argument_group(
        "fault injection", "the simulated gateways' faults, as twistd mgcpgateway's (the same code); "
        "each gateway draws them from its own generator, seeded from --seed")
    for key in _FAULT_OPTIONS:
        name, _, default, text = _GATEWAY_OPTIONS[key][:4]
        faults.add_argument("--" + name, type=float, default=float(default), help=text)
    r.add_argument("--settle", type=float, default=0.0,
                   help="after the last call, stop the faults and keep the gateways running S seconds "
                        "(SIGTERM ends it sooner); the report says when every line was idle again "
                        "(default 0: stop at once)")
    g = sub.add_parser("register", help="only register the gateways (RSIP storm, memory)")
    g.add_argument("--config", "-c", required=True)
    g.add_argument("--agent", type=_host_port, default=None)
    g.add_argument("--restart-delay", type=float, default=0.0,
                   help="each gateway sends its RSIP after a uniform delay in [0, S]")
    g.add_argument("--agent-pid", type=int, default=0)
    g.add_argument("--register-timeout", type=float, default=300.0)
    g.add_argument("--track", action="store_true",
                   help="count AUEP/RQNT per line and the audits in flight per gateway")
    g.add_argument("--gateways", default=None)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--lean", action="store_true", help="register lean gateways (no --track)")
    g.add_argument("--json", action="store_true")
    g.add_argument("--quiet", "-q", action="store_true")
    a = sub.add_parser("answer", help="lean lines answer the calls others place (through a trunk)")
    a.add_argument("--config", "-c", required=True)
    a.add_argument("--agent", type=_host_port, default=None)
    a.add_argument("--duration", type=float, default=60.0, help="answer for at most S seconds (default 60)")
    a.add_argument("--register-timeout", type=float, default=120.0)
    a.add_argument("--gateways", default=None)
    a.add_argument("--seed", type=int, default=None)
    a.add_argument("--json", action="store_true", help="the counts as JSON (the ready line is JSON anyway)")
    a.add_argument("--quiet", "-q", action="store_true")
    return p


#: twistd mgcpgateway's fault options that C{mgcpload run} takes too (their
#: names, defaults and help are read from there).
_FAULT_OPTIONS = ("drop", "duplicate", "delay", "delay-seconds", "slow", "slow-seconds")
_GATEWAY_OPTIONS = {row[0]: row for row in GatewayOptions.optParameters}


def _faults(a: argparse.Namespace) -> Optional[FaultConfig]:
    """
    The run's fault injection (None: none).  @raise ValueError: naming the
    option out of range (as L{GatewayConfig} checks it).
    """
    faults = FaultConfig(
        drop=a.drop, duplicate=a.duplicate, delay=a.delay, delay_seconds=a.delay_seconds,
        slow_answer=a.slow, slow_seconds=a.slow_seconds,
    )
    if not faults.any:
        return None
    GatewayConfig(faults=faults)  # slow_seconds against the execution timeout
    return faults


def options_from_args(a: argparse.Namespace) -> LoadOptions:
    if a.command == "answer":
        return LoadOptions(
            agent=a.agent, agent_pid=None, duration=a.duration, register_timeout=a.register_timeout,
            gateway_names=[n.strip() for n in a.gateways.split(",")] if a.gateways else None,
            progress_interval=0, tick=_tick(a),
        )
    if a.command == "register":
        return LoadOptions(
            agent=a.agent, agent_pid=None if a.agent_pid < 0 else a.agent_pid,
            register_timeout=a.register_timeout, restart_delay=a.restart_delay,
            gateway_names=[n.strip() for n in a.gateways.split(",")] if a.gateways else None,
            track_commands=a.track, progress_interval=0, tick=_tick(a),
        )
    return LoadOptions(
        rate=None if a.open_loop else (a.rate if a.rate is not None else 100.0),
        concurrency=a.concurrency,
        duration=a.duration,
        warmup=a.warmup,
        hold=a.hold,
        answer_delay=a.answer_delay,
        gap=a.gap,
        hangup=a.hangup,
        agent=a.agent,
        agent_pid=None if a.agent_pid < 0 else a.agent_pid,
        register_timeout=a.register_timeout,
        step_timeout=a.step_timeout,
        progress_interval=0 if a.quiet else a.progress_interval,
        restart_delay=a.restart_delay,
        gateway_names=[n.strip() for n in a.gateways.split(",")] if a.gateways else None,
        raw_setups=a.raw,
        tick=_tick(a),
        surge=_surge(a.surge) if a.surge else None,
        faults=_faults(a),
        settle=a.settle,
        max_calls=a.calls,
    )


def _surge(text: str) -> tuple[float, float, float]:
    """C{FACTOR,START,LENGTH} (--surge)."""
    try:
        factor, start, length = (float(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"mgcpload: --surge wants FACTOR,START,LENGTH (e.g. 2,10,30), not {text!r}") from None
    if factor < 1 or start < 0 or length <= 0:
        raise SystemExit(f"mgcpload: --surge {text}: factor >= 1, start >= 0, length > 0")
    return factor, start, length


def _tick(a: argparse.Namespace) -> float:
    """
    The scheduler's period.  The lean generator reads its sockets at each
    tick, so its answers wait up to a tick: 2 ms rather than 5 keeps that
    small beside a setup time (see LeanRunner's C{polled}).
    """
    if getattr(a, "tick", None) is not None:
        return float(a.tick) / 1000.0
    return 0.002 if getattr(a, "lean", False) or a.command == "answer" else LoadOptions.tick


def _ready(seconds: float) -> None:
    """C{mgcpload answer}: one JSON line on stdout when every line is armed, for whoever waits on it."""
    sys.stdout.write(json.dumps({"armed_seconds": seconds}) + "\n")
    sys.stdout.flush()


def main(argv: Optional[list[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "lean", False):
        if getattr(args, "gap", 0.0) > 0:
            parser.error("--lean presses the whole number at once: leave out --gap")
        if getattr(args, "track", False):
            parser.error("--track counts commands on the simulator's gateways: leave out --lean")
        if args.command == "run" and any(getattr(args, k.replace("-", "_")) for k in ("drop", "duplicate", "delay", "slow")):
            parser.error("fault injection runs on the simulator's gateways: leave out --lean")
    if args.command == "config":
        import shlex

        text = make_config(
            args.gateways, args.lines, address=args.address, base_port=args.base_port,
            agent=args.agent, distinct_addresses=args.distinct_addresses, web=args.web,
            observers=[o.strip() for o in args.observers.split(",") if o.strip()],
            ladder=args.ladder, embedded_dial_tone=not args.plain_dial_tone,
            keepalive_interval=args.keepalive,
            audit_concurrency=args.audit_concurrency, store=args.store,
            command="mgcpload " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        )
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return
    if args.command == "run" and args.settle < 0:
        parser.error("--settle must be a number of seconds >= 0")
    if args.command == "run" and args.calls is not None and args.calls < 1:
        parser.error("--calls must be at least 1")
    try:
        options = options_from_args(args)
    except ValueError as e:
        parser.error(f"fault injection: {e}")
    with open(args.config, encoding="utf-8") as f:
        settings = parse_settings(f.read(), args.config)
    sys.exit(_run(settings, options, args))


def _run(settings: Settings, options: LoadOptions, args: argparse.Namespace) -> int:
    import random

    from twisted.internet.defer import maybeDeferred
    from twisted.internet.task import react
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    # Warnings and errors of the gateways on stderr; Twisted would otherwise
    # buffer every event (and what it names) in memory until logging begins.
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(LogLevel.warn)]
    )], redirectStandardIO=False)

    result: dict[str, Any] = {}
    profiler = None
    if getattr(args, "profile", None):
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time, not wall

    def done(report: Report | dict[str, Any]) -> None:  # run's Report; register's and answer's counts
        result["report"] = report

    def failed(failure: Failure) -> None:
        result["error"] = failure.getErrorMessage()
        sys.stderr.write(f"mgcpload: {failure.getErrorMessage()}\n")

    def main(reactor: Any) -> Any:
        # task.react hands us the running reactor: only the script picks it.
        out = None if args.quiet else sys.stderr
        runner: LoadRunner | LeanRunner
        if args.command == "answer" or args.lean:
            # A process of its own: the lean gateways tick on a loop of their own.
            runner = LeanRunner(reactor, settings, options, out=out, random=random.Random(args.seed), own_loop=True)
        else:
            runner = LoadRunner(reactor, settings, options, out=out, random=random.Random(args.seed))
        if profiler is not None:
            if args.command == "run":
                runner.profiler = profiler  # the window only
            else:
                profiler.enable()
        work: Callable[[], Deferred[Report] | Deferred[dict[str, Any]]]
        if args.command == "answer":
            assert isinstance(runner, LeanRunner)  # answering is the lean generator's alone
            reactor.addSystemEventTrigger("before", "shutdown", lambda: runner.stop_answering())
            work = lambda: runner.answer(_ready)  # noqa: E731
        else:
            work = runner.register if args.command == "register" else runner.run
            if args.command == "run":
                # SIGTERM during --settle: the report of now, not none.
                reactor.addSystemEventTrigger("before", "shutdown", runner.end_settle)
        d = maybeDeferred(work).addCallbacks(done, failed)
        return d.addBoth(lambda _: runner.stop_gateways())

    try:
        react(main)
    except SystemExit:
        pass  # react exits when main's Deferred fires; the report follows
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if "report" not in result:
        return 2
    report = result["report"]
    if args.command in ("register", "answer"):
        if args.json:
            sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        elif args.command == "answer":
            sys.stdout.write(f"mgcpload answer: {report['answered']} call(s) answered, {report['released']} "
                             f"released; {report['off_hook']} line(s) still off hook\n")
        else:
            sys.stdout.write(format_registration(report) + "\n")
        return 0
    if args.json:
        sys.stdout.write(json.dumps(asdict(report), indent=2, default=str) + "\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0 if report.failed == 0 and report.unfinished == 0 else 1


if __name__ == "__main__":
    main()
