# -*- test-case-name: tests.test_load -*-
"""
One basic call as the load tool plays it (the digest §7 basic call), the
same whatever simulates the gateways:

  1. the caller goes off hook; it must hear dial tone (C{L/dl}); reorder
     tone instead (C{L/ro}: a switch shedding load refuses the call at
     its first NTFY) makes the call I{refused} (C{reorder}), timed from
     the off-hook, and busy tone a C{busy} failure; either way the caller
     hangs up;
  2. it dials the callee's number;
  3. the callee must ring (C{L/rg}) and the caller hear ringback (C{G/rt});
     I{setup latency} is the time from the last digit pressed (the moment
     the caller's endpoint accumulated it, which is when the digit map
     matched and the NTFY with the digits went out) to the later of
     "callee ringing" and "caller hears ringback", both seen on the
     gateways in this process;
  4. after C{--answer-delay} the callee answers; both lines must hold one
     C{sendrecv} connection;
  5. after C{--hold} seconds one side hangs up (the caller, the callee, or
     alternately), the other must hear busy tone (C{L/bz}) and hangs up;
  6. the call is I{completed} when both lines are on hook, hold no
     connection, play no signal and are armed again for C{L/hd}.

A step that does not happen in time fails the call with a cause (see
L{mgcpswitch.load.options.CAUSES}; C{mgcp-timeout} when one of the
gateways' NTFYs timed out); the call then hangs both lines up and waits for
them to be idle again, or the scheduler sets them aside as suspect.

L{BasicCall} is that state machine; an engine subclass says how to wait
for a condition on a line (L{Until}) and how to lift, dial and hang up.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Optional

__all__ = ["BasicCall", "Until", "DIAL_TONE", "RINGBACK", "BUSY", "REORDER", "RINGING"]

DIAL_TONE = "L/dl"
RINGBACK = "G/rt"
BUSY = "L/bz"
REORDER = "L/ro"
RINGING = "L/rg"


class Until(enum.Enum):
    """The conditions a call waits for on one of its lines."""

    __hash__ = object.__hash__

    DIAL_TONE = "hears dial tone, reorder or busy tone"
    DIALLED = "has accumulated every digit of the callee's number"
    PROGRESS = "hears ringback, busy or reorder tone"
    RINGING = "rings"
    TALKING = "holds one sendrecv connection"
    BUSY_TONE = "hears busy tone"
    IDLE = "on hook, no connection, no tone, armed for off-hook"


_EXPIRED_CAUSE = {
    "dial-tone": "no-dial-tone",
    "setup": "no-ringing",
    "answer-delay": "not-connected",
    "connect": "not-connected",
    "hold": "not-connected",
    "release": "not-released",
}


class BasicCall:
    """One basic call in progress; a small state machine driven by waits on its lines."""

    __slots__ = (
        "runner", "caller", "callee", "measured", "started", "t_digit", "t_ringback",
        "t_ringing", "setup", "step", "deadline", "pending", "done", "cause",
        "caller_hangs_up", "first", "other",
    )

    def __init__(self, runner: Any, caller: Any, callee: Any, measured: bool,
                 caller_hangs_up: bool) -> None:
        self.runner = runner
        self.caller = caller
        self.callee = callee
        self.measured = measured
        self.started = runner.now()
        self.t_digit: Optional[float] = None
        self.t_ringback: Optional[float] = None
        self.t_ringing: Optional[float] = None
        self.setup: Optional[float] = None
        self.step = "dial-tone"
        self.deadline = 0.0
        self.pending = 0
        self.done = False
        self.cause: Optional[str] = None
        self.caller_hangs_up = caller_hangs_up
        self.first: Any = None
        self.other: Any = None

    # -- the engine's part -------------------------------------------------

    def _wait(self, party: Any, until: Until, then: Callable[[], None]) -> None:
        """Call C{then()} once C{until} holds on C{party}'s line (at once if it does now)."""
        raise NotImplementedError

    def _clear_waits(self) -> None:
        raise NotImplementedError

    def _off_hook(self, party: Any) -> None:
        raise NotImplementedError

    def _on_hook(self, party: Any, recovering: bool = False) -> None:
        """Hang up; when C{recovering}, a timed-out NTFY is not the call's failure."""
        raise NotImplementedError

    def _dial(self, party: Any, number: str) -> None:
        raise NotImplementedError

    def _hears(self, party: Any, signal: str) -> bool:
        raise NotImplementedError

    def _is_off_hook(self, party: Any) -> bool:
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------

    def _step(self, name: str, timeout: float) -> None:
        self._clear_waits()
        self.step = name
        self.deadline = self.runner.now() + timeout

    def ntfy_timed_out(self) -> None:
        """One of the call's NTFYs got no answer: the call fails (unless recovering)."""
        self.runner.ntfy_timeouts += 1
        if not self.done and self.step != "recover":
            self.fail("mgcp-timeout")

    # -- the call ------------------------------------------------------------

    def start(self) -> None:
        self._step("dial-tone", self.runner.options.step_timeout)
        self._off_hook(self.caller)
        self._wait(self.caller, Until.DIAL_TONE, self._dial_number)

    def _dial_number(self) -> None:
        if self.done or self.step != "dial-tone":
            return
        if self._hears(self.caller, REORDER):
            # Shed at the off-hook: hang up at once and count the refusal.
            runner = self.runner
            runner.refused(self, runner.now() - self.started)
            self.fail("reorder")
            return
        if self._hears(self.caller, BUSY):
            self.fail("busy")  # shed with [overload] tone = busy
            return
        self._step("setup", self.runner.options.step_timeout)
        self.pending = 2
        caller, callee = self.caller, self.callee
        self._wait(caller, Until.DIALLED, self._last_digit)
        self._wait(caller, Until.PROGRESS, self._caller_progress)
        self._wait(callee, Until.RINGING, self._callee_ringing)
        self._dial(caller, callee.number)

    def _last_digit(self) -> None:
        if self.t_digit is None:
            self.t_digit = self.runner.now()

    def _caller_progress(self) -> None:
        if self.done or self.step != "setup":
            return
        if self._hears(self.caller, RINGBACK):
            self.t_ringback = self.runner.now()
            self._setup_step()
        elif self._hears(self.caller, BUSY):
            self.fail("busy")
        else:
            runner = self.runner
            runner.refused(self, runner.now() - self.t_digit if self.t_digit is not None else None)
            self.fail("reorder")

    def _callee_ringing(self) -> None:
        if self.done or self.step != "setup":
            return
        self.t_ringing = self.runner.now()
        self._setup_step()

    def _setup_step(self) -> None:
        self.pending -= 1
        if self.pending:
            return
        assert self.t_ringback is not None and self.t_ringing is not None
        if self.t_digit is not None:
            self.setup = max(self.t_ringback, self.t_ringing) - self.t_digit
        runner = self.runner
        if runner.options.answer_delay > 0:
            self.step = "answer-delay"
            self.deadline = runner.now() + runner.options.answer_delay + runner.options.step_timeout
            runner.answer_queue.append((runner.now() + runner.options.answer_delay, self))
        else:
            self.answer()

    def answer(self) -> None:
        if self.done:
            return
        self._step("connect", self.runner.options.step_timeout)
        self.pending = 2
        self._off_hook(self.callee)
        self._wait(self.caller, Until.TALKING, self._connected)
        self._wait(self.callee, Until.TALKING, self._connected)

    def _connected(self) -> None:
        if self.done or self.step != "connect":
            return
        self.pending -= 1
        if self.pending:
            return
        runner = self.runner
        self.step = "hold"
        self.deadline = runner.now() + runner.options.hold + runner.options.step_timeout
        runner.hold_queue.append((runner.now() + runner.options.hold, self))

    def hang_up(self) -> None:
        if self.done:
            return
        self._step("release", self.runner.options.step_timeout)
        first, other = (self.caller, self.callee) if self.caller_hangs_up else (self.callee, self.caller)
        self.first, self.other = first, other
        self.pending = 2
        self._on_hook(first)
        self._wait(other, Until.BUSY_TONE, self._busy_heard)
        self._wait(first, Until.IDLE, self._released)

    def _busy_heard(self) -> None:
        if self.done or self.step != "release":
            return
        other = self.other
        self._on_hook(other)
        self._wait(other, Until.IDLE, self._released)

    def _released(self) -> None:
        self._party_idle("release", None)

    def _party_idle(self, step: str, cause: Optional[str]) -> None:
        """One party is idle again; with both, the call is finished."""
        if self.done or self.step != step:
            return
        self.pending -= 1
        if self.pending:
            return
        self.done = True
        self._clear_waits()
        self.runner.finished(self, cause, True)

    # -- failure ---------------------------------------------------------------

    def fail(self, cause: str) -> None:
        """Record the cause, hang both lines up, wait until they are idle."""
        if self.done or self.step == "recover":
            return
        self.cause = cause
        self._step("recover", self.runner.options.recover_timeout)
        self.pending = 2
        for party in (self.caller, self.callee):
            if self._is_off_hook(party):
                self._on_hook(party, recovering=True)
            self._wait(party, Until.IDLE, self._recovered)

    def _recovered(self) -> None:
        self._party_idle("recover", self.cause)

    def expired(self) -> None:
        """The current step's deadline passed."""
        if self.done:
            return
        if self.step == "recover":
            self.done = True
            self._clear_waits()
            self.runner.finished(self, self.cause, False)
            return
        other = self.other
        if self.step == "release" and other is not None and self._is_off_hook(other) \
                and not self._hears(other, BUSY):
            self.fail("no-busy-tone")
            return
        self.fail(_EXPIRED_CAUSE[self.step])
