# -*- test-case-name: tests.test_agent_calls -*-
"""
The coordinator: turns what gateways say into inputs of the small
machines, and carries out the actions they return.

L{CallControl} is the call agent's command handler (NTFY, RSIP and
gateway-initiated DLCX arrive here).  It owns nothing but the wiring and
the calls in progress:
- the L{Registry} keeps gateways and endpoints (firewall, RSIP, audits,
  keepalives) and tells us what matters to calls (L{IRegistryListener});
- the L{LineMachine} is the only writer of a line's state: a notification
  becomes a L{LineInput}, and the L{Action} it returns is carried out here
  (a tone, routing a call, answering, releasing);
- the L{CallMachine} writes calls' and legs' states; L{Media} keeps each
  leg's connection on its gateway as the call wants it, and reports back
  (L{ILegListener});
- L{EventBus} and L{Views} carry what happened to observers, the admin and
  the store.

A call is a set of legs, each owned by the line it serves; every path that
ends a call deletes each connection the switch created (see L{Media}).
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter, deque
from typing import Any, Callable, Iterable, Mapping, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..config import Settings
from ..errors import CallControlError, RemoteProtocolError
from ..interfaces import (
    ICallObserver,
    ICommandHandler,
    IDialPlan,
    IGatewayProfile,
    IPeerListener,
    IStore,
    ITransactionSender,
)
from ..mgcp import (
    Command,
    ConnectionMode,
    NotifiedEntity,
    ParamCode,
    Parameters,
    Response,
    ReturnCode,
    Verb,
    trusted_response,
)
from ..timeouts import TimeoutQueue
from ..transaction import Address, PeerState, Reply, Tally, TransactionLayer
from . import commands as cmd
from .calls import Call, CallAction, CallInput, CallMachine, Leg, LegState, Tone
from .events import EventBus, Views
from .lines import Action, Line, LineInput, LineMachine
from .media import ILegListener, Media
from .operator import Operator
from .overload import OverloadGuard, OverloadState
from .model import (
    CallEnded,
    CallRecord,
    CallStarted,
    CallState,
    CallStateChanged,
    EndpointStateChanged,
    GatewayState,
    GatewayStateChanged,
    Hook,
    LineState,
    ReleaseCause,
)
from .gateways import Gateway
from .registry import Registry
from .requests import Requests
from .resync import Resync
from .routing import Router
from .services import HOLD_DIALLING, Services
from .store import MemoryStore, checkpoint, gateway_record
from .trunks import Trunks
from .wire import Wire

__all__ = ["CallControl"]

P = ParamCode
_HOOK_EVENTS = frozenset(("L/hd", "L/hu", "L/hf"))
_OK = ReturnCode.OK
_IDLE = LineState.IDLE
_OBSERVED = ParamCode.OBSERVED_EVENTS
_NO_ACTION = Action.NONE
_NO_PARAMS = Parameters()
#: A cause's text by member (C{.value} is a Python-level descriptor call).
_CAUSE_TEXT = {cause: cause.value for cause in ReleaseCause}
#: A new call's first NTFY, whole, as gateways send it: the off-hook, with
#: the digits where the idle request embeds dial tone (L{CallControl._first_notify}).
_FIRST_NTFY = re.compile(
    rb"NTFY [0-9]{1,9} [^ \r\n]+ MGCP 1\.0\r\nX: [0-9A-Fa-f]{1,32}\r\nO: L/hd((?:, ?D/[0-9#*T]{1,32})*)\r\n\Z"
)


@implementer(ICommandHandler, IPeerListener, ILegListener)
class CallControl:
    """
    The call agent's brain.  Construct with the reactor (the only clock),
    the settings, a dial plan, the gateway profiles and the transaction
    sender; L{start} begins keepalives.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        settings: Settings,
        dial_plan: IDialPlan,
        profiles: dict[str, IGatewayProfile],
        sender: ITransactionSender,
        observers: Iterable[ICallObserver] = (),
        random_source: Optional[random.Random] = None,
        store: Optional[IStore] = None,
        counters: Optional[Counter[str]] = None,
        outcomes: Optional[Counter[str]] = None,
        trunks: Mapping[str, Any] = {},
    ) -> None:
        """
        @param counters: where to count (and C{outcomes}: ended calls by
            cause); given when a new L{CallControl} carries on an earlier
            one's counts (a cluster's agent, for each term it is active).
        """
        self.clock = clock
        self.settings = settings
        switch = settings.switch
        self.dial_plan = IDialPlan(dial_plan)
        rng = random_source or random.Random()
        self._call_prefix = format(rng.getrandbits(32), "08x")
        self._call_ids = itertools.count(1)
        self.counters: Counter[str] = counters if counters is not None else Tally()
        self.outcomes: Counter[str] = outcomes if outcomes is not None else Tally()
        self.store: IStore = store if store is not None else MemoryStore(switch.ended_calls_kept)
        self.events = EventBus(clock, observers, self.counters, self._watching)
        self.views = Views()
        self.lines = LineMachine(rng.randrange(1, 1 << 24))
        self.machine = CallMachine()
        self.resync = Resync(self)
        self.registry = Registry(
            clock, settings, self.dial_plan, profiles, sender, self.resync, self.counters, self._gateway_changed
        )
        self.wire = Wire(clock, sender, self.counters)
        self.media = Media(
            self.wire, self.lines, self.machine, self.registry, self,
            cmd.DIALLING_ON_OFF_HOOK if switch.embedded_dial_tone else cmd.OFF_HOOK_EVENTS,
            self.counters, clock,
        )
        self._ladder = switch.ladder
        self.started = False
        # The layer, when it takes fast paths (L{_first_notify}); the NTFY it admitted there, by txid.
        self._layer = sender if isinstance(sender, TransactionLayer) else None
        self._admitted: Optional[int] = None
        self._running = False  # started and not stopped: the fast path may be offered
        self._calls: dict[str, Call] = {}
        self._ended: deque[Call] = deque(maxlen=max(switch.ended_calls_kept, 1))
        # The records of the calls L{refused} (their L{Call}s made when the admin asks: L{_shed_call}).
        self._refused: deque[tuple[CallRecord, Line]] = deque(maxlen=max(switch.ended_calls_kept, 1))
        self._no_answer_timeouts = TimeoutQueue(clock, switch.no_answer_timeout, self._no_answer)
        self.services = Services(self, settings.services)
        self.requests = Requests(self.wire, self.lines, self.feed, self.media.idle_events, self.counters,
                                 self.services.flash_digit_map, self.registry.recheck)
        self.operator = Operator(self)
        self.overload = OverloadGuard(clock, settings.overload, rng, changed=self._overload_changed,
                                      background=self.registry.resynchronising)
        self.trunks = Trunks(self, trunks)
        self.router = Router(self, settings)
        self.media.trunks = self.trunks
        self._actions: dict[Action, Callable[[Line], None]] = {
            Action.DIAL_TONE: self.requests.dial_tone,
            Action.ARM_IDLE: self.requests.arm_idle,
            Action.BUSY_TONE: self.requests.busy_tone,
            Action.REORDER_TONE: self.requests.reorder_tone,
            Action.ANSWER: self._answer,
            Action.CALL_FAR_END: self.router.call_far_end,
            Action.RELEASE: self._release_line,
            Action.FLASH: self.services.flash,
            Action.RECALL_DIAL_TONE: self.requests.recall_dial_tone,
            Action.WATCH_CALL: self.requests.watch_call,
            Action.RING: self._ring_again,
            Action.ANSWER_RECALL: self.services.answer_recall,
            Action.STUTTER_DIAL_TONE: self.requests.stutter_dial_tone,
            Action.CONFIRM_TONE: self.requests.confirm,
        }

    def start(self) -> Deferred[None]:
        """
        Take back the calls that were talking when the agent last stopped
        (the store's checkpoints), then start the registry: keepalives, and
        the audits that find which of those calls are still up.
        """
        self.started = True
        self.overload.start()
        self._running = True
        self._overload_changed(self.overload.state)
        d = self.store.load().addCallback(self.resync.recover)
        d.addErrback(lambda f: self.log.failure("cannot load the store; starting afresh", f))
        return d.addCallback(lambda _: self.registry.start())

    def begin_term(self, prefix: str, notified_entity: NotifiedEntity) -> None:
        """
        Before L{start}, for an agent of a cluster that became active: its
        CallIds and X:s begin with the term's C{prefix} (none can be taken
        for an earlier term's), and every command says C{N:} so that the
        gateways send to this agent from now on.
        """
        self._call_prefix = prefix
        self.lines.request_prefix = prefix
        self.wire.notified_entity = notified_entity

    def track(self, call: Call) -> Call:
        """C{call} is one of the calls in progress (a new one, or one taken back from the store)."""
        if self._ladder:
            call.ladder = []
        self._calls[call.call_id] = call
        return call

    def retire(self) -> None:
        """
        The end of a cluster agent's term as active: everything stops, and
        what may still run (answers to commands, abandoned) writes nothing
        more to the shared store, whose state is the next active's now.
        """
        self.stop()
        self.store = MemoryStore(1)
        self.wire.notified_entity = None

    def stop(self) -> None:
        self._running = False
        self._overload_changed(OverloadState.NORMAL)
        self.overload.stop()
        self.registry.stop()
        self.services.stop()
        self._no_answer_timeouts.stop()
        for call in self._calls.values():
            call.no_answer = None
        self.events.stop()

    # -- what gateways send ------------------------------------------------

    def command_received(self, command: Command, source: tuple[str, int]) -> Any:
        gateway = self.registry.sender_of(command, source)
        verb = command.verb
        if verb is Verb.NTFY:
            return self._notify(gateway, command)
        if verb is Verb.RSIP:
            return self.registry.restart_in_progress(gateway, command)
        if verb is Verb.DLCX:
            return self._gateway_deleted(gateway, command)
        if verb is Verb.MESG:
            return Response(_OK, command.transaction_id, "OK")
        raise RemoteProtocolError(504, f"{verb} is not accepted by a call agent")

    def peer_state_changed(self, address: tuple[str, int], state: PeerState) -> None:
        self.registry.peer_state_changed(address, state)

    def _overload_changed(self, state: OverloadState) -> None:
        """
        The layer offers NTFYs to L{_first_notify} only while the guard is
        overloaded (and the agent started): otherwise every new call is
        admitted, and reading each NTFY's bytes first would cost admitted
        calls 5 % more.
        """
        if self._layer is not None:
            shedding = self._running and state is OverloadState.OVERLOADED
            self._layer.set_fast_path(Verb.NTFY, self._first_notify if shedding else None)

    def _first_notify(self, data: bytes, txid: int, endpoint: str, source: Address) -> Optional[Reply]:
        """
        The layer's fast path for NTFY (L{TransactionLayer.set_fast_path}):
        a new call's first NTFY, read from its bytes, that the overload
        guard sheds is answered here, without decoding it (issue 15 §2: in
        a surge thousands a second are shed, and decoding the NTFY cost
        more than what shedding it does).  Anything else (another shape of
        NTFY, a line not idle, a gateway not at its own address, calls
        watched, an agent of a cluster) goes the usual way, and so does a
        call the guard admits: L{_notify} takes it as admitted, without a
        second draw.
        """
        self._admitted = None
        if self.events.watched or self.wire.notified_entity is not None:
            return None  # calls watched, or an agent of a cluster (a standby answers otherwise)
        match = _FIRST_NTFY.match(data)
        if match is None:
            return None
        local, _, domain = endpoint.rpartition("@")
        gateway = self.registry.gateways.get(domain.lower())
        if gateway is None or source != gateway.address:
            return None
        known = gateway.endpoints.get(local.lower())
        if known is None or known.line.state is not _IDLE:
            return None
        if self.overload.admit():
            self._admitted = txid
            return None
        gateway.last_seen = self.clock.seconds()  # as registry.sender_of
        gateway.counters["commands_received"] += 1
        dialled = match.group(1).replace(b" ", b"").replace(b",D/", b"").decode()
        return self.router.shed(gateway, known.line, txid, dialled)

    def _notify(self, gateway: Gateway, command: Command) -> Any:
        line = self.registry.endpoint_of(gateway, command.endpoint).line
        observed = command.params.get(_OBSERVED, ())
        if line.state is _IDLE and observed and observed[0].name == "L/hd":
            if self._admitted == command.transaction_id:
                self._admitted = None  # admitted by _first_notify
            elif not self.overload.admit():
                # A new call's first NTFY, and the guard sheds it: answered
                # before the line or call machines do anything (issue 15 §2).
                dialled = "".join([e.name[2:] for e in observed if e.name[:2] == "D/"])
                return self.router.shed(gateway, line, command.transaction_id, dialled)
        response = trusted_response(_OK, command.transaction_id, "OK", _NO_PARAMS)
        if self._ladder:
            leg = line.leg
            ladder = leg.call.ladder if leg is not None else None
            if ladder is not None:
                now = self.clock.seconds()
                ladder.append((now, "in", gateway, command))
                ladder.append((now, "out", gateway, response))
        digits = []
        hooks = []
        for event in observed:
            name = event.name
            if name in _HOOK_EVENTS:
                hooks.append(name)
            elif name.startswith("D/"):
                digits.append(name[2:])
        wire = self.wire
        wire.collect(gateway)
        try:
            # The events in the order observed; the digit string is what the map matched.
            for name in hooks:
                if name == "L/hd":
                    self._off_hook(line, command.request_id)
                    if digits and line.state in (LineState.DIAL_TONE, LineState.COLLECTING):
                        self._digits(line, "".join(digits))
                        digits = []
                elif name == "L/hu":
                    self.lines.noted(line, name)
                    self.lines.hook_seen(line, Hook.ON)
                    if line.legs and line.state in HOLD_DIALLING:
                        self.feed(line, LineInput.RECALL)  # a call on hold: ring back for it
                    else:
                        self.feed(line, LineInput.ON_HOOK)
                    digits = []
                else:  # L/hf
                    self.lines.noted(line, name)
                    self.feed(line, LineInput.FLASH)
            if digits:
                self._digits(line, "".join(digits))
        finally:
            riders = wire.collected()
        # The commands this NTFY led to ride after its response, in one
        # datagram (RFC 3435 §4.4.1: NTFY response + RQNT).
        return Reply(response, after=riders) if riders else response

    def _off_hook(self, line: Line, request_id: Optional[str]) -> None:
        self.lines.noted(line, "L/hd")
        self.lines.hook_seen(line, Hook.OFF)
        leg = line.leg
        if leg is not None and leg.originating and leg.call.originated and line.state is LineState.RINGING:
            self.feed(line, LineInput.PICKED_UP)
        elif line.dialling_armed and request_id == line.request_id:
            self.feed(line, LineInput.OFF_HOOK_DIALLING)
        else:
            self.feed(line, LineInput.OFF_HOOK)

    def _digits(self, line: Line, digits: str) -> None:
        self.lines.noted(line, "D/" + digits)
        if self.lines.feed(line, LineInput.DIGITS) is Action.ROUTE:
            self.router.route(line, digits)

    def feed(self, line: Line, event: LineInput) -> None:
        action = self.lines.feed(line, event)
        if action is not _NO_ACTION:
            self._actions[action](line)

    def _gateway_deleted(self, gateway: Gateway, command: Command) -> Response:
        """A gateway deleted a connection itself (line failure, §2.3.8)."""
        endpoint = self.registry.endpoint_of(gateway, command.endpoint)
        connection_id = command.connection_id
        self.counters["gateway_dlcx"] += 1
        if connection_id is not None:
            endpoint.connections.pop(connection_id, None)
        for leg in list(endpoint.line.legs):
            if connection_id is None or leg.connection_id == connection_id:
                stats = command.params.get(P.CONNECTION_PARAMETERS)
                if stats is not None and hasattr(stats, "values"):
                    leg.stats = dict(stats.values)
                self.media.lost(leg)
                self.release(leg.call, ReleaseCause.GATEWAY_ERROR)
                self.leg_gone(leg, False)
        return Response(_OK, command.transaction_id, "OK")

    # -- line actions --------------------------------------------------------

    def _answer(self, line: Line) -> None:
        """The callee went off hook: watch its hang-up, and talk once its connection exists."""
        leg = line.leg
        if leg is None:
            return
        call = leg.call
        self.requests.watch_hang_up(line, call)
        if leg.state is LegState.OPEN or leg.state is LegState.MODIFYING:
            self._call_input(call, CallInput.ANSWER)
            self.media.reconcile_call(call)
        # else: answered before its CRCX answer arrived: connection_open connects.

    def _release_line(self, line: Line) -> None:
        """The line hung up (or its call is being released): release its call."""
        if line.hook is Hook.ON and self.services.hang_up(line):
            return  # it held several calls: the services decided
        leg = line.leg
        if leg is None:
            self._line_free(line, None, False)  # nothing to release (a late event)
            return
        call = leg.call
        if call.state is CallState.CONNECTED:
            cause = ReleaseCause.NORMAL
        elif leg.originating:
            cause = ReleaseCause.ABANDONED
        else:
            cause = ReleaseCause.NO_ANSWER
        self.release(call, cause)

    def _line_free(self, line: Line, leg: Optional[Leg], rearmed: bool) -> None:
        """
        A line whose last call is gone: it follows the request its DLCX
        carried (and acts on a hook change since), or is armed now: idle,
        a tone if it is off hook, dial tone for a callee that went off hook
        before it could be rung (it is placing a call of its own).
        """
        if line.state is not LineState.RELEASING:
            return  # lost with its gateway (unknown, out of service): the audit arms it
        feed = self.feed
        if rearmed and leg is not None and leg.rearm is not None:
            events, signals = leg.rearm
            if events is self.media.idle_events:
                feed(line, LineInput.RELEASED_ON_HOOK)
                if line.hook is Hook.OFF:
                    feed(line, LineInput.OFF_HOOK)
            else:
                feed(line, LineInput.RELEASED_REORDER if signals is cmd.REORDER_TONE
                     else LineInput.RELEASED_OFF_HOOK)
                if line.hook is Hook.ON:
                    feed(line, LineInput.ON_HOOK)
            return
        if line.endpoint.gateway.state in (GatewayState.DOWN, GatewayState.UNKNOWN, GatewayState.REGISTERING):
            feed(line, LineInput.RESET)  # the audit will arm it
        elif line.hook is not Hook.OFF:
            feed(line, LineInput.CLEARED_ON_HOOK)
        elif leg is not None and not leg.originating and leg.call.answered is None:
            feed(line, LineInput.CLEARED_DIALLING)
        else:
            cause = leg.call.cause if leg is not None else None
            signals = self.media.rearm_request(line, cause)[1]
            feed(line, LineInput.CLEARED_REORDER if signals is cmd.REORDER_TONE else LineInput.CLEARED_OFF_HOOK)

    # -- calls the services change -------------------------------------------

    def answer(self, leg: Leg) -> None:
        """A waiting (or recalled) call is answered; one still being created is connected when it is."""
        if leg.state is LegState.OPEN or leg.state is LegState.MODIFYING:
            self._call_input(leg.call, CallInput.ANSWER)

    def retarget(self, call: Call, old: Leg, target: Line) -> None:
        """The call rings C{target} instead of C{old}'s line (forward on no answer)."""
        self.machine.mark(old, dropped=True)
        self.feed(old.line, LineInput.DROPPED)
        self.router.set_up(call, target)

    def join(self, a: Leg, b: Leg, template: Call, line: Line) -> Call:
        """
        A transfer: C{a} and C{b} (the far parties of C{line}'s two calls)
        in a new call, ringing still or talking as C{template} is.
        """
        call = self.new_call(template.dialled)
        call.transferred_by = str(line.endpoint.name)
        self.machine.move(a, call, True)
        self.machine.move(b, call, False)
        self._call_input(call, CallInput.ALERT)
        if template.state is CallState.CONNECTED:
            self._call_input(call, CallInput.ANSWER)
        elif a.line is not None and a.line.state is LineState.CONNECTED:
            self.feed(a.line, LineInput.TRANSFERRED)  # it hears ringback now
        self.media.reconcile_call(call)
        return call

    def _ring_again(self, line: Line) -> None:
        self.requests.ring(line)
        self.services.ringing_again(line)

    def new_call(self, dialled: str) -> Call:
        call = self.track(Call(f"{self._call_prefix}{next(self._call_ids):x}", self.clock.seconds(), dialled))
        self.counters["calls_started"] += 1
        if self.events.watched:
            self.events.publish(CallStarted(self.views.call(call)))
        return call

    def refused(self, line: Line, dialled: str, cause: ReleaseCause) -> None:
        """
        The record of a call refused at its first NTFY while nobody watches
        calls (no observer, no subscriber): written to the store as is,
        without a L{Call} through the call machine (the overload guard's
        shed path, thousands a second in a surge), and kept for the admin's
        recent calls, which make its L{Call} when asked (L{_shed_call}).
        With watchers, the router makes it a call, whose start and end they
        see.
        """
        now = self.clock.seconds()
        endpoint = line.endpoint
        name = str(endpoint.name)
        counters = self.counters
        counters["calls_started"] += 1
        counters["calls_ended"] += 1
        self.outcomes[_CAUSE_TEXT[cause]] += 1
        record = CallRecord(
            f"{self._call_prefix}{next(self._call_ids):x}", endpoint.number or name, dialled or None, name,
            None, None, None, None, now, None, now, cause,
        )
        self.store.call_ended(record)
        self._refused.append((record, line))

    def _shed_call(self, record: CallRecord, line: Line) -> Call:
        """The ended L{Call} of a record L{refused} wrote, as L{Router.failed_attempt} would have left it."""
        return self.machine.refused(record.call_id, line, record.callee or "", record.start, record.end, record.cause)

    # -- what legs report (ILegListener) -------------------------------------

    def connection_open(self, leg: Leg) -> None:
        if not leg.originating:
            call = leg.call
            self._call_input(call, CallInput.ALERT)
            caller = leg.peer
            if (caller is not None and caller.tone is Tone.RINGBACK and caller.line is not None
                    and caller.line.state is LineState.ROUTING):
                self.feed(caller.line, LineInput.ALERTING)  # its CRCX already plays ringback (calls.wanted)
            line = leg.line
            if line is not None and line.state is LineState.CONNECTED and not leg.waiting and line.active is leg:
                # The callee answered while its CRCX was answered: no ringback.
                self._call_input(call, CallInput.ANSWER)

    def connection_applied(self, leg: Leg) -> None:
        if not leg.originating:
            return
        line = leg.line
        if leg.mode is ConnectionMode.SENDRECV and leg.call.state is CallState.CONNECTED:
            if line.state is LineState.ROUTING:
                self.feed(line, LineInput.ALERTING)
            self.feed(line, LineInput.ANSWERED)
        else:
            self.feed(line, LineInput.ALERTING)

    def release(self, call: Call, cause: ReleaseCause, keep: Optional[Line] = None) -> None:
        """
        End a call: delete every connection it holds; the lines talking on
        it follow (but C{keep}, a line whose services end the call and go
        on with another).
        """
        if not call.live:
            return
        call.cause = cause
        self._call_input(call, CallInput.RELEASE)
        for leg in list(call.legs):
            line = leg.line
            if line is keep or line is None:
                continue
            if leg in line.legs and not leg.conference and (len(line.legs) == 1 or line.active is leg):
                self.feed(line, LineInput.FAR_END_RELEASED)
        if call.forward_timer is not None:
            call.forward_timer.cancel()
            call.forward_timer = None
        self.media.reconcile_call(call)

    def leg_gone(self, leg: Leg, rearmed: bool) -> None:
        line = leg.line
        if line is not None and leg in line.legs:
            if self.lines.remove_leg(line, leg):
                if not self.services.line_empty(line):
                    self._line_free(line, leg, rearmed)
            else:
                self.services.leg_left(line, leg)
        call = leg.call
        if leg.dropped:
            call.legs.remove(leg)  # the call goes on with the leg that replaced it
            call.former.append(leg)
        for other in call.legs:
            if other.state is not LegState.GONE:
                return
        self._call_input(call, CallInput.LEGS_GONE)

    # -- the call machine's actions ------------------------------------------

    def _call_input(self, call: Call, event: CallInput) -> None:
        previous = call.state
        action = self.machine.feed(call, event)
        if action is CallAction.NONE:
            return
        if action is CallAction.ALERTING:
            self.await_answer(call)
        elif action is CallAction.CONNECTED:
            self.cancel_no_answer(call)
            call.answered = self.clock.seconds()
            self.store.call_answered(checkpoint(call))
        elif action is CallAction.RELEASE:
            self.cancel_no_answer(call)
            if call.originate_deferred is not None:
                d, call.originate_deferred = call.originate_deferred, None
                d.errback(CallControlError(f"call {call.call_id} ended: {call.cause.value}"))  # type: ignore[union-attr]
        elif action is CallAction.END:
            self._end(call)
            return
        if self.events.watched:
            self.events.publish(CallStateChanged(self.views.call(call), previous))

    def await_answer(self, call: Call) -> None:
        """Release C{call} with NO_ANSWER unless it is answered within the no-answer time."""
        call.no_answer = self._no_answer_timeouts.add(call)

    def cancel_no_answer(self, call: Call) -> None:
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None

    def _no_answer(self, call: Call) -> None:
        call.no_answer = None
        if call.state is CallState.ALERTING or (call.originated and call.state is CallState.SETUP):
            self.release(call, ReleaseCause.NO_ANSWER)

    def _end(self, call: Call) -> None:
        call.ended = self.clock.seconds()
        self._calls.pop(call.call_id, None)
        ended = self._ended
        if len(ended) == ended.maxlen:
            # The call about to drop off the list of ended calls lets go of
            # its legs, and they of each other: each leg points back at its
            # call and at its peer, and those cycles kept every finished call
            # for the garbage collector's passes.
            gone = ended[0]
            for leg in gone.legs + gone.former:
                leg.peer = None
            gone.legs = []
            gone.former = []
        ended.append(call)
        self.outcomes[_CAUSE_TEXT[call.cause or ReleaseCause.NORMAL]] += 1
        self.counters["calls_ended"] += 1
        record = self.views.record(call)
        self.store.call_ended(record)
        if self.events.watched:
            self.events.publish(CallEnded(self.views.call(call), record))
        deferreds, call.ended_deferreds = call.ended_deferreds, []
        for d in deferreds:
            d.callback(None)

    # -- observers -----------------------------------------------------------

    def _watching(self, subscribers: bool) -> None:
        """
        Endpoint changes go to live subscribers (the admin's event stream)
        only, and only while there are some: building a view per transition
        would cost ten per call.
        """
        self.lines.changed = self._line_changed if subscribers else None

    def _line_changed(self, line: Line, previous: LineState) -> None:
        self.events.publish(EndpointStateChanged(self.views.endpoint(line.endpoint), previous))

    def _gateway_changed(self, gateway: Gateway, previous: GatewayState) -> None:
        self.store.gateway_changed(gateway_record(gateway))
        if self.events.watched:
            self.events.publish(GatewayStateChanged(self.views.gateway(gateway), previous))

    # -- lookups (the service's views, tests) --------------------------------

    def line(self, name: str) -> Optional[Line]:
        endpoint = self.registry.endpoint(name)
        return endpoint.line if endpoint is not None else None

    def gateway(self, name: str) -> Optional[Gateway]:
        return self.registry.gateway(name)

    def calls(self) -> list[Call]:
        """The calls in progress."""
        return list(self._calls.values())

    def in_progress(self, call_id: str) -> Optional[Call]:
        return self._calls.get(call_id)

    def call(self, call_id: str) -> Optional[Call]:
        """A call in progress or recently ended."""
        call = self._calls.get(call_id)
        if call is None:
            for ended in self._ended:
                if ended.call_id == call_id:
                    return ended
            for record, line in self._refused:
                if record.call_id == call_id:
                    return self._shed_call(record, line)
        return call

    def recent_calls(self) -> list[Call]:
        """The calls in progress, then the recently ended ones (those refused too), in the order they ended."""
        ended = list(self._ended)
        if self._refused:
            ended += [self._shed_call(record, line) for record, line in self._refused]
            ended.sort(key=_ended_at)  # stable: the order they ended in, at a tie
            kept = self._ended.maxlen or len(ended)
            del ended[:max(len(ended) - kept, 0)]  # as many as the list of ended calls keeps
        return list(self._calls.values()) + ended


def _ended_at(call: Call) -> float:
    return call.ended or 0.0
