# -*- test-case-name: tests.test_load -*-
"""
The outcome of a load run: L{Report} (its JSON is C{asdict}), the text
L{format_report} prints, the registration figures of C{mgcpload register},
and the verdict on which process saturated first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

__all__ = ["Report", "cpu_per_call", "percentile", "saturation_verdict", "format_report", "format_registration"]


@dataclass
class Report:
    """The outcome of a run; L{format_report} prints it, C{asdict} makes the JSON."""

    config: dict[str, Any] = field(default_factory=dict)
    generator: str = ""  # "simulator" (full simulated gateways) or "lean"
    mode: str = ""
    target_rate: Optional[float] = None
    concurrency: Optional[int] = None
    gateways: int = 0
    lines: int = 0
    register_seconds: Optional[float] = None
    window_seconds: float = 0.0
    attempted: int = 0
    completed: int = 0
    failed: int = 0
    unfinished: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    suspect_lines: int = 0
    calls_per_second: float = 0.0
    completions_in_window: int = 0
    started_per_second: float = 0.0
    behind_schedule: int = 0
    starved_ticks: int = 0
    setup_ms: dict[str, Optional[float]] = field(default_factory=dict)
    setup_definition: str = (
        "from the last digit pressed on the caller's line to the later of "
        "'callee rings (L/rg)' and 'caller hears ringback (G/rt)', seen on the tool's gateways"
    )
    # Measured calls that heard reorder: from the last digit to the reorder tone.
    refused_ms: dict[str, Optional[float]] = field(default_factory=dict)
    # Per second of the window: started, completed, reorder, failed (otherwise).
    timeline: list[dict[str, int]] = field(default_factory=list)
    transactions_per_second: float = 0.0
    transactions: dict[str, int] = field(default_factory=dict)
    retransmissions: int = 0
    timeouts: int = 0
    duplicates_received: int = 0
    cpu: dict[str, Any] = field(default_factory=dict)
    cpu_per_call_us: dict[str, Optional[float]] = field(default_factory=dict)  # see cpu_per_call
    agent_pid: Optional[int] = None
    agent_rss_kb: Optional[int] = None
    saturation: str = ""
    peak_in_progress: int = 0
    # --profile: Python function calls (cProfile) over the window per call completed in it
    python_calls_per_call: Optional[float] = None
    audits: dict[str, Any] = field(default_factory=dict)
    setups_raw: Optional[list[float]] = None  # seconds, sorted (--raw)
    refusals_raw: Optional[list[float]] = None  # seconds, sorted (--raw)
    # The end of the run, as the tool's lines see it (after --settle, if any):
    connections_left: int = 0  # connections the gateways still hold
    connections_left_by_endpoint: dict[str, int] = field(default_factory=dict)  # those holding any
    lines_not_idle: int = 0  # lines not on hook, silent, without connection and armed for off-hook
    faults: dict[str, int] = field(default_factory=dict)  # what the fault injection did (sent_dropped, ...)
    # --settle: faults_stopped_at (the reactor's clock), seconds, idle_after_s (None: not all idle)
    settle: dict[str, Any] = field(default_factory=dict)


def cpu_per_call(r: Report) -> dict[str, Optional[float]]:
    """
    CPU microseconds per call completed in the window, of the agent and of
    the tool; the agent's per transaction (the tool's gateways' commands
    sent and received); and the tool's cost as a share of the agent's
    (issue 15: a lean generator costs at most a quarter of the agent).
    """
    cpu = r.cpu or {}
    calls = r.completions_in_window
    agent_s, tool_s = cpu.get("agent_cpu_seconds"), cpu.get("tool_cpu_seconds")
    tx = r.transactions.get("commands_received", 0) + r.transactions.get("commands_sent", 0)
    agent = agent_s / calls * 1e6 if calls and agent_s is not None else None
    tool = tool_s / calls * 1e6 if calls and tool_s is not None else None
    return {
        "agent": agent,
        "tool": tool,
        "agent_per_transaction": agent_s / tx * 1e6 if tx and agent_s is not None else None,
        "tool_to_agent": tool / agent if tool is not None and agent else None,
    }


def percentile(sorted_values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank percentile of a sorted sequence (None when empty)."""
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[k]


def milliseconds(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000.0, 3)


def saturation_verdict(r: Report) -> str:
    """Which side ran out first, from the CPU shares (each process can use one core)."""
    cpu = r.cpu or {}
    agent = cpu.get("agent_cpu")
    tool = cpu.get("tool_cpu")
    other = cpu.get("other_load")
    healthy = r.failed == 0 and (r.setup_ms.get("p99") or 0) < 50.0
    if agent is None:
        if tool is None:
            return "CPU not measured"
        return (f"the tool used {tool * 100:.0f} % of one core; the agent's CPU is unknown "
                "(give --agent-pid)")
    if tool is None:
        return f"agent CPU {agent * 100:.0f} % of one core; the tool's CPU is unknown"
    text = f"agent CPU {agent * 100:.0f} % of one core while the tool used {tool * 100:.0f} %"
    if other is not None:
        text += f" (other load {other * 100:.0f} % of a core)"
    if agent >= 0.9 and agent >= tool:
        text += ": the agent saturated first"
    elif tool >= 0.9 and tool > agent:
        text += ": the TOOL saturated first (the figures are a floor for the agent)"
    elif other is not None and other >= 0.5 and not healthy:
        text += ": neither process is at a full core; the machine is shared (other load)"
    elif healthy:
        text += ": neither saturated"
    else:
        text += ": neither at a full core, yet calls failed or were slow (latency/scheduling, not CPU)"
    return text


def _fmt(value: Optional[float], digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def format_report(r: Report) -> str:
    cpu = r.cpu or {}
    lines = [
        "mgcpload report",
        f"  population        {r.gateways} {r.generator} gateway(s), {r.lines} lines; registered and armed in "
        f"{_fmt(r.register_seconds, 2, ' s')}",
        "  load              " + (f"rate {r.target_rate:g} calls/s" if r.mode == "rate"
                                  else f"open loop, {r.concurrency} calls in progress")
        + f", hold {r.config.get('hold'):g} s, answer delay {r.config.get('answer_delay'):g} s, "
        f"warm-up {r.config.get('warmup'):g} s, window {r.window_seconds:g} s",
        f"  calls attempted   {r.attempted}  (started in the window; {r.started_per_second:.1f}/s)",
        f"  calls completed   {r.completed}",
        f"  calls failed      {r.failed}" + (
            "  (" + ", ".join(f"{k} {v}" for k, v in r.failures.items()) + ")" if r.failures else ""),
    ]
    if r.unfinished:
        lines.append(f"  unfinished        {r.unfinished}")
    if r.suspect_lines:
        lines.append(f"  suspect lines     {r.suspect_lines} (did not recover; set aside)")
    if r.behind_schedule or r.starved_ticks:
        lines.append(f"  idle lines ran out {r.starved_ticks} time(s); {r.behind_schedule} call slots dropped "
                     "(a backlog beyond one second): give more lines")
    lines += [
        f"  calls/s           {r.calls_per_second:.1f}  (completions in the window / {r.window_seconds:g} s)",
        f"  setup latency     p50 {_fmt(r.setup_ms.get('p50'), 2)}  p95 {_fmt(r.setup_ms.get('p95'), 2)}  "
        f"p99 {_fmt(r.setup_ms.get('p99'), 2)}  max {_fmt(r.setup_ms.get('max'), 2)} ms",
        f"                    ({r.setup_definition})",
    ]
    if r.refused_ms.get("count"):
        lines.append(f"  refused (reorder) {r.refused_ms['count']}: last digit -> reorder p50 "
                     f"{_fmt(r.refused_ms.get('p50'), 2)}  p99 {_fmt(r.refused_ms.get('p99'), 2)}  "
                     f"max {_fmt(r.refused_ms.get('max'), 2)} ms")
    lines += [
        f"  MGCP transactions {r.transactions_per_second:.0f}/s  (the tool's gateways' commands "
        "received + sent)",
        f"  retransmissions   {r.retransmissions} by the tool's gateways; "
        f"{r.duplicates_received} duplicate commands received (the agent's retransmissions)",
        f"  timeouts          {r.timeouts} transactions of the tool's gateways timed out",
        f"  peak in progress  {r.peak_in_progress}",
        f"  agent CPU         {_fmt(_pct(cpu.get('agent_cpu')), 0, ' %')} of one core"
        + (f"  (pid {r.agent_pid}, RSS {r.agent_rss_kb / 1024:.0f} MB)" if r.agent_pid and r.agent_rss_kb else ""),
        f"  tool CPU          {_fmt(_pct(cpu.get('tool_cpu')), 0, ' %')} of one core",
        f"  other load        {_fmt(_pct(cpu.get('other_load')), 0, ' %')} of one core "
        f"(machine busy {_fmt(_pct(cpu.get('machine_busy')), 0, ' %')} of {cpu.get('ncpu', '?')} cores)",
    ]
    per = r.cpu_per_call_us or {}
    if per.get("agent") is not None:
        lines.append(f"  agent CPU/call    {per['agent']:.0f} us per completed call, "
                     f"{_fmt(per.get('agent_per_transaction'), 1)} us per transaction")
    if per.get("tool") is not None:
        ratio = per.get("tool_to_agent")
        lines.append(f"  tool CPU/call     {per['tool']:.0f} us"
                     + ("" if ratio is None else f"  ({ratio:.2f} x the agent's)"))
    if r.python_calls_per_call is not None:
        lines.append(f"  tool calls/call   {r.python_calls_per_call:.0f} Python function calls per completed call "
                     "(cProfile over the window)")
    if r.audits:
        lines.append(f"  audits            {json.dumps(r.audits)}")
    if r.faults:
        lines.append("  faults injected   " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(r.faults.items())))
    if r.settle:
        idle = r.settle.get("idle_after_s")
        lines.append(f"  after the faults  every line idle after {_fmt(idle, 2, ' s')} of the "
                     f"{r.settle['seconds']:g} s settle" if idle is not None else
                     f"  after the faults  lines still not idle after the {r.settle['seconds']:g} s settle")
    lines.append(f"  at the end        {r.connections_left} connection(s) left on the gateways, "
                 f"{r.lines_not_idle} line(s) not idle")
    lines.append(f"  saturation        {r.saturation}")
    return "\n".join(lines)


def format_registration(r: dict[str, Any]) -> str:
    cpu = r.get("cpu") or {}
    armed = r["armed_s"]
    lines = [
        "mgcpload registration",
        f"  population        {r['gateways']} gateway(s), {r['lines']} lines; RSIPs due between "
        f"{_fmt(r['rsip_due_s']['first'], 3)} and {_fmt(r['rsip_due_s']['last'], 3)} s (restart delay "
        f"{r['restart_delay']:g} s)",
        f"  every line armed  after {r['all_armed_s']:.3f} s ({r['after_last_rsip_s']:.3f} s after the last RSIP); "
        f"lines armed by p50 {_fmt(armed['p50'], 3)} / p90 {_fmt(armed['p90'], 3)} / p99 {_fmt(armed['p99'], 3)} s",
        f"  transactions      {r['commands_received']} commands received, {r['commands_sent']} sent by the gateways",
        f"  retransmissions   {r['retransmissions']} by the gateways; {r['duplicates_received']} duplicates "
        "received (the agent's retransmissions)",
        f"  timeouts          {r['timeouts']}",
        f"  agent CPU         {_fmt(_pct(cpu.get('agent_cpu')), 0, ' %')} of one core; tool "
        f"{_fmt(_pct(cpu.get('tool_cpu')), 0, ' %')}; other load {_fmt(_pct(cpu.get('other_load')), 0, ' %')}",
    ]
    if r.get("audits"):
        a = r["audits"]
        lines += [
            f"  audits            AUEPs per line {a['auep_per_line']}; arming RQNTs (R: L/hd) per line "
            f"{a['arming_rqnt_per_line']}; RQNTs per line {a['rqnt_per_line']}",
            f"  audits in flight  at most {a['max_audits_in_flight_per_gateway']} per gateway "
            f"({a['audits_in_flight_by_gateway']})",
            f"  other commands    {a['other_commands']}",
        ]
    return "\n".join(lines)


def _pct(v: Optional[float]) -> Optional[float]:
    return None if v is None else v * 100.0
