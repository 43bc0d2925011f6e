# -*- test-case-name: tests.test_agent_machines -*-
"""
Calls as legs (half-calls), each with its own transition table.

A L{Call} is a set of L{Leg}s; a leg is one party's part of the call: its
line, its connection on that line's gateway, and the leg whose media it
receives (its C{peer}).  Nothing here assumes a line is in at most one call
or that a call has two legs: a line lists its legs (a held call and a
waiting one), a call lists its legs (three parties), and pairing is per leg.

Two small machines, as tables like the lines' (and tested pair by pair):
- L{CALL_TRANSITIONS}: the call's signalling state (setup, alerting,
  connected, releasing, ended) and the L{CallAction} each step asks for;
- L{LEG_TRANSITIONS}: a leg's connection (none yet, being created, open,
  being modified, being deleted, gone), driven by the commands the
  coordinator sends and their answers.

What a leg's connection should look like (mode, remote SDP, the tone its
line hears) is a pure function of the call, L{wanted}; the coordinator
compares it with what the gateway was last told and sends the difference.
So an answer that arrives while a modification is in flight, or a release
while a connection is being created, needs no special case: when the
command in flight completes, the difference is sent.

Pure: no I/O, no clock, no Twisted.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Optional

from ..errors import MGCPError
from ..mgcp import STATIC_PAYLOAD_TYPES, ConnectionMode, SessionDescription
from .model import CallState, ReleaseCause

__all__ = [
    "CallInput",
    "CallAction",
    "CALL_TRANSITIONS",
    "LegState",
    "LegInput",
    "LEG_TRANSITIONS",
    "Tone",
    "Call",
    "Leg",
    "CallMachine",
    "InvalidCallTransition",
    "wanted",
    "first_codec",
]

C = CallState


class CallInput(enum.Enum):
    __hash__ = object.__hash__
    ALERT = "alert"  # the called party is being alerted
    ANSWER = "answer"  # the called party answered
    RELEASE = "release"  # end the call: a party hung up, a failure, the operator
    LEGS_GONE = "legs-gone"  # every leg's connection is deleted
    RESUME = "resume"  # a talking call taken over from the store (after a restart)


class CallAction(enum.Enum):
    __hash__ = object.__hash__
    NONE = "none"
    ALERTING = "alerting"  # arm the no-answer timer; the caller hears ringback
    CONNECTED = "connected"  # stop the timer, note the answer, connect the media
    RELEASE = "release"  # stop the timer, delete every leg's connection
    END = "end"  # write the record, tell the observers


CALL_TRANSITIONS: dict[tuple[CallState, CallInput], tuple[CallState, CallAction]] = {
    (C.SETUP, CallInput.ALERT): (C.ALERTING, CallAction.ALERTING),
    (C.ALERTING, CallInput.ANSWER): (C.CONNECTED, CallAction.CONNECTED),
    (C.SETUP, CallInput.RELEASE): (C.RELEASING, CallAction.RELEASE),
    (C.ALERTING, CallInput.RELEASE): (C.RELEASING, CallAction.RELEASE),
    (C.CONNECTED, CallInput.RELEASE): (C.RELEASING, CallAction.RELEASE),
    (C.RELEASING, CallInput.LEGS_GONE): (C.ENDED, CallAction.END),
    (C.SETUP, CallInput.RESUME): (C.CONNECTED, CallAction.NONE),
}


class LegState(enum.Enum):
    __hash__ = object.__hash__
    NEW = "new"  # no connection asked for yet
    CREATING = "creating"  # CRCX in flight
    OPEN = "open"  # the connection exists; nothing in flight
    MODIFYING = "modifying"  # MDCX in flight
    DELETING = "deleting"  # DLCX in flight
    GONE = "gone"  # no connection (deleted, refused, or lost with its gateway)


class LegInput(enum.Enum):
    __hash__ = object.__hash__
    CREATE = "create"  # CRCX sent
    CREATED = "created"  # its 200 (with a connection id and SDP)
    MODIFY = "modify"  # MDCX sent
    MODIFIED = "modified"  # its 200
    DELETE = "delete"  # DLCX sent (again, after a 401/402: the hook changed)
    DELETED = "deleted"  # its 250 (or 515: already gone)
    FAILED = "failed"  # an error answer
    TIMED_OUT = "timed-out"  # no answer at all
    LOST = "lost"  # the gateway no longer has it (restart, its own DLCX, an audit)
    ADOPT = "adopt"  # a connection a checkpoint says exists (taken over after a restart)
    CANCEL = "cancel"  # a trunk leg given up before its answer (CANCEL): nothing more comes of it


LEG_TRANSITIONS: dict[tuple[LegState, LegInput], LegState] = {
    (LegState.NEW, LegInput.CREATE): LegState.CREATING,
    (LegState.NEW, LegInput.DELETE): LegState.GONE,  # nothing was created
    (LegState.NEW, LegInput.ADOPT): LegState.OPEN,
    (LegState.CREATING, LegInput.CREATED): LegState.OPEN,
    (LegState.CREATING, LegInput.FAILED): LegState.GONE,
    # The CRCX may have run and its answer been lost: an audit finds it.
    (LegState.CREATING, LegInput.TIMED_OUT): LegState.GONE,
    (LegState.CREATING, LegInput.LOST): LegState.GONE,
    (LegState.CREATING, LegInput.CANCEL): LegState.GONE,
    (LegState.OPEN, LegInput.MODIFY): LegState.MODIFYING,
    (LegState.OPEN, LegInput.DELETE): LegState.DELETING,
    (LegState.OPEN, LegInput.LOST): LegState.GONE,
    (LegState.MODIFYING, LegInput.MODIFIED): LegState.OPEN,
    (LegState.MODIFYING, LegInput.FAILED): LegState.OPEN,
    (LegState.MODIFYING, LegInput.TIMED_OUT): LegState.OPEN,
    (LegState.MODIFYING, LegInput.LOST): LegState.GONE,
    (LegState.DELETING, LegInput.DELETED): LegState.GONE,
    (LegState.DELETING, LegInput.DELETE): LegState.DELETING,
    (LegState.DELETING, LegInput.FAILED): LegState.GONE,
    (LegState.DELETING, LegInput.TIMED_OUT): LegState.GONE,
    (LegState.DELETING, LegInput.LOST): LegState.GONE,
}


class InvalidCallTransition(MGCPError):
    """An input a call or leg does not expect in its state (a bug, or a late event)."""


class Tone(enum.Enum):
    """What a leg's line hears from the call (signalled with its connection commands)."""

    __hash__ = object.__hash__
    NONE = "none"
    RINGBACK = "ringback"  # the caller, while the callee rings (G/rt)


class Leg:
    """
    One party's part of a call: on a line of ours (C{line}), or beyond a
    trunk (C{line} is None; C{trunk} is the far party, and the "connection"
    is the trunk's call: created by its INVITE, open once answered).

    @ivar originating: the leg of the party who placed the call.
    @ivar peer: the leg whose media this leg receives (its remote SDP).
    @ivar mode, remote_sdp, tone: what the gateway was last told (the
        applied state, compared with L{wanted}).
    @ivar rearm: the request (events, signals) the leg's DLCX carried, or
        None: what the line runs once the connection is gone.
    @ivar held, waiting, conference, consultation: what the line's
        services made of the leg (see L{mgcpswitch.agent.services}).
    """

    __slots__ = (
        "call", "line", "originating", "state", "peer", "connection_id", "local_sdp",
        "remote_sdp", "mode", "tone", "stats", "rearm", "held", "waiting", "conference",
        "consultation", "dropped", "mgcp_call_id", "trunk",
    )

    def __init__(self, call: Call, line: Any, originating: bool, trunk: Any = None) -> None:
        self.call = call
        self.line = line
        self.trunk = trunk  # a TrunkParty (mgcpswitch.agent.trunks) when the party is beyond a trunk
        self.originating = originating
        self.state = LegState.NEW
        self.peer: Optional[Leg] = None
        self.connection_id: Optional[str] = None
        self.local_sdp: Optional[SessionDescription] = None
        self.remote_sdp: Optional[SessionDescription] = None
        self.mode: Optional[ConnectionMode] = None
        self.tone = Tone.NONE
        self.stats: dict[str, int] = {}
        self.rearm: Optional[tuple[Any, Any]] = None
        # What the line's services made of it (written by the call machine):
        self.held = False  # on hold: its connection inactive
        self.waiting = False  # a call waiting for its line to answer (it rings with L/wt)
        self.conference = False  # mixed with the line's other call (three-way: confrnce)
        self.consultation = False  # placed by its line while another call was held
        self.dropped = False  # leaves a call that goes on (a no-answer forward rings someone else)
        # The CallId its connection was created with: a transfer moves the
        # leg to a new call, and the gateway knows the connection by it.
        self.mgcp_call_id = call.call_id

    @property
    def busy(self) -> bool:
        """A command is in flight on this leg's connection."""
        state = self.state
        return state is LegState.CREATING or state is LegState.MODIFYING or state is LegState.DELETING

    def __repr__(self) -> str:
        return f"<Leg {self.call.call_id} {self.line} {self.state.value}>"


class Call:
    """
    A call: its legs, its state and what its record needs.

    @ivar target: for a call the operator originated, the line to ring
        once the first party answers.
    @ivar saved_request: for an originated call, the request the first
        party's line ran before we rang it (restored if the ring fails as
        a whole because the line was dialling on its own).
    """

    __slots__ = (
        "call_id", "state", "legs", "dialled", "started", "answered", "ended", "cause",
        "ladder", "no_answer", "originated", "target", "originate_deferred",
        "saved_request", "ended_deferreds", "recovered", "recovered_codec", "live", "_codec",
        "no_waiting", "forwarded_from", "forwards", "transferred_by", "related", "forward_timer",
        "former",
    )

    def __init__(self, call_id: str, started: float, dialled: str) -> None:
        self.call_id = call_id
        self.state = CallState.SETUP
        self.legs: list[Leg] = []
        self.dialled = dialled
        self.started = started
        self.answered: Optional[float] = None
        self.ended: Optional[float] = None
        self.cause: Optional[ReleaseCause] = None
        self.ladder: Optional[list[tuple[float, str, Any, Any]]] = None
        self.no_answer: Any = None  # a Timeout of the no-answer queue
        self.originated = False
        self.target: Any = None
        self.originate_deferred: Any = None
        self.saved_request: Optional[tuple[Optional[str], bool]] = None
        self.ended_deferreds: list[Any] = []
        self.recovered = False  # taken over from a checkpoint (after a restart)
        self.recovered_codec: Optional[str] = None
        self.live = True  # not releasing nor ended (kept by the call machine with the state)
        self._codec: Optional[str] = None
        self.no_waiting = False  # its caller dialled *70: its line takes no waiting call meanwhile
        self.forwarded_from: Optional[str] = None  # the endpoint first called
        self.forwards = 0  # how many times it was forwarded (bounded)
        self.transferred_by: Optional[str] = None
        self.related: tuple[str, ...] = ()
        self.forward_timer: Any = None  # forwarding on no answer
        self.former: list[Leg] = []  # legs moved to another call (a transfer): still its parties

    @property
    def codec(self) -> Optional[str]:
        """
        The call's codec: the first the callee's gateway answered with.
        Read from the SDP only when a view or record needs it, and from its
        lines (parsing the media section on every call showed in profiles).
        """
        if self._codec is None:
            callee = self.callee
            sdp = callee.local_sdp if callee is not None else None
            self._codec = first_codec(sdp) if sdp is not None else self.recovered_codec
        return self._codec

    @property
    def caller(self) -> Optional[Leg]:
        for leg in self.legs:
            if leg.originating:
                return leg
        for leg in self.former:
            if leg.originating:
                return leg
        return None

    @property
    def callee(self) -> Optional[Leg]:
        """The party called: the newest terminating leg (a forward replaces the first)."""
        for leg in reversed(self.legs):
            if not leg.originating:
                return leg
        for leg in self.former:
            if not leg.originating:
                return leg
        return None

    def __repr__(self) -> str:
        return f"<Call {self.call_id} {self.state.value} {len(self.legs)} legs>"


class CallMachine:
    """
    Feeds inputs to calls and legs: the only writer of their state.
    C{fired_call} / C{fired_leg}, when set, see every pair that matched a
    row (tests use them to show that every row fires).
    """

    def __init__(self) -> None:
        self.fired_call: Optional[Callable[[CallState, CallInput], None]] = None
        self.fired_leg: Optional[Callable[[LegState, LegInput], None]] = None

    def feed(self, call: Call, event: CallInput) -> CallAction:
        """Apply C{event} to C{call}; the action (NONE when the call does not expect it)."""
        entry = CALL_TRANSITIONS.get((call.state, event))
        if entry is None:
            return CallAction.NONE
        if self.fired_call is not None:
            self.fired_call(call.state, event)
        state = call.state = entry[0]
        call.live = state is not CallState.RELEASING and state is not CallState.ENDED
        return entry[1]

    def feed_leg(self, leg: Leg, event: LegInput) -> bool:
        """Apply C{event} to C{leg}'s connection; whether the table had the pair."""
        state = LEG_TRANSITIONS.get((leg.state, event))
        if state is None:
            return False
        if self.fired_leg is not None:
            self.fired_leg(leg.state, event)
        leg.state = state
        return True

    @staticmethod
    def mark(leg: Leg, *, held: Optional[bool] = None, waiting: Optional[bool] = None,
             conference: Optional[bool] = None, consultation: Optional[bool] = None,
             dropped: Optional[bool] = None) -> None:
        """What a line's services make of a leg (its media follows through L{wanted})."""
        if dropped is not None:
            leg.dropped = dropped
            if dropped and leg.peer is not None:  # its peer will pair with the leg that replaces it
                if leg.peer.peer is leg:
                    leg.peer.peer = None
                leg.peer = None
        if held is not None:
            leg.held = held
        if waiting is not None:
            leg.waiting = waiting
        if conference is not None:
            leg.conference = conference
        if consultation is not None:
            leg.consultation = consultation

    @staticmethod
    def move(leg: Leg, call: Call, originating: bool) -> None:
        """
        Move C{leg} to C{call} (a transfer): it leaves its call, takes the
        side given, and pairs with the first unpaired leg of the other side.
        """
        old = leg.call
        if leg in old.legs:
            old.legs.remove(leg)
            old.former.append(leg)
        if leg.peer is not None and leg.peer.peer is leg:
            leg.peer.peer = None
        leg.peer = None
        leg.call = call
        leg.originating = originating
        for other in call.legs:
            if other.originating is not originating and other.peer is None:
                other.peer = leg
                leg.peer = other
                break
        call.legs.append(leg)

    @staticmethod
    def refused(call_id: str, line: Any, dialled: str, started: float, ended: float, cause: Any) -> Call:
        """
        The ended call of a new call refused at its first NTFY (its record
        alone was kept: the overload guard's shed path), as the machine
        leaves a call that never got a connection: one leg on C{line},
        gone, and the call ended with C{cause}.
        """
        call = Call(call_id, started, dialled)
        leg = Leg(call, line, True)
        leg.state = LegState.GONE
        call.legs.append(leg)
        call.state = CallState.ENDED
        call.live = False
        call.cause = cause
        call.ended = ended
        return call

    @staticmethod
    def new_leg(call: Call, line: Any, originating: bool, trunk: Any = None) -> Leg:
        """A leg of C{call} on C{line} (or C{trunk}), paired with the call's first leg of the other side."""
        leg = Leg(call, line, originating, trunk)
        for other in call.legs:
            if other.originating is not originating and other.peer is None:
                other.peer = leg
                leg.peer = other
                break
        call.legs.append(leg)
        return leg


def wanted(leg: Leg) -> tuple[ConnectionMode, Optional[SessionDescription], Tone]:
    """
    What C{leg}'s connection should be now: its mode, the remote SDP it
    should have (its peer's, once known), and the tone its line hears.
    The caller's side only receives until the call is answered (RFC 3435
    §2.3.5's early media), and hears ringback while the callee rings.
    """
    call = leg.call
    peer = leg.peer
    remote = peer.local_sdp if peer is not None else None
    if leg.held or leg.waiting:
        return ConnectionMode.INACTIVE, remote, Tone.NONE
    if leg.conference:
        return ConnectionMode.CONFRNCE, remote, Tone.NONE
    state = call.state
    if state is CallState.CONNECTED:
        return ConnectionMode.SENDRECV, remote, Tone.NONE
    if leg.originating:
        if leg.line is not None and peer is not None and peer.line is not None and state is not CallState.RELEASING:
            # A call to a line: the callee's gateway sends no media before
            # it answers, so the caller's connection learns the callee's
            # SDP with the answer's MDCX, and hears ringback from its CRCX
            # on (the callee's CRCX follows within a round trip, and a
            # callee that fails gives busy or reorder with the DLCX).  One
            # MDCX fewer per call than ringback once the callee rings: a
            # twelfth of a basic call's transactions (issue 15 §3).
            return ConnectionMode.RECVONLY, None, Tone.RINGBACK
        # Ringback, unless the far end sends its own (a trunk's early media).
        early = peer is not None and peer.trunk is not None and peer.local_sdp is not None
        return (
            ConnectionMode.RECVONLY, remote,
            Tone.RINGBACK if state is CallState.ALERTING and not early else Tone.NONE,
        )
    return ConnectionMode.SENDRECV, remote, Tone.NONE


def first_codec(sdp: SessionDescription) -> Optional[str]:
    """
    The encoding of the first format of C{sdp}'s audio stream: a static
    payload type's name, or its C{a=rtpmap}'s; None when there is none.
    """
    lines = sdp.lines
    for line in lines:
        if line.startswith("m=audio "):
            fields = line.split(" ", 4)
            if len(fields) < 4 or not fields[3].isdigit():
                return None
            pt = fields[3]
            break
    else:
        return None
    prefix = f"a=rtpmap:{pt} "
    for line in lines:
        if line.startswith(prefix):
            return line[len(prefix):].partition("/")[0].strip() or None
    static = STATIC_PAYLOAD_TYPES.get(int(pt))
    return static[0] if static is not None else None
