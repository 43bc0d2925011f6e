# -*- test-case-name: tests.test_agent_trunks -*-
"""
Legs beyond a trunk: a party on another network is one more kind of leg.

A trunk leg has no line; its "connection" is the trunk's call, and it goes
through the states of a line's connection (L{LegState}):
- B{outgoing} (a line, or another trunk's caller, dialled a number the dial
  plan routes to C{trunk:NAME}): created by the trunk's call once the
  caller's SDP is known (the line's connection is made first, so the
  INVITE carries its SDP); 180 and 183 alert the call (a 183's SDP is early
  media: the caller's connection receives it instead of ringback); the
  answer opens it and connects the call; a failure's status becomes the
  cause the caller hears (busy tone for busy, reorder otherwise);
- B{incoming} (a trunk's INVITE): open from the start with the caller's
  offer as its SDP; the dial plan and the line services deliver it like a
  line's call (ring, wait, forward, refuse with the status a caller
  expects); the line's ringing sends 180, its answer 200 with its SDP.
Released, a trunk leg cancels (before an answer), rejects (an incoming
call not answered: the cause's status) or hangs up (BYE).  A far party
whose media moves is followed by its peer's connection, and a leg whose
peer changes (a transfer) offers the new peer's SDP in a re-INVITE.

A trunk's calls die with the agent's process: a restarted (or standby)
agent cannot take back a call with a trunk leg, and closes its record.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, final

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IIncomingCallListener, IOutgoingCallListener, ITrunk
from ..mgcp import ConnectionMode, SessionDescription
from ..trunk import TrunkCallError
from .calls import Call, Leg, LegInput, LegState, Tone, wanted
from .model import ReleaseCause, RouteRequest

__all__ = ["TrunkParty", "TrunkOrigin", "Trunks", "cause_of_status", "status_of_cause", "TRUNK_PREFIX"]

#: Dial plan targets that name a trunk: C{trunk:provider}.
TRUNK_PREFIX = "trunk:"

# What a caller hears when a call out fails, by SIP status (RFC 3261 §21),
# and what a trunk's caller is told when a line cannot take its call.
_BUSY = frozenset((486, 600))
_UNKNOWN = frozenset((404, 410, 484, 604))
_NO_ANSWER = frozenset((408, 480, 487))
_MISMATCH = frozenset((415, 488, 606))
_STATUS_OF_CAUSE = {
    ReleaseCause.BUSY: 486, ReleaseCause.DND: 486, ReleaseCause.UNKNOWN_NUMBER: 404,
    ReleaseCause.NO_ANSWER: 480, ReleaseCause.UNAVAILABLE: 480, ReleaseCause.ABANDONED: 487,
    ReleaseCause.FORWARD_LOOP: 482, ReleaseCause.CODEC_MISMATCH: 488, ReleaseCause.REJECTED: 403,
    ReleaseCause.OVERLOAD: 503,
}


def cause_of_status(code: int) -> ReleaseCause:
    """The cause a failed call out ends with (and so the tone its caller hears)."""
    if code in _BUSY:
        return ReleaseCause.BUSY
    if code in _UNKNOWN:
        return ReleaseCause.UNKNOWN_NUMBER
    if code in _NO_ANSWER:
        return ReleaseCause.NO_ANSWER
    if code in _MISMATCH:
        return ReleaseCause.CODEC_MISMATCH
    if code >= 500:
        return ReleaseCause.CONGESTION
    return ReleaseCause.REJECTED


def status_of_cause(cause: Optional[ReleaseCause]) -> int:
    """The final status a trunk's caller gets when the call ends before its answer."""
    return _STATUS_OF_CAUSE.get(cause, 503) if cause is not None else 480


class TrunkParty:
    """
    The far party of a trunk leg: which trunk, its number (the number
    called out, or the caller's number of a call in), and the trunk's call.
    """

    __slots__ = ("name", "trunk", "number", "call", "incoming", "status", "gone")

    def __init__(self, name: str, trunk: ITrunk, number: Optional[str], incoming: bool) -> None:
        self.name = name
        self.trunk = trunk
        self.number = number
        self.call: Any = None  # the trunk's IOutgoingCall or IIncomingCall
        self.incoming = incoming
        self.status: Optional[int] = None  # the final status a failed call out got
        self.gone = False  # the trunk's call is over: nothing more is sent to it

    @property
    def endpoint(self) -> str:
        """How views and records name the party's side: C{trunk:NAME}."""
        return TRUNK_PREFIX + self.name


@final  # call control tests type(origin) is TrunkOrigin
class TrunkOrigin:
    """
    A call in from a trunk while the dial plan and the line services find
    where it goes (what L{mgcpswitch.agent.services.Services.deliver} is
    given instead of a calling line).
    """

    __slots__ = ("party", "dialled", "routing", "leg")

    def __init__(self, party: TrunkParty, dialled: str) -> None:
        self.party = party
        self.dialled = dialled
        self.routing = True  # not placed nor refused yet, and not cancelled
        self.leg: Optional[Leg] = None

    @property
    def endpoint(self) -> str:
        return self.party.endpoint


class Trunks:
    """
    The coordinator's part for trunk legs (C{control} is the coordinator:
    its call machine, media, and what legs report).
    """

    log = Logger()

    def __init__(self, control: Any, trunks: Mapping[str, ITrunk]) -> None:
        self._control = control
        self.trunks = {name.lower(): trunk for name, trunk in trunks.items()}

    def trunk(self, target: Optional[str]) -> Optional[tuple[str, ITrunk]]:
        """The trunk a dial plan target names (C{trunk:NAME}), or None."""
        if not target or not target.lower().startswith(TRUNK_PREFIX):
            return None
        name = target[len(TRUNK_PREFIX):]
        trunk = self.trunks.get(name.lower())
        return (trunk.name, trunk) if trunk is not None else None

    # -- calls out -------------------------------------------------------------

    def call_out(self, origin: Any, dialled: str, target: str, no_waiting: bool = False) -> Optional[Call]:
        """
        A call from C{origin} (a line, or a call in from a trunk) to the
        number C{dialled} through the trunk C{target} names.
        """
        control = self._control
        found = self.trunk(target)
        if found is None:
            control.router.refuse(origin, dialled, ReleaseCause.UNKNOWN_NUMBER)
            return None
        name, trunk = found
        call: Call = control.new_call(dialled)
        call.no_waiting = no_waiting
        control.router.start_leg(call, origin)
        control.machine.new_leg(call, None, False, TrunkParty(name, trunk, dialled, incoming=False))
        control.counters["trunk_calls_out"] += 1
        control.media.reconcile_call(call)
        return call

    def _place(self, leg: Leg, offer: SessionDescription) -> None:
        party = leg.trunk
        caller = leg.peer
        number = None
        if caller is not None:
            number = caller.line.endpoint.number if caller.line is not None else caller.trunk.number
        self._control.machine.feed_leg(leg, LegInput.CREATE)
        leg.remote_sdp = offer
        leg.mode = ConnectionMode.SENDRECV
        party.call = party.trunk.call(party.number, offer, _Out(self, leg), caller=number)

    # -- calls in ----------------------------------------------------------------

    def incoming(self, name: str, call: Any) -> None:
        """A call in from the trunk C{name}: routed like a number a line dialled."""
        control = self._control
        found = self.trunk(TRUNK_PREFIX + name)
        if found is None:
            call.reject(503)
            return
        party = TrunkParty(found[0], found[1], call.caller, incoming=True)
        party.call = call
        origin = TrunkOrigin(party, call.number)
        call.listener = _In(self, origin)
        control.counters["trunk_calls_in"] += 1
        if not control.overload.admit():
            control.router.refuse(origin, origin.dialled, ReleaseCause.OVERLOAD)  # 503: the peer may try elsewhere
            return
        request = RouteRequest(party.endpoint, call.number, call.caller)
        maybeDeferred(control.dial_plan.route, request).addCallbacks(
            self._routed, self._route_failed, (origin,), errbackArgs=(origin,)
        )

    def _routed(self, decision: Any, origin: TrunkOrigin) -> None:
        if not origin.routing:
            return  # cancelled while the dial plan thought
        control = self._control
        if self.trunk(decision.target) is not None:
            self.call_out(origin, origin.dialled, decision.target)  # a call through, trunk to trunk
            return
        endpoint = control.registry.endpoint(decision.target) if decision.target else None
        if endpoint is None:
            control.router.refuse(origin, origin.dialled, decision.cause or ReleaseCause.UNKNOWN_NUMBER)
            return
        control.services.deliver(origin, origin.dialled, endpoint)

    def _route_failed(self, failure: Failure, origin: TrunkOrigin) -> None:
        self.log.failure("dial plan failed for a call in on {trunk}", failure, trunk=origin.party.name)
        if origin.routing:
            self._control.router.refuse(origin, origin.dialled, ReleaseCause.REJECTED)

    def origin_leg(self, call: Call, origin: TrunkOrigin) -> Leg:
        """The caller's leg of a call in, open from the start: its SDP is the offer."""
        machine = self._control.machine
        leg: Leg = machine.new_leg(call, None, True, origin.party)
        machine.feed_leg(leg, LegInput.CREATE)
        machine.feed_leg(leg, LegInput.CREATED)
        leg.local_sdp = origin.party.call.offer_sdp
        leg.mode = ConnectionMode.RECVONLY
        origin.routing = False
        origin.leg = leg
        return leg

    # -- reconciling -------------------------------------------------------------

    def reconcile(self, leg: Leg) -> None:
        """Tell the trunk what C{leg} needs now (a leg with nothing in flight)."""
        state = leg.state
        party = leg.trunk
        call = leg.call
        if not call.live or leg.dropped:
            self._end(leg)
            return
        mode, remote, tone = wanted(leg)
        if state is LegState.NEW:
            if remote is not None and not party.incoming:
                self._place(leg, remote)
            return
        if state is not LegState.OPEN or remote is None:
            return
        if party.incoming and leg.mode is not ConnectionMode.SENDRECV:
            if mode is ConnectionMode.SENDRECV:
                leg.mode = ConnectionMode.SENDRECV
                leg.remote_sdp = remote
                party.call.answer(remote)
            elif tone is Tone.RINGBACK and leg.tone is Tone.NONE:
                leg.tone = Tone.RINGBACK
                party.call.ringing()
            return
        if remote is not leg.remote_sdp and leg.remote_sdp is not None:
            self._update(leg, remote)

    def _end(self, leg: Leg) -> None:
        """The leg leaves its call: whatever the trunk still has of it ends."""
        party = leg.trunk
        machine = self._control.machine
        state = leg.state
        if state is LegState.GONE:
            return
        if not party.gone:
            party.gone = True
            if state is LegState.CREATING:
                party.call.cancel()
            elif party.incoming and leg.mode is not ConnectionMode.SENDRECV:
                party.call.reject(status_of_cause(leg.call.cause))
            elif state is not LegState.NEW:
                party.call.hang_up()
        if state is LegState.NEW:
            machine.feed_leg(leg, LegInput.DELETE)
        elif state is LegState.CREATING:
            machine.feed_leg(leg, LegInput.CANCEL)
        elif state is LegState.OPEN:
            machine.feed_leg(leg, LegInput.DELETE)
            machine.feed_leg(leg, LegInput.DELETED)
        else:  # a re-INVITE in flight: its answer is not waited for
            machine.feed_leg(leg, LegInput.LOST)
        self._control.leg_gone(leg, False)

    def _update(self, leg: Leg, offer: SessionDescription) -> None:
        """The leg's peer changed (a transfer): offer the new peer's media in a re-INVITE."""
        self._control.machine.feed_leg(leg, LegInput.MODIFY)
        leg.remote_sdp = offer
        self._control.counters["trunk_updates"] += 1
        maybeDeferred(leg.trunk.call.update, offer).addCallbacks(
            self._updated, self._update_failed, (leg,), errbackArgs=(leg,)
        )

    def _updated(self, answer: SessionDescription, leg: Leg) -> None:
        if leg.state is not LegState.MODIFYING:
            return  # ended meanwhile
        self._control.machine.feed_leg(leg, LegInput.MODIFIED)
        self.media_moved(leg, answer)
        self.reconcile(leg)

    def _update_failed(self, failure: Failure, leg: Leg) -> None:
        if leg.state is not LegState.MODIFYING:
            return
        error = failure.value
        if isinstance(error, TrunkCallError) and error.ended:
            return  # the dialog is gone: the trunk tells the listener next, and the call ends then
        self.log.warn("re-INVITE on {trunk} failed: {error}", trunk=leg.trunk.name, error=failure.getErrorMessage())
        self._control.machine.feed_leg(leg, LegInput.FAILED)  # the session stays as it was (RFC 3261 §14.1)

    # -- what the trunk reports --------------------------------------------------

    def media_moved(self, leg: Leg, sdp: Optional[SessionDescription]) -> None:
        """The far party's media description (early media, an answer, a re-INVITE): its peer follows."""
        if sdp is None or sdp == leg.local_sdp:
            return
        leg.local_sdp = sdp
        if leg.peer is not None and leg.call.live:
            self._control.media.reconcile(leg.peer)

    def progress(self, leg: Leg, code: int, sdp: Optional[SessionDescription]) -> None:
        if leg.state is not LegState.CREATING or not leg.call.live:
            return
        if sdp is not None:
            leg.local_sdp = sdp  # early media: the caller's connection receives it
        control = self._control
        control.connection_open(leg)
        control.media.reconcile_call(leg.call)

    def answered(self, leg: Leg, sdp: SessionDescription) -> None:
        if leg.state is not LegState.CREATING:
            return
        control = self._control
        control.machine.feed_leg(leg, LegInput.CREATED)
        leg.local_sdp = sdp
        control.connection_open(leg)  # alerting, if no 180 came first
        control.answer(leg)
        control.media.reconcile_call(leg.call)

    def failed(self, leg: Leg, code: int) -> None:
        party = leg.trunk
        party.gone = True
        party.status = code
        if leg.state is not LegState.CREATING:
            return
        control = self._control
        control.machine.feed_leg(leg, LegInput.FAILED)
        control.release(leg.call, cause_of_status(code))
        control.leg_gone(leg, False)

    def ended(self, leg: Leg, cause: ReleaseCause) -> None:
        """The far party hung up (or the trunk gave the call up): the call ends."""
        leg.trunk.gone = True
        if leg.state is LegState.GONE:
            return
        control = self._control
        control.machine.feed_leg(leg, LegInput.LOST)
        control.release(leg.call, cause)
        control.leg_gone(leg, False)

    def cancelled(self, origin: TrunkOrigin) -> None:
        """A call in was given up by its caller: before routing ended, or while its line rang."""
        origin.party.gone = True
        if origin.routing:
            origin.routing = False
            self._control.router.refuse(origin, origin.dialled, ReleaseCause.ABANDONED)
        elif origin.leg is not None:
            self.ended(origin.leg, ReleaseCause.ABANDONED)


@implementer(IOutgoingCallListener)
class _Out:
    """What a call out through a trunk tells its leg."""

    __slots__ = ("trunks", "leg")

    def __init__(self, trunks: Trunks, leg: Leg) -> None:
        self.trunks = trunks
        self.leg = leg

    def progress(self, code: int, sdp: Optional[SessionDescription]) -> None:
        self.trunks.progress(self.leg, code, sdp)

    def answered(self, sdp: SessionDescription) -> None:
        self.trunks.answered(self.leg, sdp)

    def failed(self, code: int, reason: str) -> None:
        self.trunks.failed(self.leg, code)

    def ended(self, reason: str) -> None:
        self.trunks.ended(self.leg, ReleaseCause.NORMAL)

    def media_changed(self, sdp: SessionDescription) -> None:
        self.trunks.media_moved(self.leg, sdp)


@implementer(IIncomingCallListener)
class _In:
    """What a call in from a trunk tells its leg (or its routing, before it has one)."""

    __slots__ = ("trunks", "origin")

    def __init__(self, trunks: Trunks, origin: TrunkOrigin) -> None:
        self.trunks = trunks
        self.origin = origin

    def cancelled(self) -> None:
        self.trunks.cancelled(self.origin)

    def ended(self, reason: str) -> None:
        leg = self.origin.leg
        if leg is None:
            self.trunks.cancelled(self.origin)
            return
        answered = leg.call.answered is not None
        self.trunks.ended(leg, ReleaseCause.NORMAL if answered else ReleaseCause.NO_ANSWER)

    def media_changed(self, sdp: SessionDescription) -> None:
        if self.origin.leg is not None:
            self.trunks.media_moved(self.origin.leg, sdp)
