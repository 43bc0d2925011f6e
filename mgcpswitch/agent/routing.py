# -*- test-case-name: tests.test_agent_calls -*-
"""
Routing and setting calls up: what happens between a number dialled (or a
call in from a trunk) and a call whose legs ring, and the new calls the
overload guard sheds.

The dial plan is asked (its answer may come later: a plugin may look the
number up elsewhere), the phone services get their say (star codes, call
waiting, forwarding, do-not-disturb), and the call is either placed (its legs made, the callee rung or made to
wait) or refused with a record and the tone (or SIP status) its cause
gets.  The coordinator (C{control}) owns lines, calls and their machines;
this module only decides and asks it to act.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..config import Settings
from ..mgcp import Parameters, ReturnCode, trusted_response
from ..transaction import Reply
from . import commands as cmd
from .calls import Call, Leg
from .lines import Line, LineInput
from .model import Hook, LineState, ReleaseCause, RouteDecision, RouteRequest
from .trunks import TrunkOrigin

__all__ = ["Router"]

_OK = ReturnCode.OK
_NO_PARAMS = Parameters()


class Router:
    """Routes what lines dial and trunks bring in, through the coordinator C{control}."""

    log = Logger()

    def __init__(self, control: Any, settings: Settings) -> None:
        self._control = control
        # What a caller hears when the line it calls cannot take calls now,
        # and when the overload guard sheds its call.
        self._unavailable = (
            LineInput.ROUTE_FAILED if settings.switch.unavailable_tone == "reorder" else LineInput.ROUTE_BUSY
        )
        self._shed_tone = cmd.BUSY_TONE if settings.overload.tone == "busy" else cmd.REORDER_TONE

    def route(self, line: Line, digits: str) -> None:
        endpoint = line.endpoint
        dialled = digits.rstrip("T")
        no_waiting = False
        feature = self._control.services.feature(line, dialled)
        if feature:
            return  # a star code: the services took it
        if feature is None:
            no_waiting = True  # *70 NUMBER: this call is not interrupted by call waiting
        if not endpoint.gateway.usable:
            # Its own gateway takes no new calls (draining, away): refused, with a record.
            self.failed_attempt(line, dialled, ReleaseCause.UNAVAILABLE)
            self._control.feed(line, self._unavailable)
            return
        request = RouteRequest(str(endpoint.name), dialled, endpoint.number)
        # The dial plan answers at once (the static one) or later (a
        # plugin's Deferred): a Deferred only for the latter, since
        # wrapping every answer in one cost a Deferred and its callback
        # run per call.
        try:
            decision = self._control.dial_plan.route(request)
        except Exception:
            self._route_failed(Failure(), line)
            return
        if isinstance(decision, Deferred):
            decision.addCallbacks(self._routed, self._route_failed, (line, dialled, no_waiting), errbackArgs=(line,))
        else:
            self._routed(decision, line, dialled, no_waiting)

    def shed(self, gateway: Any, line: Line, txid: int, dialled: str) -> Reply:
        """
        A new call the overload guard refuses at its first NTFY (the
        off-hook, or the off-hook with the digits where the idle request
        embeds dial tone): its record (cause overload), and one RQNT riding
        with the NTFY's response that plays the overload tone and leaves
        the re-arming to the gateway (L{cmd.SHED_EVENTS}).  The line stays
        idle here: its next NTFY is its next call.  Why this way: two
        transactions for a shed call, against six when it was refused
        after the digits (dial tone, reorder, the hang-up, re-arming),
        and no work in the line or call machines.  C{txid} is the NTFY's,
        C{dialled} the digits it carried.
        """
        control = self._control
        lines = control.lines
        lines.noted(line, "L/hd")
        lines.hook_seen(line, Hook.UNKNOWN)  # off hook now; back on hook unseen, when the gateway re-arms
        if control.events.watched:
            self.failed_attempt(line, dialled, ReleaseCause.OVERLOAD)  # a call: observers see it begin and end
        else:
            control.refused(line, dialled, ReleaseCause.OVERLOAD)  # its record alone: a third of the shed's cost
        response = trusted_response(_OK, txid, "OK", _NO_PARAMS)
        rider = control.requests.shed_request(line, self._shed_tone)
        if rider is not None:
            return Reply(response, after=(rider,))
        wire = control.wire
        wire.collect(gateway)
        try:
            control.requests.overload_tone(line, self._shed_tone)
        finally:
            riders = wire.collected()
        return Reply(response, after=riders)

    def _route_failed(self, failure: Failure, line: Line) -> None:
        self.log.failure("dial plan failed for {line}", failure, line=line.endpoint.name)
        self._control.outcomes[ReleaseCause.REJECTED.value] += 1
        if line.state is LineState.ROUTING:
            self._control.feed(line, LineInput.ROUTE_FAILED)

    def _routed(self, decision: RouteDecision, line: Line, dialled: str, no_waiting: bool) -> None:
        if line.state is not LineState.ROUTING:
            return  # the caller hung up while the dial plan thought
        if self._control.trunks.trunk(decision.target) is not None:
            self._control.trunks.call_out(line, dialled, decision.target, no_waiting)
            return
        endpoint = self._control.registry.endpoint(decision.target) if decision.target else None
        if endpoint is None:
            self.refuse(line, dialled, decision.cause or ReleaseCause.UNKNOWN_NUMBER)
            return
        self._control.services.deliver(line, dialled, endpoint, no_waiting=no_waiting)

    def refuse(self, line: Union[Line, TrunkOrigin], dialled: str, cause: ReleaseCause,
               target: Optional[Line] = None) -> None:
        """
        A call that cannot be placed: its record, and the tone its cause
        gets (a call in from a trunk: the status its cause gets).
        """
        self.failed_attempt(line, dialled, cause, target)
        if type(line) is TrunkOrigin:
            return
        if cause is ReleaseCause.BUSY or cause is ReleaseCause.DND:
            self._control.feed(line, LineInput.ROUTE_BUSY)
        elif cause is ReleaseCause.UNAVAILABLE:
            self._control.feed(line, self._unavailable)
        else:
            self._control.feed(line, LineInput.ROUTE_FAILED)

    def place(self, line: Union[Line, TrunkOrigin], dialled: str, target: Line, waiting: bool = False) -> Call:
        """A call from C{line} (or a call in from a trunk) to C{target}: rung, or waiting for it (call waiting)."""
        call: Call = self._control.new_call(dialled)
        self.start_leg(call, line)
        self.set_up(call, target, waiting)
        return call

    def start_leg(self, call: Call, origin: Union[Line, TrunkOrigin]) -> Leg:
        """The calling party's leg: on its line, or the trunk's call in."""
        if type(origin) is TrunkOrigin:
            trunk_leg: Leg = self._control.trunks.origin_leg(call, origin)
            return trunk_leg
        line: Line = origin
        leg: Leg = self._control.machine.new_leg(call, line, True)
        if any(other.held for other in line.legs):
            self._control.machine.mark(leg, consultation=True)  # dialled while another call was held
        self._control.lines.add_leg(line, leg)
        return leg

    @staticmethod
    def routing(origin: Union[Line, TrunkOrigin]) -> bool:
        """Whether a call is still being routed for C{origin} (its caller has not given up)."""
        if type(origin) is TrunkOrigin:
            return origin.routing
        return origin.state is LineState.ROUTING

    def set_up(self, call: Call, target: Line, waiting: bool = False) -> None:
        """Ring C{target} for C{call} (or make the call wait for it): its leg, then the connections."""
        leg = self._control.machine.new_leg(call, target, False)
        self._control.lines.add_leg(target, leg)
        if waiting:
            self._control.machine.mark(leg, waiting=True)
            self._control.counters["calls_waiting"] += 1
        else:
            self._control.feed(target, LineInput.INCOMING)
        self._control.media.reconcile_call(call)

    def call_far_end(self, line: Line) -> None:
        """The first party of an originated call answered: now call the second."""
        call = line.leg.call
        self._control.cancel_no_answer(call)
        target = call.target
        if target.state is not LineState.IDLE or not target.endpoint.gateway.usable:
            self._control.release(call, ReleaseCause.BUSY)
            return
        self.set_up(call, target)

    def failed_attempt(self, line: Union[Line, TrunkOrigin], dialled: str, cause: ReleaseCause,
                        target: Optional[Line] = None) -> None:
        """A call that never got a connection still gets its record (its legs hold no line)."""
        call = self._control.new_call(dialled)
        if type(line) is TrunkOrigin:
            self._control.trunks.origin_leg(call, line)  # released below: the trunk's caller is told why
        else:
            self._control.machine.new_leg(call, line, True)
        if target is not None:
            self._control.machine.new_leg(call, target, False)
        self._control.release(call, cause)
