# -*- test-case-name: tests.test_agent_lines -*-
"""
The per-line state machine, as a table.

Each analog line the call agent drives is in one L{LineState}; inputs
(L{LineInput}) come from the gateway's notifications, from the far end of
the call, from timers and from the operator.  L{TRANSITIONS} maps every
allowed (state, input) pair to the next state and the action call control
takes; anything missing is an L{InvalidTransition} (as in h2), which call
control logs and ignores, so a late or stray notification never corrupts a
line.  Keeping the table here, away from the code that sends commands,
lets it be tested pair by pair.
"""

from __future__ import annotations

import enum
from typing import Optional

from ..errors import MGCPError
from .model import LineState

__all__ = ["LineInput", "Action", "TRANSITIONS", "InvalidTransition", "transition"]

S = LineState


class LineInput(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    OFF_HOOK = "off-hook"  # NTFY L/hd
    OFF_HOOK_DIALLING = "off-hook-dialling"  # L/hd of an idle request that embeds dial tone
    ON_HOOK = "on-hook"  # NTFY L/hu
    ARMED = "armed"  # the RQNT for dial tone was accepted
    DIGITS = "digits"  # NTFY with the dialled digits (the digit map matched)
    ROUTE_BUSY = "route-busy"  # the callee cannot take the call
    ROUTE_FAILED = "route-failed"  # unknown number, rejected, or setup failed
    ALERTING = "alerting"  # the callee rings and this line hears ringback
    INCOMING = "incoming"  # a call for this line: it is being rung
    ANSWERED = "answered"  # the far end answered (caller side)
    FAR_END_RELEASED = "far-end-released"  # the other party hung up or failed
    NO_ANSWER = "no-answer"  # the no-answer timer ran out
    RELEASED_ON_HOOK = "released-on-hook"  # DLCX done (it re-armed the line); on hook
    RELEASED_OFF_HOOK = "released-off-hook"  # DLCX done, busy tone playing; off hook
    RELEASED_REORDER = "released-reorder"  # DLCX done, reorder tone playing; off hook
    PICKED_UP = "picked-up"  # the first party of an operator-originated call answered
    RESET = "reset"  # restart, audit, gateway lost, admin: start over
    OUT_OF_SERVICE = "out-of-service"


class Action(enum.Enum):
    """What call control does on a transition (a method per action)."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    NONE = "none"
    DIAL_TONE = "dial-tone"  # RQNT R: L/hu, D/[0-9#*T](D); S: L/dl; D: map
    ARM_IDLE = "arm-idle"  # RQNT R: L/hd
    ROUTE = "route"  # ask the dial plan, set the call up
    BUSY_TONE = "busy-tone"  # RQNT R: L/hu; S: L/bz
    REORDER_TONE = "reorder-tone"  # RQNT R: L/hu; S: L/ro
    ANSWER = "answer"  # callee went off hook: connect the call
    CALL_FAR_END = "call-far-end"  # originated call: now ring the second party
    RELEASE = "release"  # delete the call's connections (DLCX), tell the far end
    AUDIT = "audit"  # AUEP, delete stale connections, then arm


# (state, input) -> (next state, action).  Every pair is tested.
TRANSITIONS: dict[tuple[LineState, LineInput], tuple[LineState, Action]] = {
    # Idle: waiting for an off-hook, or for a call to ring this line.
    (S.IDLE, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    # The gateway already gave dial tone and collected digits (embedded request).
    (S.IDLE, LineInput.OFF_HOOK_DIALLING): (S.COLLECTING, Action.NONE),
    (S.IDLE, LineInput.INCOMING): (S.RINGING, Action.NONE),
    (S.IDLE, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),  # a stale hu: re-arm
    # Dial tone requested; collecting digits once the gateway accepted it.
    (S.DIAL_TONE, LineInput.ARMED): (S.COLLECTING, Action.NONE),
    (S.DIAL_TONE, LineInput.DIGITS): (S.ROUTING, Action.ROUTE),
    (S.DIAL_TONE, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.DIAL_TONE, LineInput.ROUTE_FAILED): (S.REORDER, Action.REORDER_TONE),
    (S.COLLECTING, LineInput.DIGITS): (S.ROUTING, Action.ROUTE),
    (S.COLLECTING, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    # Routing: the dial plan decides, then connections are created.
    (S.ROUTING, LineInput.ALERTING): (S.RINGBACK, Action.NONE),
    (S.ROUTING, LineInput.ROUTE_BUSY): (S.BUSY, Action.BUSY_TONE),
    (S.ROUTING, LineInput.ROUTE_FAILED): (S.REORDER, Action.REORDER_TONE),
    (S.ROUTING, LineInput.ON_HOOK): (S.RELEASING, Action.RELEASE),
    (S.ROUTING, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.RELEASE),
    # Ringback: the callee is being rung.
    (S.RINGBACK, LineInput.ANSWERED): (S.CONNECTED, Action.NONE),
    (S.RINGBACK, LineInput.ON_HOOK): (S.RELEASING, Action.RELEASE),
    (S.RINGBACK, LineInput.NO_ANSWER): (S.RELEASING, Action.RELEASE),
    (S.RINGBACK, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.RELEASE),
    # Ringing: this line is the callee (or the first party of an originated call).
    (S.RINGING, LineInput.OFF_HOOK): (S.CONNECTED, Action.ANSWER),
    (S.RINGING, LineInput.PICKED_UP): (S.ROUTING, Action.CALL_FAR_END),
    (S.RINGING, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.RELEASE),
    (S.RINGING, LineInput.NO_ANSWER): (S.RELEASING, Action.RELEASE),
    # Connected: talking.
    (S.CONNECTED, LineInput.ON_HOOK): (S.RELEASING, Action.RELEASE),
    (S.CONNECTED, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.RELEASE),
    # Releasing: connections are being deleted; the DLCX carries the request
    # that re-arms the line (R: L/hd, or R: L/hu with a tone), so nothing more
    # is sent when it completes.
    (S.RELEASING, LineInput.RELEASED_ON_HOOK): (S.IDLE, Action.NONE),
    (S.RELEASING, LineInput.RELEASED_OFF_HOOK): (S.BUSY, Action.NONE),
    (S.RELEASING, LineInput.RELEASED_REORDER): (S.REORDER, Action.NONE),
    (S.RELEASING, LineInput.ON_HOOK): (S.RELEASING, Action.NONE),  # noted; reconciled after
    (S.RELEASING, LineInput.OFF_HOOK): (S.RELEASING, Action.NONE),  # the DLCX completes
    (S.RELEASING, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.NONE),
    # Tones after a failed or ended call: wait for the hang-up.
    (S.BUSY, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.REORDER, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.BUSY, LineInput.FAR_END_RELEASED): (S.BUSY, Action.NONE),
    (S.REORDER, LineInput.FAR_END_RELEASED): (S.REORDER, Action.NONE),
    # Unknown: after a restart the line is audited first.
    (S.UNKNOWN, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    (S.UNKNOWN, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.OUT_OF_SERVICE, LineInput.RESET): (S.UNKNOWN, Action.AUDIT),
}

# Reset and out-of-service apply from every state.
for _state in LineState:
    if _state is not S.OUT_OF_SERVICE:
        TRANSITIONS.setdefault((_state, LineInput.RESET), (S.UNKNOWN, Action.AUDIT))
    TRANSITIONS.setdefault((_state, LineInput.OUT_OF_SERVICE), (S.OUT_OF_SERVICE, Action.NONE))


class InvalidTransition(MGCPError):
    """An input the line's current state does not expect."""

    def __init__(self, state: LineState, event: LineInput) -> None:
        super().__init__(f"{event.value} is not expected in state {state.value}")
        self.state = state
        self.event = event


def transition(state: LineState, event: LineInput) -> tuple[LineState, Action]:
    """The next state and action, or L{InvalidTransition}."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


def can(state: LineState, event: LineInput) -> bool:
    return (state, event) in TRANSITIONS


def next_state(state: LineState, event: LineInput) -> Optional[LineState]:
    entry = TRANSITIONS.get((state, event))
    return entry[0] if entry else None
