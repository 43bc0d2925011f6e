# -*- test-case-name: tests.test_agent_calls -*-
"""
Legs' connections on the gateways: CRCX, MDCX and DLCX, and their answers.

L{Media.reconcile} brings a leg's connection to what the call wants of it
(L{mgcpswitch.agent.calls.wanted}): it creates the connection once the leg
can (the caller's at once, receive-only; the callee's once the caller's
SDP is known), modifies it when the wanted mode, remote SDP or tone differ
from what the gateway was last told, and deletes it when the call is
released.  One command at a time per leg: when an answer arrives the leg
is reconciled again, so whatever changed meanwhile (an answer, a release)
is sent then.  Every connection the switch created is deleted whatever
went wrong: a DLCX per connection, carrying the request that re-arms the
line; a connection on a gateway that cannot hear us, or whose CRCX answer
was lost, is left to an audit (L{Registry.recheck}).

What the answers mean for the call goes back to the coordinator through
L{ILegListener}.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from ..errors import TransactionAborted, TransactionTimeout
from ..mgcp import ConnectionMode, ParamCode, Response, ReturnCode, SessionDescription
from . import commands as cmd
from .calls import Call, CallMachine, Leg, LegInput, LegState, Tone, wanted
from .lines import Line, LineMachine
from .model import GatewayState, Hook, ReleaseCause
from .registry import Registry
from .wire import Wire

__all__ = ["Media", "ILegListener", "restrict_codecs"]

P = ParamCode
_OPEN = LegState.OPEN
_NEW = LegState.NEW
_SIGNALS = {Tone.NONE: cmd.NO_SIGNALS, Tone.RINGBACK: cmd.RINGBACK}
# Causes after which a line left off hook hears busy tone (the other party
# hung up, or was busy); any other failure gets reorder tone.
_BUSY_CAUSES = (ReleaseCause.NORMAL, ReleaseCause.BUSY, ReleaseCause.ADMIN, None)


class ILegListener(Interface):
    """What the coordinator learns from legs' connections."""

    def connection_open(leg: Leg) -> None:
        """C{leg}'s connection was created (its local SDP is known)."""

    def connection_applied(leg: Leg) -> None:
        """The gateway accepted a modification of C{leg}'s connection (mode, SDP, tone)."""

    def release(call: Call, cause: ReleaseCause) -> None:
        """A command of the call failed: release it with C{cause}."""

    def leg_gone(leg: Leg, rearmed: bool) -> None:
        """
        C{leg} has no connection any more; C{rearmed} when its DLCX carried
        (and the gateway accepted) the request that re-arms its line.
        """


class Media:
    log = Logger()

    def __init__(
        self,
        wire: Wire,
        lines: LineMachine,
        calls: CallMachine,
        registry: Registry,
        listener: ILegListener,
        idle_events: tuple[Any, ...],
        counters: Counter[str],
        clock: IReactorTime,
    ) -> None:
        self._wire = wire
        self._lines = lines
        self._calls = calls
        self._registry = registry
        self._listener = listener
        self.idle_events = idle_events
        self._counters = counters
        self._clock = clock
        self.trunks: Any = None  # the coordinator's trunk legs (L{mgcpswitch.agent.trunks.Trunks})

    # -- what the line runs after its connection is gone ---------------------

    def rearm_request(self, line: Line, cause: Optional[ReleaseCause]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """
        The request that re-arms a line whose call is over: watch for
        off-hook, or, for a line left off hook, for the hang-up with busy
        tone (the other party hung up, or was busy) or reorder tone (the
        call failed).
        """
        if line.hook is Hook.OFF:
            if cause in _BUSY_CAUSES:
                return cmd.HANG_UP_EVENTS, cmd.BUSY_TONE
            return cmd.HANG_UP_EVENTS, cmd.REORDER_TONE
        return self.idle_events, cmd.NO_SIGNALS

    # -- reconciling ---------------------------------------------------------

    def reconcile_call(self, call: Any) -> None:
        for leg in list(call.legs):
            self.reconcile(leg)

    def reconcile(self, leg: Leg) -> None:
        """Send what C{leg}'s connection needs now, if nothing is in flight on it."""
        if leg.line is None:
            self.trunks.reconcile(leg)  # a party beyond a trunk
            return
        state = leg.state
        if state is not _OPEN and state is not _NEW:
            return  # gone, or a command is in flight: its answer reconciles again
        call = leg.call
        if not call.live or leg.dropped:
            if state is _NEW:
                self._calls.feed_leg(leg, LegInput.DELETE)
                self._listener.leg_gone(leg, False)
            else:
                self._delete(leg)
            return
        if state is _NEW:
            # A callee's connection waits for its caller's SDP: nothing to
            # work out until then (a call's first reconcile, and the
            # caller's CRCX answer until it arrives).
            if leg.originating or (leg.peer is not None and leg.peer.local_sdp is not None):
                mode, remote, tone = wanted(leg)
                self._create(leg, mode, remote, tone)
            return
        mode, remote, tone = wanted(leg)
        if mode is not leg.mode or tone is not leg.tone or (remote is not None and remote is not leg.remote_sdp):
            self._modify(leg, mode, remote if remote is not leg.remote_sdp else None, tone)

    def lost(self, leg: Leg) -> None:
        """The gateway no longer holds C{leg}'s connection (nothing to delete)."""
        if leg.connection_id is not None:
            leg.line.endpoint.connections.pop(leg.connection_id, None)
        leg.connection_id = None
        self._calls.feed_leg(leg, LegInput.LOST)

    # -- CRCX --------------------------------------------------------------

    def _create(self, leg: Leg, mode: ConnectionMode, remote: Any, tone: Tone) -> None:
        line = leg.line
        endpoint = line.endpoint
        call = leg.call
        if leg.originating:
            events, signals = endpoint.call_events, _SIGNALS[tone]  # ringback, for a call to a line
            leg.tone = tone
        else:
            # Ring the callee with the caller's number and name (withheld:
            # "P"); a line already in a call hears the call-waiting tone
            # instead, with the caller ID where its gateway offers it.
            peer = leg.peer
            if peer is not None and peer.line is None:  # a call in from a trunk: its caller's number
                ident = cmd.caller_id(self._clock.seconds(), peer.trunk.number, None)
            else:
                caller = peer.line.endpoint if peer is not None else None
                ident = cmd.caller_id(
                    self._clock.seconds(), caller.number if caller is not None else None,
                    caller.services.name if caller is not None else None,
                    caller.services.private if caller is not None else False,
                )
            if leg.waiting:
                events, signals = endpoint.call_events, (cmd.CALL_WAITING_TONE[0], ident)
            elif line.hook is Hook.OFF and len(line.legs) > 1:
                # A waiting call its line answered (a flash) before this
                # connection was made: no ringing for a line off hook.
                events, signals = endpoint.call_events, cmd.NO_SIGNALS
            else:
                events, signals = cmd.OFF_HOOK_EVENTS, (cmd.RINGING[0], ident)
        gateway = endpoint.gateway
        offer = remote
        if remote is not None and gateway.codecs is not None:
            offer = restrict_codecs(remote, gateway.codecs)
            if offer is None:
                self._calls.feed_leg(leg, LegInput.DELETE)  # nothing to create
                self._listener.release(call, ReleaseCause.CODEC_MISMATCH)
                self._listener.leg_gone(leg, False)
                return
        self._calls.feed_leg(leg, LegInput.CREATE)
        leg.mode = mode
        leg.mgcp_call_id = call.call_id  # its connection's CallId for good, whatever call it moves to
        leg.remote_sdp = remote  # what the peer offered: compared by identity with what it offers next
        command = cmd.crcx(
            self._wire.txid(), endpoint.name, call.call_id, mode, gateway.options, sdp=offer,
            request_id=self._lines.new_request(line), events=events, signals=signals,
        )
        self._wire.request(endpoint.gateway, command, call, self._created, self._timed_out, leg)

    def _created(self, response: Response, leg: Leg) -> None:
        call = leg.call
        connection_id = response.connection_id if response.is_success else None
        if leg.state is not LegState.CREATING:
            # Lost meanwhile (its gateway restarted): a connection made
            # after all is deleted by id.
            if connection_id:
                self._delete_stray(leg.line, connection_id)
            return
        if connection_id:
            leg.connection_id = connection_id
            leg.local_sdp = response.sdp
            leg.line.endpoint.connections[connection_id] = call.call_id
            self._calls.feed_leg(leg, LegInput.CREATED)
            if call.live:
                if response.sdp is None:
                    self._listener.release(call, ReleaseCause.GATEWAY_ERROR)  # a 200 without SDP is unusable
                else:
                    self._listener.connection_open(leg)
            self.reconcile_call(call)
            return
        self._calls.feed_leg(leg, LegInput.FAILED)
        if call.live:
            if response.code == ReturnCode.ALREADY_OFF_HOOK and not leg.originating:
                self._lines.hook_seen(leg.line, Hook.OFF)
                self._listener.release(call, ReleaseCause.BUSY)
            else:
                self.log.warn(
                    "CRCX on {line} failed: {code} {comment}",
                    line=leg.line.endpoint.name, code=int(response.code), comment=response.comment,
                )
                self._listener.release(call, ReleaseCause.GATEWAY_ERROR)
        self._listener.leg_gone(leg, False)

    # -- MDCX --------------------------------------------------------------

    def _modify(self, leg: Leg, mode: ConnectionMode, sdp: Any, tone: Tone) -> None:
        line = leg.line
        endpoint = line.endpoint
        call = leg.call
        self._calls.feed_leg(leg, LegInput.MODIFY)
        leg.mode = mode
        # The line's request goes with the MDCX only when what the line
        # hears changes (ringback on or off): holding, retrieving or mixing
        # a connection leaves the line's request (a recall dial tone) alone.
        request_id = self._lines.new_request(line) if tone is not leg.tone else None
        leg.tone = tone
        if sdp is not None:
            leg.remote_sdp = sdp
            codecs = endpoint.gateway.codecs
            if codecs is not None:
                sdp = restrict_codecs(sdp, codecs) or sdp  # no codec in common: its answer says so
        command = cmd.mdcx(
            self._wire.txid(), endpoint.name, leg.mgcp_call_id, leg.connection_id, mode, sdp=sdp,  # type: ignore[arg-type]
            request_id=request_id, events=endpoint.call_events, signals=_SIGNALS[tone],
        )
        self._wire.request(endpoint.gateway, command, call, self._modified, self._timed_out, leg)

    def _modified(self, response: Response, leg: Leg) -> None:
        if leg.state is not LegState.MODIFYING:
            return  # lost meanwhile (its gateway restarted)
        call = leg.call
        code = response.code
        self._calls.feed_leg(leg, LegInput.MODIFIED if code < 300 else LegInput.FAILED)
        if call.live:
            if code >= 300:
                if code == ReturnCode.ALREADY_ON_HOOK:
                    self._lines.hook_seen(leg.line, Hook.ON)
                    self._listener.release(call, ReleaseCause.NORMAL if call.answered is not None
                                           else ReleaseCause.ABANDONED)
                else:
                    self._listener.release(call, ReleaseCause.GATEWAY_ERROR)
            else:
                self._listener.connection_applied(leg)
        self.reconcile(leg)

    # -- DLCX --------------------------------------------------------------

    def _delete(self, leg: Leg) -> None:
        endpoint = leg.line.endpoint
        if endpoint.gateway.state is GatewayState.DOWN:
            # It cannot hear us: the audit deletes it when it comes back.
            self._registry.recheck(endpoint)
            self.lost(leg)
            self._listener.leg_gone(leg, False)
            return
        self._calls.feed_leg(leg, LegInput.DELETE)
        self._send_delete(leg)

    def _send_delete(self, leg: Leg) -> None:
        line = leg.line
        endpoint = line.endpoint
        call = leg.call
        if len(line.legs) <= 1:  # the line's last call: the DLCX re-arms it
            events, signals = leg.rearm = self.rearm_request(line, call.cause)
            embedded = events is cmd.DIALLING_ON_OFF_HOOK
            request_id: Optional[str] = self._lines.new_request(line, dialling=embedded)
        else:
            events, signals, embedded, request_id = (), (), False, None
            leg.rearm = None
        command = cmd.dlcx(
            self._wire.txid(), endpoint.name, leg.mgcp_call_id, leg.connection_id, request_id, events, signals,
            endpoint.digit_map if embedded else None,
        )
        self._wire.request(endpoint.gateway, command, call, self._deleted, self._timed_out, leg)

    def _deleted(self, response: Response, leg: Leg) -> None:
        if leg.state is not LegState.DELETING:
            return  # lost meanwhile (its gateway restarted)
        line = leg.line
        code = response.code
        if code == ReturnCode.ALREADY_ON_HOOK or code == ReturnCode.ALREADY_OFF_HOOK:
            # The hook changed under our encapsulated request, which failed
            # the whole DLCX (they share fate): again, with the right request.
            self._lines.hook_seen(line, Hook.ON if code == ReturnCode.ALREADY_ON_HOOK else Hook.OFF)
            self._calls.feed_leg(leg, LegInput.DELETE)
            self._send_delete(leg)
            return
        connection_id = leg.connection_id
        success = response.is_success
        if success or code == ReturnCode.INCORRECT_CONNECTION_ID:
            stats = response.params.get(P.CONNECTION_PARAMETERS)
            if stats is not None and hasattr(stats, "values"):
                leg.stats = dict(stats.values)
            self._calls.feed_leg(leg, LegInput.DELETED)
        else:
            self.log.warn(
                "DLCX on {line} failed: {code} {comment}",
                line=line.endpoint.name, code=int(code), comment=response.comment,
            )
            self._registry.recheck(line.endpoint)
            self._calls.feed_leg(leg, LegInput.FAILED)
        if connection_id is not None:
            line.endpoint.connections.pop(connection_id, None)
        self._listener.leg_gone(leg, success and code != ReturnCode.INCORRECT_CONNECTION_ID)

    def _delete_stray(self, line: Line, connection_id: str) -> None:
        endpoint = line.endpoint
        self._wire.send(endpoint.gateway, cmd.dlcx(self._wire.txid(), endpoint.name, connection_id=connection_id))\
            .addErrback(self._wire.command_failed, line)

    def delete_stale(self, line: Line, connection_ids: Any) -> None:
        """Connections an audit found that no call of ours holds: one DLCX each."""
        self._counters["stale_connections"] += len(connection_ids)
        self.log.info("{line}: deleting {count} stale connection(s)", line=line.endpoint.name,
                      count=len(connection_ids))
        # One DLCX per connection, never the whole endpoint: a call may
        # start on the line while these are in flight.
        for connection_id in sorted(connection_ids):
            self._delete_stray(line, connection_id)

    # -- no answer -----------------------------------------------------------

    def _timed_out(self, failure: Failure, leg: Leg) -> None:
        """A command got no answer: whatever it created must go."""
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        call = leg.call
        state = leg.state
        if not leg.busy:
            return  # lost meanwhile (its gateway restarted)
        self._calls.feed_leg(leg, LegInput.TIMED_OUT)
        if state is LegState.DELETING or state is LegState.CREATING:
            # A CRCX may have been executed and its answer lost; a DLCX may
            # not have been: the audit finds and deletes the connection.
            self._registry.recheck(leg.line.endpoint)
            if leg.connection_id is not None:
                leg.line.endpoint.connections.pop(leg.connection_id, None)
        if state is not LegState.DELETING:
            self._counters["setup_timeouts"] += 1
            self._listener.release(call, ReleaseCause.GATEWAY_TIMEOUT)
        if leg.state is LegState.GONE:
            self._listener.leg_gone(leg, False)
        else:
            self.reconcile(leg)


def restrict_codecs(sdp: SessionDescription, codecs: frozenset[str]) -> Optional[SessionDescription]:
    """
    C{sdp} offering only the formats whose encoding is in C{codecs} (upper
    case), keeping telephone-event (RFC 4733 DTMF) and what the formats'
    rtpmap/fmtp lines say; None when no codec is left.  A gateway profile
    lists what its gateway can do, so the switch offers it nothing else.
    """
    audio = sdp.audio
    if audio is None:
        return sdp
    maps = audio.rtpmaps
    keep = [f for f in audio.formats
            if f.isdigit() and int(f) in maps and maps[int(f)].encoding.upper() in codecs]
    if not keep:
        return None
    keep += [f for f in audio.formats if f.isdigit() and int(f) in maps and f not in keep
             and maps[int(f)].encoding.lower() == "telephone-event"]
    if len(keep) == len(audio.formats):
        return sdp
    dropped = {f for f in audio.formats if f not in keep}
    lines = []
    for line in sdp.lines:
        if line.startswith("m=audio "):
            fields = line.split(" ")
            line = " ".join(fields[:3] + [f for f in fields[3:] if f in keep])
        elif line.startswith(("a=rtpmap:", "a=fmtp:")):
            if line.partition(":")[2].partition(" ")[0] in dropped:
                continue
        lines.append(line)
    return SessionDescription(tuple(lines))
