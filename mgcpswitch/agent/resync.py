# -*- test-case-name: tests.test_agent_registry -*-
"""
What the registry's news means for lines and calls.

The registry knows gateways and endpoints, not calls; when a gateway loses
its endpoints' state (RSIP restart, forced), an audit begins or answers,
or a gateway stops answering, L{Resync} decides what becomes of the lines
and the calls on them: calls whose connections the gateway no longer holds
end (there is nothing left to delete), connections the gateway holds that
no call of ours owns are deleted, and every line with no call is armed
from the hook state the audit reports.
"""

from __future__ import annotations

from typing import Any, Iterable

from zope.interface import implementer

from ..mgcp import ConnectionMode, Response
from .events import lost_record
from .calls import Call, CallInput, LegInput, LegState
from .lines import Line, LineInput
from .model import CallCheckpoint, CallStarted, CallState, Hook, LineState, ReleaseCause, StoredState
from .gateways import Endpoint, Gateway, IRegistryListener, Outage

__all__ = ["Resync"]


@implementer(IRegistryListener)
class Resync:
    """The coordinator's listener to the registry (C{control} is the coordinator)."""

    def __init__(self, control: Any) -> None:
        self._control = control

    def endpoints_lost(self, endpoints: Iterable[Endpoint], outage: Outage) -> None:
        """The gateway dropped these endpoints' connections: their calls end, nothing to delete there."""
        control = self._control
        for endpoint in endpoints:
            line = endpoint.line
            endpoint.connections.clear()
            legs = list(line.legs)
            for leg in legs:
                control.media.lost(leg)
                control.lines.remove_leg(line, leg)
            control.lines.hook_seen(line, Hook.UNKNOWN)
            endpoint.mwi_shown = None  # it forgot the indicator: shown again when armed
            control.feed(line, LineInput.RESET)
            if outage is Outage.RESTARTING:
                control.feed(line, LineInput.RESTARTING)
            elif outage is Outage.OUT_OF_SERVICE:
                control.feed(line, LineInput.OUT_OF_SERVICE)
            for leg in legs:
                control.release(leg.call, ReleaseCause.GATEWAY_RESTART)
                control.leg_gone(leg, False)

    def auditing(self, endpoints: Iterable[Endpoint]) -> None:
        for endpoint in endpoints:
            if not endpoint.line.legs:
                self._control.feed(endpoint.line, LineInput.RESET)

    def audited(self, endpoint: Endpoint, hook: Hook, connection_ids: frozenset[str]) -> bool:
        control = self._control
        line = endpoint.line
        if hook is not Hook.UNKNOWN:
            control.lines.hook_seen(line, hook)
        creating = False
        for leg in list(line.legs):
            call = leg.call
            if leg.state is LegState.CREATING:
                creating = True
            elif leg.connection_id is not None and leg.connection_id not in connection_ids:
                # We thought a call was up; the gateway has no such connection.
                control.media.lost(leg)
                control.release(call, ReleaseCause.AGENT_RESTART if call.recovered else ReleaseCause.GATEWAY_RESTART)
                control.leg_gone(leg, False)
            elif call.recovered and line.state is LineState.CONNECTED:
                if hook is Hook.ON:
                    control.feed(line, LineInput.ON_HOOK)  # hung up while we were away
                else:
                    control.requests.watch_hang_up(line, call)  # its request, now ours
        if not creating:
            # (A CRCX in flight here would make its connection look unknown:
            # the line stays marked, and the next keepalive audits it again.)
            stale = connection_ids - {leg.connection_id for leg in line.legs}
            if stale:
                self._control.media.delete_stale(line, stale)
        self._arm_after_audit(line)
        return not creating

    def _arm_after_audit(self, line: Line) -> None:
        endpoint = line.endpoint
        ours = {leg.connection_id for leg in line.legs}
        endpoint.connections = {k: v for k, v in endpoint.connections.items() if k in ours}
        if line.legs or line.state is not LineState.UNKNOWN:
            return
        self._control.feed(line, LineInput.OFF_HOOK if line.hook is Hook.OFF else LineInput.ON_HOOK)

    def endpoint_failed(self, endpoint: Endpoint, response: Response) -> None:
        self._control.requests.line_error(endpoint.line, response)

    def gateway_down(self, gateway: Gateway) -> None:
        """
        A gateway failed its liveness check: calls being set up through it
        are cleared; talking calls stay (their media does not need us) until
        a party hangs up or the gateway's audit, when it answers again, finds
        their connections gone.
        """
        for endpoint in gateway.endpoints.values():
            for leg in list(endpoint.line.legs):
                if leg.call.state is not CallState.CONNECTED:
                    self._control.release(leg.call, ReleaseCause.GATEWAY_RESTART)

    def recover(self, state: StoredState) -> None:
        """
        The lines' services as they were last changed, and the calls that
        were talking when the agent stopped: each is taken
        back as it was (its audit then shows whether it is still up), or,
        when its endpoints are gone from the configuration or busy, closed
        with its record.
        """
        control = self._control
        for line_record in state.lines:
            endpoint = control.registry.endpoint(line_record.endpoint)
            if endpoint is not None:
                control.registry.set_services(endpoint, line_record.services)
        for saved in state.calls:
            endpoints = [control.registry.endpoint(leg.endpoint) for leg in saved.legs]
            if all(e is not None and not e.line.legs for e in endpoints) \
                    and all(leg.connection_id for leg in saved.legs):
                self._adopt(saved, endpoints)
            else:
                control.counters["calls_lost"] += 1
                control.store.call_ended(lost_record(saved, control.clock.seconds()))

    def _adopt(self, saved: CallCheckpoint, endpoints: list[Endpoint]) -> Call:
        """A talking call from a checkpoint: its legs hold their connections again."""
        control = self._control
        call = Call(saved.call_id, saved.started, saved.dialled)
        call.answered = saved.answered
        call.recovered = True
        call.recovered_codec = saved.codec
        control.track(call)
        control.counters["calls_recovered"] += 1
        for leg_saved, endpoint in zip(saved.legs, endpoints):
            line = endpoint.line
            leg = control.machine.new_leg(call, line, leg_saved.originating)
            leg.connection_id = leg_saved.connection_id
            leg.mgcp_call_id = leg_saved.call_id or call.call_id
            leg.mode = ConnectionMode(leg_saved.mode) if leg_saved.mode else ConnectionMode.SENDRECV
            control.machine.feed_leg(leg, LegInput.ADOPT)
            endpoint.connections[leg.connection_id] = call.call_id
            control.lines.add_leg(line, leg)
            control.feed(line, LineInput.RESUMED)
        control.machine.feed(call, CallInput.RESUME)
        if control.events.watched:
            control.events.publish(CallStarted(control.views.call(call)))
        return call
