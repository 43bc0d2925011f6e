# -*- test-case-name: tests.test_agent_lines -*-
"""
The line machine: the only code that writes a line's state.

Each analog line the call agent drives is in one L{LineState}.  Inputs
(L{LineInput}) are typed values: what the gateway notified (hook changes,
digits), what became of the line's calls (ringing, answered, released) and
what the registry learnt (the gateway lost the line's state, an audit is
about to tell us the hook).  L{TRANSITIONS} maps every allowed (state,
input) pair to the next state and the L{Action} the coordinator carries
out, L{ANY_STATE} the two inputs that apply whatever the line does; a pair
missing from both is ignored (and counted), so a late or stray
notification never corrupts a line.  As in h2, the machine holds
very little: its job is the transitions, and it returns what to do as a
value instead of doing it.

Every row fires in some path of the switch (a test runs those paths and
checks), so the tables are the whole story of a line.
"""

from __future__ import annotations

import enum
import itertools
from typing import Any, Callable, Optional

from ..errors import MGCPError
from .model import Hook, LineState

__all__ = [
    "LineInput",
    "Action",
    "TRANSITIONS",
    "ANY_STATE",
    "InvalidTransition",
    "transition",
    "Line",
    "LineMachine",
]

S = LineState


class LineInput(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    OFF_HOOK = "off-hook"  # NTFY L/hd (or a 401 answer: already off hook)
    OFF_HOOK_DIALLING = "off-hook-dialling"  # L/hd of an idle request that embeds dial tone
    ON_HOOK = "on-hook"  # NTFY L/hu (or a 402 answer: already on hook)
    ARMED = "armed"  # the RQNT for dial tone was accepted
    DIGITS = "digits"  # NTFY with the dialled digits (the digit map matched)
    ROUTE_BUSY = "route-busy"  # the callee cannot take the call
    ROUTE_FAILED = "route-failed"  # unknown number, rejected, or setup failed
    ALERTING = "alerting"  # the callee rings and this line hears ringback
    INCOMING = "incoming"  # a call for this line: it is being rung
    ANSWERED = "answered"  # the far end answered (caller side)
    RING_REFUSED = "ring-refused"  # the line was dialling on its own when we rang it
    PICKED_UP = "picked-up"  # the first party of an operator-originated call answered
    FAR_END_RELEASED = "far-end-released"  # the line's call is being released
    # The line's last connection is gone and its DLCX carried the request
    # that re-armed it (for off-hook, or for the hang-up with a tone):
    RELEASED_ON_HOOK = "released-on-hook"
    RELEASED_OFF_HOOK = "released-off-hook"  # busy tone playing
    RELEASED_REORDER = "released-reorder"  # reorder tone playing
    # The line's call is gone and nothing re-armed it (no connection was
    # made, or its DLCX failed): the action arms it.
    CLEARED_ON_HOOK = "cleared-on-hook"
    CLEARED_OFF_HOOK = "cleared-off-hook"  # busy tone
    CLEARED_REORDER = "cleared-reorder"  # reorder tone
    CLEARED_DIALLING = "cleared-dialling"  # a callee off hook before it rang: dial tone
    RESUMED = "resumed"  # a talking call taken over from the store (after a restart)
    # Services (hook-flash, call waiting, three-way, transfer, recall, star codes):
    FLASH = "flash"  # NTFY L/hf: the services decide what it means now
    HOLD = "hold"  # the talking call is put on hold: recall dial tone to dial another
    RETRIEVED = "retrieved"  # a held or waiting call becomes the one the line talks to
    JOINED = "joined"  # the held call and the consultation call are mixed (three-way)
    PARTY_LEFT = "party-left"  # one of a three-way call's parties left: back to a two-party call
    ACTIVE_GONE = "active-gone"  # the talking call ended; held or waiting calls remain (off hook): busy tone
    ACTIVE_FAILED = "active-failed"  # the same, the call having failed: reorder tone
    RECALL = "recall"  # on hook with held or waiting calls: ring the line for them
    HELD_GONE = "held-gone"  # the last held or waiting call ended
    TRANSFERRED = "transferred"  # this line's party was transferred to a call still ringing
    DROPPED = "dropped"  # the call ringing this line went on to ring another (forward on no answer)
    FEATURE_NUMBER = "feature-number"  # a star code that wants a number (*72): dial it now
    FEATURE_DONE = "feature-done"  # a star code was applied: confirmation tone
    RESET = "reset"  # the gateway lost the line's state, or an audit starts
    RESTARTING = "restarting"  # the gateway restarts the endpoint, back after a delay
    OUT_OF_SERVICE = "out-of-service"  # the gateway says the endpoint is not there


class Action(enum.Enum):
    """What the coordinator does on a transition."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    NONE = "none"
    DIAL_TONE = "dial-tone"  # RQNT R: L/hu, D/[0-9#*T](D); S: L/dl; D: map
    ARM_IDLE = "arm-idle"  # RQNT R: L/hd (or the embedded dialling request)
    ROUTE = "route"  # ask the dial plan, set the call up
    BUSY_TONE = "busy-tone"  # RQNT R: L/hu; S: L/bz
    REORDER_TONE = "reorder-tone"  # RQNT R: L/hu; S: L/ro
    ANSWER = "answer"  # the callee went off hook: connect the call
    CALL_FAR_END = "call-far-end"  # originated call: now ring the second party
    RELEASE = "release"  # release the line's call (DLCX its connections)
    FLASH = "flash"  # the services act on the hook-flash (or re-arm the line: no stray tone)
    RECALL_DIAL_TONE = "recall-dial-tone"  # RQNT S: L/sl; R: L/hu, L/hf, digits (feature digit map)
    WATCH_CALL = "watch-call"  # RQNT R: L/hu, L/hf (no signal): talking, or holding calls
    RING = "ring"  # RQNT S: L/rg; R: L/hd (recall for a held call)
    ANSWER_RECALL = "answer-recall"  # off hook after a recall: retrieve the held call
    STUTTER_DIAL_TONE = "stutter-dial-tone"  # the second stage of a star code: its number
    CONFIRM_TONE = "confirm-tone"  # RQNT S: G/cf; R: L/hu


# (state, input) -> (next state, action).  Every pair is tested, and every
# row is shown to fire in some path of the switch.
TRANSITIONS: dict[tuple[LineState, LineInput], tuple[LineState, Action]] = {
    # Idle: waiting for an off-hook, or for a call to ring this line.
    (S.IDLE, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    # The gateway already gave dial tone and collects digits (embedded request).
    (S.IDLE, LineInput.OFF_HOOK_DIALLING): (S.COLLECTING, Action.NONE),
    (S.IDLE, LineInput.INCOMING): (S.RINGING, Action.NONE),
    (S.IDLE, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),  # a stale hu: re-arm
    # Dial tone requested; collecting digits once the gateway accepted it.
    (S.DIAL_TONE, LineInput.ARMED): (S.COLLECTING, Action.NONE),
    (S.DIAL_TONE, LineInput.DIGITS): (S.ROUTING, Action.ROUTE),
    (S.DIAL_TONE, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    # A hook change our view did not expect (the gateway notified it and
    # now waits for a request): start over from what the phone does.
    (S.DIAL_TONE, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    (S.COLLECTING, LineInput.DIGITS): (S.ROUTING, Action.ROUTE),
    (S.COLLECTING, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.COLLECTING, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    # Routing: the dial plan decides, then connections are created.
    (S.ROUTING, LineInput.ALERTING): (S.RINGBACK, Action.NONE),
    (S.ROUTING, LineInput.ROUTE_BUSY): (S.BUSY, Action.BUSY_TONE),
    (S.ROUTING, LineInput.ROUTE_FAILED): (S.REORDER, Action.REORDER_TONE),
    (S.ROUTING, LineInput.ON_HOOK): (S.RELEASING, Action.RELEASE),
    (S.ROUTING, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.RELEASE),
    # Ringback: the callee is being rung.
    (S.RINGBACK, LineInput.ANSWERED): (S.CONNECTED, Action.NONE),
    (S.RINGBACK, LineInput.ON_HOOK): (S.RELEASING, Action.RELEASE),
    (S.RINGBACK, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.RELEASE),
    # Ringing: this line is the callee (or the first party of an originated call).
    (S.RINGING, LineInput.OFF_HOOK): (S.CONNECTED, Action.ANSWER),
    (S.RINGING, LineInput.PICKED_UP): (S.ROUTING, Action.CALL_FAR_END),
    (S.RINGING, LineInput.RING_REFUSED): (S.IDLE, Action.NONE),
    (S.RINGING, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.RELEASE),
    # Connected: talking.
    (S.CONNECTED, LineInput.ON_HOOK): (S.RELEASING, Action.RELEASE),
    (S.CONNECTED, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.RELEASE),
    # Releasing: connections are being deleted; hook changes are noted (the
    # coordinator reconciles them once the line is free).
    (S.RELEASING, LineInput.ON_HOOK): (S.RELEASING, Action.NONE),
    (S.RELEASING, LineInput.OFF_HOOK): (S.RELEASING, Action.NONE),
    (S.RELEASING, LineInput.FAR_END_RELEASED): (S.RELEASING, Action.NONE),
    (S.RELEASING, LineInput.RELEASED_ON_HOOK): (S.IDLE, Action.NONE),
    (S.RELEASING, LineInput.RELEASED_OFF_HOOK): (S.BUSY, Action.NONE),
    (S.RELEASING, LineInput.RELEASED_REORDER): (S.REORDER, Action.NONE),
    (S.RELEASING, LineInput.CLEARED_ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.RELEASING, LineInput.CLEARED_OFF_HOOK): (S.BUSY, Action.BUSY_TONE),
    (S.RELEASING, LineInput.CLEARED_REORDER): (S.REORDER, Action.REORDER_TONE),
    (S.RELEASING, LineInput.CLEARED_DIALLING): (S.DIAL_TONE, Action.DIAL_TONE),
    # Services: the flash goes to the services wherever one may mean something;
    # what they decide comes back as one of the inputs below.
    (S.CONNECTED, LineInput.FLASH): (S.CONNECTED, Action.FLASH),
    (S.HOLDING, LineInput.FLASH): (S.HOLDING, Action.FLASH),
    (S.DIAL_TONE, LineInput.FLASH): (S.DIAL_TONE, Action.FLASH),
    (S.COLLECTING, LineInput.FLASH): (S.COLLECTING, Action.FLASH),
    (S.RINGBACK, LineInput.FLASH): (S.RINGBACK, Action.FLASH),
    (S.CONFERENCE, LineInput.FLASH): (S.CONFERENCE, Action.FLASH),
    (S.BUSY, LineInput.FLASH): (S.BUSY, Action.FLASH),
    (S.REORDER, LineInput.FLASH): (S.REORDER, Action.FLASH),
    (S.CONNECTED, LineInput.HOLD): (S.DIAL_TONE, Action.RECALL_DIAL_TONE),
    (S.CONNECTED, LineInput.RETRIEVED): (S.CONNECTED, Action.WATCH_CALL),  # swap, or answer the waiting call
    (S.HOLDING, LineInput.RETRIEVED): (S.CONNECTED, Action.WATCH_CALL),
    (S.DIAL_TONE, LineInput.RETRIEVED): (S.CONNECTED, Action.WATCH_CALL),
    (S.COLLECTING, LineInput.RETRIEVED): (S.CONNECTED, Action.WATCH_CALL),
    (S.RINGBACK, LineInput.RETRIEVED): (S.CONNECTED, Action.WATCH_CALL),
    (S.BUSY, LineInput.RETRIEVED): (S.CONNECTED, Action.WATCH_CALL),
    (S.REORDER, LineInput.RETRIEVED): (S.CONNECTED, Action.WATCH_CALL),
    (S.CONNECTED, LineInput.JOINED): (S.CONFERENCE, Action.WATCH_CALL),
    (S.RINGBACK, LineInput.JOINED): (S.CONFERENCE, Action.WATCH_CALL),
    (S.CONFERENCE, LineInput.PARTY_LEFT): (S.CONNECTED, Action.WATCH_CALL),
    (S.CONFERENCE, LineInput.ON_HOOK): (S.RELEASING, Action.RELEASE),
    (S.CONNECTED, LineInput.TRANSFERRED): (S.RINGBACK, Action.NONE),
    (S.RINGING, LineInput.DROPPED): (S.RELEASING, Action.NONE),
    (S.RELEASING, LineInput.ACTIVE_GONE): (S.HOLDING, Action.BUSY_TONE),
    (S.RELEASING, LineInput.ACTIVE_FAILED): (S.HOLDING, Action.REORDER_TONE),
    (S.RELEASING, LineInput.RECALL): (S.RECALLING, Action.RING),
    # On hook while dialling a third party, or hearing a tone, with a call on hold.
    (S.DIAL_TONE, LineInput.RECALL): (S.RECALLING, Action.RING),
    (S.COLLECTING, LineInput.RECALL): (S.RECALLING, Action.RING),
    (S.BUSY, LineInput.RECALL): (S.RECALLING, Action.RING),
    (S.REORDER, LineInput.RECALL): (S.RECALLING, Action.RING),
    (S.HOLDING, LineInput.ON_HOOK): (S.RECALLING, Action.RING),
    (S.HOLDING, LineInput.HELD_GONE): (S.BUSY, Action.BUSY_TONE),
    (S.RECALLING, LineInput.OFF_HOOK): (S.CONNECTED, Action.ANSWER_RECALL),
    (S.RECALLING, LineInput.HELD_GONE): (S.IDLE, Action.ARM_IDLE),
    # Star codes: a second stage for a number (*72 NUMBER), then confirmation.
    (S.ROUTING, LineInput.FEATURE_NUMBER): (S.DIAL_TONE, Action.STUTTER_DIAL_TONE),
    (S.ROUTING, LineInput.FEATURE_DONE): (S.CONFIRMED, Action.CONFIRM_TONE),
    (S.CONFIRMED, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.CONFIRMED, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    # Tones after a failed or ended call: wait for the hang-up.
    (S.BUSY, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.BUSY, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    (S.REORDER, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.REORDER, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    # Unknown: after a restart, or while an audit runs; the audit's answer
    # (the hook state) arms the line.
    (S.UNKNOWN, LineInput.OFF_HOOK): (S.DIAL_TONE, Action.DIAL_TONE),
    (S.UNKNOWN, LineInput.ON_HOOK): (S.IDLE, Action.ARM_IDLE),
    (S.UNKNOWN, LineInput.RESUMED): (S.CONNECTED, Action.NONE),
}

# Inputs that apply in every state: the gateway lost the line's state (a
# restart, an audit starting), restarts it with a delay, or says the
# endpoint is not there, whatever the line was doing.  A row of TRANSITIONS for the same input wins.
ANY_STATE: dict[LineInput, tuple[LineState, Action]] = {
    LineInput.RESET: (S.UNKNOWN, Action.NONE),
    LineInput.RESTARTING: (S.RESTARTING, Action.NONE),
    LineInput.OUT_OF_SERVICE: (S.OUT_OF_SERVICE, Action.NONE),
}


class InvalidTransition(MGCPError):
    """An input the line's current state does not expect."""

    def __init__(self, state: LineState, event: LineInput) -> None:
        super().__init__(f"{event.value} is not expected in state {state.value}")
        self.state = state
        self.event = event


def transition(state: LineState, event: LineInput) -> tuple[LineState, Action]:
    """The next state and action, or L{InvalidTransition}."""
    entry = TRANSITIONS.get((state, event)) or ANY_STATE.get(event)
    if entry is None:
        raise InvalidTransition(state, event)
    return entry


class Line:
    """
    What the call agent knows of one analog line's activity.  Written only
    by L{LineMachine}; the endpoint it serves (name, gateway, number) is
    the registry's.

    @ivar legs: the half-calls on this line, oldest first.  A line may hold
        several (a held call and a waiting one); the basic call has one.
    @ivar request_id: the X: of the notification request the gateway runs.
    @ivar dialling_armed: that request is the idle one with dial tone
        embedded, so its L/hd arrives with the digits.
    """

    __slots__ = ("endpoint", "state", "hook", "request_id", "dialling_armed", "legs", "last_event", "pending")

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.state = LineState.UNKNOWN
        self.hook = Hook.UNKNOWN
        self.request_id: Optional[str] = None
        self.dialling_armed = False
        self.legs: list[Any] = []
        self.last_event: Optional[str] = None
        self.pending: Optional[str] = None  # a star code waiting for its number (*72 ...)

    @property
    def leg(self) -> Any:
        """The leg the line talks on (the newest not held nor waiting), else its newest, or None."""
        legs = self.legs
        if not legs:
            return None
        if len(legs) > 1:
            for leg in reversed(legs):
                if not leg.held and not leg.waiting:
                    return leg
        return legs[-1]

    @property
    def active(self) -> Any:
        """The leg the line talks on, or None when it only holds (or has a call waiting)."""
        for leg in reversed(self.legs):
            if not leg.held and not leg.waiting:
                return leg
        return None

    def __repr__(self) -> str:
        return f"<Line {self.endpoint.name} {self.state.value} hook {self.hook.value}>"


class LineMachine:
    """
    Feeds inputs to lines.  C{changed(line, previous)}, when set, is called
    after a transition that changed the state (for the live event stream);
    C{fired}, when set to a callable, sees every (state, input) pair that
    matched a row (tests use it to show every row fires).
    """

    def __init__(self, request_start: int) -> None:
        self._requests = itertools.count(request_start)
        # Before every X: (hex): an active of a cluster puts its term's, so
        # that no request of an earlier term can be taken for one of ours.
        self.request_prefix = ""
        self.changed: Optional[Callable[[Line, LineState], None]] = None
        self.ignored = 0
        self.fired: Optional[Callable[[LineState, LineInput], None]] = None

    def feed(self, line: Line, event: LineInput) -> Action:
        """Apply C{event}; the action to carry out (NONE when ignored)."""
        previous = line.state
        entry = TRANSITIONS.get((previous, event))
        if entry is None:
            entry = ANY_STATE.get(event)
            if entry is None:
                self.ignored += 1
                return Action.NONE
        if self.fired is not None:
            self.fired(previous, event)
        state = entry[0]
        if state is not previous:
            line.state = state
            if self.changed is not None:
                self.changed(line, previous)
        return entry[1]

    @staticmethod
    def hook_seen(line: Line, hook: Hook) -> None:
        """The gateway told us the hook outside a notification (an audit, a 401/402)."""
        line.hook = hook

    @staticmethod
    def noted(line: Line, event: str) -> None:
        """The last event the gateway notified, for the admin."""
        line.last_event = event

    def new_request(self, line: Line, dialling: bool = False) -> str:
        """A fresh request id (X:) for the next request sent to the line."""
        request_id = f"{self.request_prefix}{next(self._requests):x}"
        line.request_id = request_id
        line.dialling_armed = dialling
        return request_id

    @staticmethod
    def restore_request(line: Line, request_id: Optional[str], dialling: bool) -> None:
        """A request of ours failed as a whole: the gateway still runs the previous one."""
        line.request_id = request_id
        line.dialling_armed = dialling

    @staticmethod
    def expect(line: Line, feature: Optional[str]) -> None:
        """The line dials the number a star code asked for next (None: no longer)."""
        line.pending = feature

    @staticmethod
    def add_leg(line: Line, leg: Any) -> None:
        line.legs.append(leg)

    @staticmethod
    def remove_leg(line: Line, leg: Any) -> bool:
        """Take C{leg} off the line; whether it was the line's last."""
        legs = line.legs
        if leg in legs:
            legs.remove(leg)
        return not legs
