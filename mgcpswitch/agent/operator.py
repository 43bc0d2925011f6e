# -*- test-case-name: tests.test_agent_calls -*-
"""
What the operator may ask of call control beyond reading: click-to-dial,
hanging a call up, auditing one endpoint, changing a line's services (and
message waiting, which a voicemail plugin changes too).

Click-to-dial (L{Operator.originate}) rings the first party with the
second's number as caller ID; when it answers, the second is called as if
the first had dialled it.  The call is an ordinary call whose originating
leg is the first party: once it picks up, the coordinator sets the call
up like any other.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from ..errors import CallControlError, TransactionAborted, TransactionTimeout
from ..mgcp import ParamCode, Response, ReturnCode
from . import commands as cmd
from .calls import Call
from .lines import LineInput
from .model import CallState, Hook, LineState, ReleaseCause
from .gateways import Endpoint
from .services import check_services

__all__ = ["Operator"]

P = ParamCode


class Operator:
    """The operator's actions, carried out through the coordinator C{control}."""

    def __init__(self, control: Any) -> None:
        self._control = control

    def originate(self, a: str, b: str) -> Deferred[str]:
        """
        Ring C{a} (showing C{b}'s number); when C{a} answers, call C{b}.
        Fires with the call id once C{a} rings.
        """
        control = self._control
        first = control.registry.endpoint(a)
        second = control.registry.endpoint(b)
        for name, endpoint in ((a, first), (b, second)):
            if endpoint is None:
                return fail(CallControlError(f"unknown endpoint {name}"))
            if endpoint.line.state is not LineState.IDLE or not endpoint.gateway.usable \
                    or not endpoint.in_service:
                return fail(CallControlError(
                    f"{name} is busy or out of service ({endpoint.line.state.value})"))
        assert first is not None and second is not None
        if first is second:
            return fail(CallControlError("cannot call a line from itself"))
        line = first.line
        call = control.new_call(second.number or str(second.name))
        call.originated = True
        call.target = second.line
        control.lines.add_leg(line, control.machine.new_leg(call, line, True))
        control.feed(line, LineInput.INCOMING)
        d: Deferred[str] = Deferred()
        call.originate_deferred = d
        call.saved_request = (line.request_id, line.dialling_armed)
        signals = (cmd.RINGING[0], cmd.caller_id(control.clock.seconds(), second.number, "mgcpswitch"))
        control.requests.send(line, cmd.OFF_HOOK_EVENTS, signals, call=call).addCallbacks(
            self._ringing, self._ring_timed_out, (call,), None, (call,)
        )
        return d

    def _ringing(self, response: Response, call: Call) -> None:
        control = self._control
        d, call.originate_deferred = call.originate_deferred, None
        leg = call.caller
        assert leg is not None
        line = leg.line
        code = response.code
        if code == ReturnCode.ALREADY_OFF_HOOK and call.state is CallState.SETUP \
                and call.saved_request is not None and call.saved_request[1]:
            # An idle request with dial tone embedded: the line is dialling
            # on its own (we could not know).  Our ring request failed as a
            # whole, so the gateway still runs the old one: leave the line
            # to it, as if we had never rung.
            control.lines.restore_request(line, *call.saved_request)
            control.lines.remove_leg(line, leg)
            control.feed(line, LineInput.RING_REFUSED)
            if d is not None:
                d.errback(CallControlError(f"{line.endpoint.name} is busy (off hook)"))
            control.release(call, ReleaseCause.BUSY)
            return
        if code == ReturnCode.ALREADY_OFF_HOOK and call.state is CallState.SETUP:
            # The user lifted the handset just as we rang it: that is the
            # answer (its NTFY may have arrived already, or may follow).
            control.lines.hook_seen(line, Hook.OFF)
            if line.state is LineState.RINGING:
                control.feed(line, LineInput.PICKED_UP)
            if d is not None:
                d.callback(call.call_id)
            return
        if code >= 300:
            if d is not None:
                d.errback(CallControlError(f"cannot ring: {int(code)} {response.comment}"))
            control.release(call, ReleaseCause.GATEWAY_ERROR)
            return
        if call.state is CallState.SETUP:
            control.await_answer(call)
        if d is not None:
            d.callback(call.call_id)

    def _ring_timed_out(self, failure: Failure, call: Call) -> None:
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        self._control.counters["setup_timeouts"] += 1
        self._control.release(call, ReleaseCause.GATEWAY_TIMEOUT)

    def hangup(self, call_id: str) -> Deferred[None]:
        """Release a call; fires when its connections are deleted."""
        call = self._control.in_progress(call_id)
        if call is None:
            return fail(CallControlError(f"no call {call_id}"))
        d: Deferred[None] = Deferred()
        call.ended_deferreds.append(d)
        self._control.release(call, ReleaseCause.ADMIN)
        return d

    def audit_endpoint(self, name: str) -> Deferred[Endpoint]:
        """AUEP one endpoint; fires with the endpoint, its hook updated."""
        control = self._control
        endpoint: Endpoint | None = control.registry.endpoint(name)
        if endpoint is None:
            return fail(CallControlError(f"unknown endpoint {name}"))

        def audited(response: Response) -> Endpoint:
            if response.code >= 300:
                raise CallControlError(f"audit of {name}: {int(response.code)} {response.comment}")
            states = {event.name for event in response.params.get(P.EVENT_STATES, ())}
            if "L/hd" in states:
                control.lines.hook_seen(endpoint.line, Hook.OFF)
            elif "L/hu" in states:
                control.lines.hook_seen(endpoint.line, Hook.ON)
            return endpoint

        command = cmd.auep(control.wire.txid(), endpoint.name)
        sent: Deferred[Response] = control.wire.send(endpoint.gateway, command)
        return sent.addCallback(audited)

    def set_message_waiting(self, line: str, waiting: bool) -> Endpoint:
        """
        The message-waiting flag of a line, by endpoint name or number (the
        admin, a voicemail plugin): its indicator and stutter dial tone.
        """
        return self.change_services(line, {"message_waiting": waiting})

    def change_services(self, line: str, changes: dict[str, Any]) -> Endpoint:
        """A line's services, by endpoint name or number, checked field by field (CallControlError)."""
        control = self._control
        endpoint: Endpoint | None = control.registry.endpoint(line) or control.registry.numbers.get(line)
        if endpoint is None:
            raise CallControlError(f"unknown line {line}")
        try:
            values = check_services(changes)
        except ValueError as e:
            raise CallControlError(str(e)) from None
        control.services.change(endpoint, **values)
        return endpoint
