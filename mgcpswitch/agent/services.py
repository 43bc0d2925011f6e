# -*- test-case-name: tests.test_agent_services -*-
"""
The services residential lines expect, as rules over lines and legs:
hook-flash, call waiting, hold and recall, three-way calling, transfer,
call forwarding, do-not-disturb, message waiting, star codes.

The basic call knows nothing of them.  The coordinator asks this module at
the few places where a service may change what happens:
- a call is delivered to a line (L{deliver}): it rings, waits (call
  waiting), is forwarded (always, busy, do-not-disturb, and later no
  answer), or is refused;
- the line dials a star code (L{feature});
- the line flashes (L{flash}) or hangs up holding several calls
  (L{hang_up}); one of its calls ends while others remain (L{leg_left});
- a line rung back for a held call answers it (L{answer_recall}).

What a service makes of a leg (held, waiting, in a conference, a
consultation call) is marked on the leg by the call machine; the leg's
connection follows through L{mgcpswitch.agent.calls.wanted}: held and
waiting connections are inactive, a three-way call's two connections on
the initiator's gateway are in confrnce mode (RFC 3435 App. D: the gateway
mixes them).  What the line does (dial tone, ringing, talking) follows
through the line machine's inputs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config import LineServices, ServiceSettings
from ..mgcp import DigitMap
from ..timeouts import TimeoutQueue
from .calls import Call, Leg, LegState
from .lines import Line, LineInput
from .model import (
    CallForwarded,
    CallsJoined,
    CallState,
    CallTransferred,
    Hook,
    LineRecord,
    LineServicesChanged,
    LineState,
    ReleaseCause,
    RouteRequest,
)
from .gateways import Endpoint

__all__ = ["Services", "check_services"]

_AWAY = frozenset((LineState.UNKNOWN, LineState.OUT_OF_SERVICE, LineState.RESTARTING))
# A talking call that ends so leaves a line holding other calls with busy
# tone; any other end (a failure) with reorder.
_ENDED_NORMALLY = frozenset((ReleaseCause.NORMAL, ReleaseCause.BUSY, ReleaseCause.ADMIN, ReleaseCause.DND, None))
#: Where an on-hook with a call on hold rings the line back.
HOLD_DIALLING = frozenset((LineState.DIAL_TONE, LineState.COLLECTING, LineState.BUSY, LineState.REORDER))


class Services:
    """The services of every line; C{control} is the coordinator."""

    log = Logger()

    def __init__(self, control: Any, settings: ServiceSettings) -> None:
        self._control = control
        self.settings = settings
        codes = {
            settings.cancel_waiting: "cancel_waiting",
            settings.forward_always_on: "forward_always",
            settings.forward_busy_on: "forward_busy",
            settings.forward_no_answer_on: "forward_no_answer",
            settings.forward_always_off: "-forward_always",
            settings.forward_busy_off: "-forward_busy",
            settings.forward_no_answer_off: "-forward_no_answer",
            settings.dnd_on: "+dnd",
            settings.dnd_off: "-dnd",
        }
        self._codes = codes
        clock = control.clock
        self._recalls = TimeoutQueue(clock, settings.recall_timeout, self._recall_expired)
        self._no_answer = TimeoutQueue(clock, settings.forward_no_answer_after, self._forward_no_answer)
        self.flash_digit_map = DigitMap.parse(settings.flash_digit_map) if settings.flash_digit_map else None

    def stop(self) -> None:
        self._recalls.stop()
        self._no_answer.stop()

    # -- settings ------------------------------------------------------------

    def change(self, endpoint: Endpoint, **changes: Any) -> LineServices:
        """Change a line's services: kept by the store, told to observers, shown now if it matters."""
        control = self._control
        before = endpoint.services
        services = replace(before, **changes)
        if services == before:
            return services
        control.registry.set_services(endpoint, services)
        control.store.line_changed(LineRecord(str(endpoint.name), services))
        if control.events.watched:
            control.events.publish(LineServicesChanged(str(endpoint.name), services))
        line = endpoint.line
        if services.message_waiting is not before.message_waiting and line.state is LineState.IDLE:
            control.requests.arm_idle(line)  # the indicator, now
        return services

    # -- delivering a call to a line -----------------------------------------

    def deliver(self, line: Line, dialled: str, endpoint: Endpoint, hops: int = 0,
                visited: frozenset[str] = frozenset(), first: Optional[str] = None,
                no_waiting: bool = False) -> None:
        """
        A call from C{line} for C{endpoint}: ring it, make it wait (call
        waiting), forward it, or refuse it with the cause a caller expects.
        """
        control = self._control
        target = endpoint.line
        services = endpoint.services
        if target is line:
            control.router.refuse(line, dialled, ReleaseCause.BUSY, target)
            return
        if services.forward_always:
            self._forward(line, dialled, endpoint, services.forward_always, "always", hops, visited, first,
                          no_waiting)
            return
        if not (endpoint.gateway.usable and endpoint.in_service and target.state not in _AWAY):
            control.router.refuse(line, dialled, ReleaseCause.UNAVAILABLE, target)
            return
        if services.dnd:
            if services.forward_busy:
                self._forward(line, dialled, endpoint, services.forward_busy, "dnd", hops, visited, first,
                              no_waiting)
            else:
                control.router.refuse(line, dialled, ReleaseCause.DND, target)
            return
        waiting = False
        if target.state is not LineState.IDLE:
            if self._may_wait(target):
                waiting = True
            elif services.forward_busy:
                self._forward(line, dialled, endpoint, services.forward_busy, "busy", hops, visited, first,
                              no_waiting)
                return
            else:
                control.router.refuse(line, dialled, ReleaseCause.BUSY, target)
                return
        call = control.router.place(line, dialled, target, waiting=waiting)
        call.no_waiting = no_waiting
        if first is not None:
            call.forwarded_from = first
            call.forwards = hops
        if services.forward_no_answer and not waiting:
            call.forward_timer = self._no_answer.add(call)

    def _may_wait(self, target: Line) -> bool:
        """Call waiting: a line talking in one call, whose user wants it and did not cancel it."""
        if target.state is not LineState.CONNECTED or len(target.legs) != 1:
            return False
        leg = target.legs[0]
        return target.endpoint.services.call_waiting and not leg.call.no_waiting and leg.call.live

    def _forward(self, line: Line, dialled: str, endpoint: Endpoint, number: str, reason: str, hops: int,
                 visited: frozenset[str], first: Optional[str], no_waiting: bool) -> None:
        """
        Route C{number} for a call meant for C{endpoint}.  Forwarding stops
        after C{forward_limit} hops, and at once in a loop (a line met
        again): the caller hears reorder, the record says forward-loop.
        """
        control = self._control
        key = endpoint.key
        if key in visited or hops >= self.settings.forward_limit:
            control.counters["forward_loops"] += 1
            control.router.refuse(line, dialled, ReleaseCause.FORWARD_LOOP, endpoint.line)
            return
        control.counters["forwards_" + reason] += 1
        request = RouteRequest(str(endpoint.name), number, endpoint.number, f"forward-{reason}")
        maybeDeferred(control.dial_plan.route, request).addCallbacks(
            self._forward_routed, self._forward_failed,
            (line, dialled, endpoint, reason, hops + 1, visited | {key}, first or str(endpoint.name), no_waiting),
            errbackArgs=(line, dialled),
        )

    def _forward_routed(self, decision: Any, line: Line, dialled: str, source: Endpoint, reason: str,
                        hops: int, visited: frozenset[str], first: str, no_waiting: bool) -> None:
        control = self._control
        if not control.router.routing(line):
            return  # the caller hung up meanwhile
        if control.trunks.trunk(decision.target) is not None:  # forwarded beyond a trunk
            call = control.trunks.call_out(line, dialled, decision.target, no_waiting)
            if call is not None:
                call.forwarded_from = first
                call.forwards = hops
            return
        target = control.registry.endpoint(decision.target) if decision.target else None
        if target is None:
            control.router.refuse(line, dialled, decision.cause or ReleaseCause.UNKNOWN_NUMBER, source.line)
            return
        self.deliver(line, dialled, target, hops, visited, first, no_waiting)
        leg = line.leg
        if leg is not None and leg.call.forwarded_from == first and control.events.watched:
            control.events.publish(CallForwarded(control.views.call(leg.call), str(source.name),
                                                 str(target.name), reason))

    def _forward_failed(self, failure: Failure, line: Line, dialled: str) -> None:
        self.log.failure("dial plan failed forwarding a call of {line}", failure, line=line.endpoint)
        if self._control.router.routing(line):
            self._control.router.refuse(line, dialled, ReleaseCause.REJECTED)

    def _forward_no_answer(self, call: Call) -> None:
        """The callee let it ring: the call goes on to its no-answer number (the caller keeps ringback)."""
        call.forward_timer = None
        callee = call.callee
        if call.state is not CallState.ALERTING or callee is None or callee.waiting:
            return
        endpoint = callee.line.endpoint
        number = endpoint.services.forward_no_answer
        if not number:
            return
        control = self._control
        if endpoint.key == (call.forwarded_from or "").lower() or call.forwards >= self.settings.forward_limit:
            return  # it rang everywhere it could: the call's own no-answer time ends it
        control.counters["forwards_no_answer"] += 1
        request = RouteRequest(str(endpoint.name), number, endpoint.number, "forward-no-answer")
        maybeDeferred(control.dial_plan.route, request).addCallbacks(
            self._no_answer_routed, lambda f: None, (call, callee)
        )

    def _no_answer_routed(self, decision: Any, call: Call, callee: Leg) -> None:
        control = self._control
        target = control.registry.endpoint(decision.target) if decision.target else None
        if target is None or call.state is not CallState.ALERTING or callee not in call.legs \
                or target.line.state is not LineState.IDLE or not target.gateway.usable \
                or target.line is callee.line:
            return  # nowhere to go now: it keeps ringing where it is
        source = callee.line.endpoint
        control.retarget(call, callee, target.line)
        call.forwarded_from = call.forwarded_from or str(source.name)
        call.forwards += 1
        if target.services.forward_no_answer:
            call.forward_timer = self._no_answer.add(call)
        if control.events.watched:
            control.events.publish(CallForwarded(control.views.call(call), str(source.name), str(target.name),
                                                 "no-answer"))

    # -- star codes ------------------------------------------------------------

    def feature(self, line: Line, digits: str) -> Optional[bool]:
        """
        The digits a line dialled, when they are a star code or the number
        one asked for: True when handled here, None when they are a number
        to call with call waiting cancelled (*70), False otherwise.
        """
        control = self._control
        pending = line.pending
        if pending is not None:
            control.lines.expect(line, None)
            if pending == "cancel_waiting":
                return None
            self.change(line.endpoint, **{pending: digits})
            control.feed(line, LineInput.FEATURE_DONE)
            return True
        action = self._codes.get(digits)
        if action is None:
            return False
        control.counters["feature_codes"] += 1
        if action[0] == "-":
            self.change(line.endpoint, **{action[1:]: False if action == "-dnd" else None})
        elif action[0] == "+":
            self.change(line.endpoint, **{action[1:]: True})
        else:
            control.lines.expect(line, action)  # its number comes next
            control.feed(line, LineInput.FEATURE_NUMBER)
            return True
        control.feed(line, LineInput.FEATURE_DONE)
        return True

    # -- the hook-flash ----------------------------------------------------------

    def flash(self, line: Line) -> None:
        """
        What a flash means now: answer the waiting call, swap the held and
        the talking call, put the call on hold to dial another (recall dial
        tone), join the held call and the consultation call (three-way),
        drop the third party of a three-way call, or go back to the held
        call.  A flash with nothing to do re-arms the line, with no tone.
        """
        control = self._control
        mark = control.machine.mark
        services = line.endpoint.services
        state = line.state
        legs = line.legs
        active = line.active
        held = [leg for leg in legs if leg.held]
        waiting = [leg for leg in legs if leg.waiting]
        control.counters["flashes"] += 1
        if state is LineState.CONFERENCE:
            third = next((leg for leg in legs if leg.consultation), None)
            if third is not None:
                for leg in legs:
                    mark(leg, conference=False)
                control.release(third.call, ReleaseCause.NORMAL, keep=line)
                control.feed(line, LineInput.PARTY_LEFT)
                self._reconcile(legs)
                return
        elif waiting and state in (LineState.CONNECTED, LineState.HOLDING):
            if active is not None:
                mark(active, held=True)
            answered = waiting[0]
            mark(answered, waiting=False)
            control.answer(answered)
            control.feed(line, LineInput.RETRIEVED)
            self._reconcile(legs)
            return
        elif held and active is not None and active.consultation and services.three_way \
                and state in (LineState.CONNECTED, LineState.RINGBACK) and active.state is not LegState.NEW:
            other = held[-1]
            mark(other, held=False, conference=True)
            mark(active, conference=True)
            control.counters["conferences"] += 1
            control.feed(line, LineInput.JOINED)
            self._reconcile(legs)
            if control.events.watched:
                control.events.publish(CallsJoined(str(line.endpoint.name), (other.call.call_id, active.call.call_id)))
            return
        elif held and state is LineState.CONNECTED and active is not None:
            mark(active, held=True)  # swap
            mark(held[-1], held=False)
            control.feed(line, LineInput.RETRIEVED)
            self._reconcile(legs)
            return
        elif held and active is not None and active.consultation and state is LineState.RINGBACK:
            control.release(active.call, ReleaseCause.ABANDONED, keep=line)  # give the consultation up
            mark(held[-1], held=False)
            control.feed(line, LineInput.RETRIEVED)
            self._reconcile(legs)
            return
        elif held and state in (LineState.DIAL_TONE, LineState.COLLECTING, LineState.BUSY,
                                LineState.REORDER, LineState.HOLDING):
            mark(held[-1], held=False)
            control.feed(line, LineInput.RETRIEVED)
            self._reconcile(legs)
            return
        elif state is LineState.CONNECTED and active is not None and not held and not waiting \
                and (services.three_way or services.transfer) and active.call.state is CallState.CONNECTED:
            mark(active, held=True)
            control.feed(line, LineInput.HOLD)
            self._reconcile(legs)
            return
        control.counters["flashes_ignored"] += 1
        self._rearm(line)

    def _rearm(self, line: Line) -> None:
        """
        After a flash that meant nothing: the request the line needs now
        (the gateway waits for one after each notification), with the tone
        it heard, and no other.
        """
        requests = self._control.requests
        state = line.state
        if state is LineState.DIAL_TONE or state is LineState.COLLECTING:
            requests.recall_dial_tone(line) if line.legs else requests.dial_tone(line)
        elif state is LineState.BUSY:
            requests.busy_tone(line)
        elif state is LineState.REORDER:
            requests.reorder_tone(line)
        elif state is LineState.RINGBACK:
            requests.ringback(line)
        else:
            requests.watch_call(line)

    def _reconcile(self, legs: list[Leg]) -> None:
        media = self._control.media
        for call in {leg.call: None for leg in legs}:
            media.reconcile_call(call)

    # -- hanging up, parties leaving --------------------------------------------

    def hang_up(self, line: Line) -> bool:
        """
        The line hung up holding several calls: a three-way call ends (or
        its two parties stay together, transfer-on-hangup); a consultation
        call with a call on hold is a transfer; otherwise the talking call
        ends and the line is rung back for the others.  False when the
        basic call's release applies.
        """
        legs = line.legs
        if len(legs) < 2:
            return False
        control = self._control
        services = line.endpoint.services
        conference = [leg for leg in legs if leg.conference]
        if len(conference) == 2:
            if services.transfer_on_hangup:
                self.transfer(line, conference[0], conference[1])
            else:
                for leg in conference:
                    control.release(leg.call, ReleaseCause.NORMAL)
            return True
        active = line.active
        held = [leg for leg in legs if leg.held]
        if active is not None and active.consultation and held and services.transfer:
            self.transfer(line, held[-1], active)
            return True
        if active is not None:
            control.release(active.call, ReleaseCause.NORMAL if active.call.state is CallState.CONNECTED
                            else ReleaseCause.ABANDONED)
            return True  # the others ring the line back once it has gone (leg_left)
        control.feed(line, LineInput.RECALL)
        return True

    def transfer(self, line: Line, first: Leg, second: Leg) -> None:
        """
        Connect the parties of C{line}'s two calls to each other: their legs
        move to a new call (ringing still, if the second party has not
        answered), the line's own legs go with its two calls (cause
        transferred).
        """
        control = self._control
        a, b = first.peer, second.peer
        one, two = first.call, second.call
        if a is None or b is None or a.state is LegState.GONE or b.state is LegState.GONE:
            control.release(one, ReleaseCause.NORMAL)
            control.release(two, ReleaseCause.NORMAL)
            return
        control.counters["transfers"] += 1
        call = control.join(a, b, two, line)
        for old in (one, two):
            old.related = (call.call_id,)
            control.release(old, ReleaseCause.TRANSFERRED)
        if control.events.watched:
            control.events.publish(CallTransferred(control.views.call(call), (one.call_id, two.call_id),
                                                   str(line.endpoint.name)))

    def leg_left(self, line: Line, leg: Leg) -> None:
        """
        One of the line's legs is gone and others remain: a three-way call
        goes back to two parties; the talking call gone, the line holds the
        others (off hook) or rings for them (on hook).
        """
        control = self._control
        legs = line.legs
        if leg.conference:
            for other in legs:
                control.machine.mark(other, conference=False)
            if line.state is LineState.CONFERENCE:
                control.feed(line, LineInput.PARTY_LEFT)
            self._reconcile(legs)
            return
        if line.state is LineState.RELEASING and not leg.held and not leg.waiting:
            if line.hook is Hook.ON:
                control.feed(line, LineInput.RECALL)
            elif leg.call.cause in _ENDED_NORMALLY:
                control.feed(line, LineInput.ACTIVE_GONE)
            else:
                control.feed(line, LineInput.ACTIVE_FAILED)

    def ringing_again(self, line: Line) -> None:
        """The line is rung back for a held call: for so long, then the held calls end."""
        self._recalls.add(line)

    def _recall_expired(self, line: Line) -> None:
        if line.state is LineState.RECALLING:
            for leg in list(line.legs):
                self._control.release(leg.call, ReleaseCause.NO_ANSWER)

    def answer_recall(self, line: Line) -> None:
        """Off hook after a recall: talk with the newest held (or waiting) call again."""
        control = self._control
        legs = line.legs
        if not legs:
            return
        leg = legs[-1]
        if leg.waiting:
            control.machine.mark(leg, waiting=False)
            control.answer(leg)
        else:
            control.machine.mark(leg, held=False)
        control.requests.watch_call(line)
        self._reconcile(legs)

    def line_empty(self, line: Line) -> bool:
        """The last held or waiting call of a holding or recalling line ended: True when handled."""
        if line.state in (LineState.HOLDING, LineState.RECALLING):
            self._control.feed(line, LineInput.HELD_GONE)
            return True
        return False


_FLAGS = ("private", "call_waiting", "three_way", "transfer", "transfer_on_hangup", "dnd", "message_waiting")
_NUMBERS = ("forward_always", "forward_busy", "forward_no_answer")


def check_services(changes: dict[str, Any]) -> dict[str, Any]:
    """
    Changes to a line's services from outside (the admin's JSON): every
    name a field, every value of its type (ValueError saying which not).
    """
    import re

    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
        elif name in _NUMBERS:
            if value is not None and (not isinstance(value, str) or re.fullmatch(r"[0-9*#]{1,32}", value) is None):
                raise ValueError(f"{name} must be a number of digits, or null")
        elif name == "name":
            if value is not None and (not isinstance(value, str) or len(value) > 64 or '"' in value):
                raise ValueError("name must be text of at most 64 characters without quotes, or null")
        else:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(_FLAGS + _NUMBERS + ('name',))}")
        values[name] = value
    return values
