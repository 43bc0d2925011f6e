# -*- test-case-name: tests.test_load -*-
"""What a load run does (L{LoadOptions}) and the causes a call can fail with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..gateway.config import FaultConfig

__all__ = ["LoadOptions", "CAUSES"]

#: Failure causes, in the order the report lists them.
CAUSES = (
    "no-dial-tone", "busy", "reorder", "no-ringing", "not-connected", "no-busy-tone",
    "not-released", "mgcp-timeout",
)


@dataclass
class LoadOptions:
    """What C{mgcpload run} does; the defaults are the command line's."""

    rate: Optional[float] = 100.0  # calls/s started; None: open loop
    concurrency: int = 100  # open loop: calls kept in progress
    duration: float = 10.0  # measurement window (s)
    warmup: float = 2.0  # calls started in the first W seconds are not counted
    hold: float = 1.0
    answer_delay: float = 0.0
    gap: float = 0.0  # between dialled digits
    hangup: str = "caller"  # caller | callee | alternate
    agent: Optional[tuple[str, int]] = None  # default: [switch] interface:port
    agent_pid: Optional[int] = None  # 0: find it; None: do not measure
    register_timeout: float = 120.0
    step_timeout: float = 5.0  # each of dial tone, ringing, connect, release
    recover_timeout: float = 15.0
    progress_interval: float = 2.0
    tick: float = 0.005  # the scheduler's period
    restart_delay: float = 0.0  # the gateways' MWD (RSIP storm)
    gateway_names: Optional[Sequence[str]] = None  # a subset of the configured gateways
    track_commands: bool = False  # count commands per line and audits in flight (RSIP storm)
    max_calls: Optional[int] = None  # stop starting calls after this many (tests)
    gc_freeze: bool = True  # gc.freeze() the population once registered
    raw_setups: bool = False  # put every measured setup latency in the report (to merge reports)
    # (factor, start, length): from start s into the measured window, for
    # length s, calls start at factor x the rate (an overload surge, issue 15)
    surge: Optional[tuple[float, float, float]] = None
    # Fault injection on the simulated gateways (both directions), as
    # C{twistd mgcpgateway --drop/--duplicate/--delay/--slow}; None: none.
    faults: Optional[FaultConfig] = None
    # After the last call: the faults stop and the gateways keep running
    # this long (the switch's retransmissions, audits and keepalives then
    # meet no loss); the report says when every line was idle again.
    settle: float = 0.0
