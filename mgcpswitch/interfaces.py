# -*- test-case-name: tests.test_plugins,tests.test_sip_trunk -*-
"""
The seams of mgcpswitch as small zope interfaces.

Internal seams let each layer be tested against a fake: the transaction
layer hands commands to an L{ICommandHandler} and reports peer health to an
L{IPeerListener}; roles send through an L{ITransactionSender} (those three
live in L{mgcpswitch.transaction}, beside the types they speak of, and are
named here too).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from .agent.model import (
    CallCheckpoint,
    CallRecord,
    CallView,
    ClusterView,
    EndpointView,
    Event,
    GatewayRecord,
    GatewayView,
    LineRecord,
    RouteDecision,
    RouteRequest,
    StoredState,
)
from .config import PluginContext, TrunkSettings
from .mgcp import DigitMap, SessionDescription
from .transaction import ICommandHandler, IPeerListener, ITransactionSender
from .trunk import TrunkView

__all__ = [
    "ICommandHandler",
    "ITransactionSender",
    "IPeerListener",
    "ICallControl",
    "IDialPlan",
    "ICallObserver",
    "IGatewayProfile",
    "INamed",
    "IPluginFactory",
    "IDialPlanFactory",
    "ICallObserverFactory",
    "IStore",
    "IMessageWaiting",
    "IMessageWaitingSource",
    "ITrunk",
    "ITrunkFactory",
    "ITrunkCall",
    "IOutgoingCall",
    "IOutgoingCallListener",
    "IIncomingCall",
    "IIncomingCallListener",
]


# ---------------------------------------------------------------------------
# Call control, as the faces (web admin, mgcpctl) see it.


class ICallControl(Interface):
    """
    What the operator's faces may read and ask of call control.  Every
    value returned is a frozen view from L{mgcpswitch.agent.model} (each
    has C{to_json()}); actions return Deferreds.
    """

    def list_gateways() -> list[GatewayView]:
        """All gateways: a list of L{GatewayView}."""

    def get_gateway(name: str) -> GatewayView | None:
        """One L{GatewayView} by domain name, or None."""

    def list_endpoints(gateway: str | None = None) -> list[EndpointView]:
        """Endpoints (of one gateway, or all): a list of L{EndpointView}."""

    def get_endpoint(name: str) -> EndpointView | None:
        """One L{EndpointView} by full endpoint name, or None."""

    def list_calls() -> list[CallView]:
        """Calls in progress and recently ended: a list of L{CallView}."""

    def get_call(call_id: str) -> CallView | None:
        """One L{CallView} (with its MGCP ladder), or None."""

    def originate(a: str, b: str) -> Deferred[str]:
        """
        Ring endpoint C{a}; when it answers, ring C{b} and connect them.
        @return: a Deferred firing with the new call's id once C{a} rings,
            or failing with L{CallControlError} (unknown or busy endpoint).
        """

    def hangup(call_id: str) -> Deferred[None]:
        """Release a call; Deferred fires when its connections are deleted."""

    def audit_endpoint(name: str) -> Deferred[EndpointView]:
        """AUEP the endpoint; Deferred fires with an L{EndpointView}."""

    def set_gateway_in_service(name: str, in_service: bool) -> Deferred[GatewayView]:
        """Take a gateway out of service (no new calls) or back in."""

    def set_line_services(name: str, changes: dict[str, Any]) -> Deferred[EndpointView]:
        """
        Change a line's services (by endpoint name or directory number):
        C{changes} maps names of L{mgcpswitch.config.LineServices} fields
        (forward_always, dnd, message_waiting, ...) to their new values.
        @return: a Deferred firing with the L{EndpointView}, or failing with
            L{CallControlError} (unknown line, unknown field, bad value).
        """

    def transaction_stats() -> dict[str, Any]:
        """The transaction layer's snapshot (a JSON-able dict)."""

    def cluster() -> ClusterView | None:
        """
        The agent's L{mgcpswitch.agent.model.ClusterView} when it is one of a
        cluster, else None.  A standby's admin is read-only: it shows what
        it sees, and refuses changes (L{CallControlError} naming the active).
        """

    def call_outcomes() -> dict[str, int]:
        """Counts of ended calls per outcome (JSON-able dict)."""

    def list_trunks() -> list[TrunkView]:
        """
        Every configured trunk, by name: a list of L{mgcpswitch.trunk.TrunkView}
        (the trunk's own state, channels and counters) whose C{calls} are
        the calls in progress with a leg on it, as call control sees them.
        """

    def get_trunk(name: str) -> TrunkView | None:
        """One trunk's L{mgcpswitch.trunk.TrunkView} by name (any case), or None."""

    def subscribe(observer: Callable[[Event], None]) -> Callable[[], None]:
        """
        Call C{observer(event)} with every later L{mgcpswitch.agent.model}
        event (after the state change, on a later turn); returns a callable
        that unsubscribes.
        """


# ---------------------------------------------------------------------------
# Plugin interfaces (discovered with twisted.plugin.getPlugins in
# mgcpswitch.plugins, enabled by name in the configuration).


class IDialPlan(Interface):
    """Routes dialled numbers and gives each line its digit map."""

    name = Attribute("the name the configuration enables it by")

    def digit_map(endpoint: str) -> DigitMap:
        """The L{mgcpswitch.mgcp.DigitMap} to push to C{endpoint} (a name)."""

    def route(request: RouteRequest) -> RouteDecision | Deferred[RouteDecision]:
        """
        Route a L{mgcpswitch.agent.model.RouteRequest}: return a
        L{RouteDecision} (or a Deferred of one).
        """


class ICallObserver(Interface):
    """Told of call and gateway events after they happen."""

    name = Attribute("the name the configuration enables it by")

    def call_event(event: Event) -> Deferred[None] | None:
        """
        C{event} is a frozen event of L{mgcpswitch.agent.model}.  Called on
        a later reactor turn; an exception is logged and contained.  May
        return a Deferred (its failure is logged too).
        """


class INamed(Interface):
    """What every plugin found in C{mgcpswitch.plugins} has: the name the configuration gives."""

    name = Attribute("the name the configuration enables or selects it by")


class IGatewayProfile(INamed):
    """Per-gateway quirks and capabilities."""

    name = Attribute("the name the configuration selects it by")
    response_acks = Attribute("whether the gateway accepts K: (osmo-mgw does not)")
    supports_notifications = Attribute("whether it sends NTFY/RSIP (a media-only gateway does not)")
    packages = Attribute("supported packages, default first (tuple of str)")
    codecs = Attribute("codecs to offer, in preference order (tuple of str)")
    packetization = Attribute("packetization period in ms to ask for")


class IPluginFactory(INamed):
    """
    What every plugin factory has: its name, the keys of its section, and
    C{build}.  The switch reads the C{[plugin:NAME]} section through C{keys}
    before calling C{build}, so an unknown key or a bad value stops it
    with an error naming the section and key (docs/PLUGINS.md).
    """

    name = Attribute("the name the configuration enables it by")
    keys = Attribute(
        "the keys its [plugin:NAME] section may hold: a mapping of key name to "
        "mgcpswitch.config.Key (reader, default or REQUIRED, doc); {} for none"
    )

    def build(settings: Mapping[str, Any], context: PluginContext) -> object:
        """
        @param settings: the C{[plugin:NAME]} section read through C{keys}:
            a mapping of every declared key to its value (its default when
            the section does not give it).
        @param context: a L{mgcpswitch.plugin.PluginContext} (reactor,
            configuration of gateways, ...).
        @return: the plugin's object (see the interfaces below).
        """


class IDialPlanFactory(IPluginFactory):
    """
    A dial-plan plugin as found in C{mgcpswitch.plugins}: C{build} returns
    the L{IDialPlan}.
    """


class ICallObserverFactory(IPluginFactory):
    """
    An observer plugin: C{build} returns the L{ICallObserver}, which may
    also provide IService to be started and stopped with call control.
    """


class IMessageWaiting(Interface):
    """What call control offers a voicemail system: a line's message-waiting flag."""

    def set_message_waiting(line: str, waiting: bool) -> None:
        """
        Messages wait for C{line} (an endpoint name or a directory number),
        or no longer: its indicator (L/vmwi) is shown or cleared, its next
        dial tone is stutter dial tone.  Raises L{CallControlError} for an
        unknown line.
        """


class IMessageWaitingSource(Interface):
    """
    An observer plugin that also drives message waiting (a voicemail
    system): when call control starts it is handed an L{IMessageWaiting}.
    """

    def attach(message_waiting: IMessageWaiting) -> None:
        """Keep C{message_waiting} (an L{IMessageWaiting}) to set lines' flags with."""


# ---------------------------------------------------------------------------
# The store: what must survive a restart of the call agent or move to
# another one.


class IClusterMember(Interface):
    """
    This agent's membership of a cluster (agents sharing a PostgreSQL
    store; L{mgcpswitch.cluster.service.ClusterService}), as call control
    sees it: told when the agent becomes active and when it stops being
    so, and asked, before anything is sent, whether it may still command
    gateways.
    """

    name = Attribute("The member's name: the notified entity (N:) gateways reach it at.")
    store = Attribute("The cluster's L{IStore}: writes conditional on the term's epoch.")
    call_id_prefix = Attribute("The CallId (and X:) prefix of the current term while active, else None.")
    became_active = Attribute("Set by call control: called with the epoch once the agent is active.")
    lost_leadership = Attribute("Set by call control: called with the reason when the agent stops being active.")

    def holds_lease() -> bool:
        """Whether the agent may command gateways now (its lease runs); checked before every send."""

    def view() -> ClusterView:
        """A L{mgcpswitch.agent.model.ClusterView}: role, epoch, the active's name, lease age, counts."""


class IStore(Interface):
    """
    Where call control records what must outlive it: gateway
    registrations, a checkpoint of each call when it is answered, and each
    call's record (CDR) when it ends.  Writes are queued and written in
    batches (never one per message on the hot path), so each method
    returns at once; L{flush} says when what was queued is durable.
    """

    def gateway_changed(record: GatewayRecord) -> None:
        """A gateway's registration changed (a L{mgcpswitch.agent.model.GatewayRecord})."""

    def call_answered(checkpoint: CallCheckpoint) -> None:
        """A call is talking (a L{mgcpswitch.agent.model.CallCheckpoint}): its legs and connections."""

    def call_ended(record: CallRecord) -> None:
        """A call ended (its L{mgcpswitch.agent.model.CallRecord}); its checkpoint goes."""

    def line_changed(record: LineRecord) -> None:
        """A line's services changed (a L{mgcpswitch.agent.model.LineRecord}): kept over the configuration's."""

    def load() -> Deferred[StoredState]:
        """
        A Deferred firing with the L{mgcpswitch.agent.model.StoredState}:
        the gateways, the calls that were talking and the lines' services,
        for an agent that starts (or takes over) after another stopped.
        """

    def flush() -> Deferred[None]:
        """A Deferred firing when everything queued so far is written."""

    def stats() -> dict[str, Any]:
        """
        A JSON-able dict: C{kind}, and counts such as C{rows_written},
        C{batches_failed}, C{rows_lost} (given up on) and C{waiting}.
        """


# ---------------------------------------------------------------------------
# Trunks: calls to and from other networks (issue 18; SIP is the built-in
# kind, mgcpswitch.sip.trunk).  Call control drives a call through these
# few methods and is told what happens through a listener.  Every
# notification comes after the trunk's own state is updated, so a
# listener may call back into the call (hang it up) at once.


class IOutgoingCallListener(Interface):
    """What call control is told about a call it placed on a trunk."""

    def progress(code: int, sdp: SessionDescription | None) -> None:
        """
        A provisional answer: C{code} 180 (ringing) or 183 (session
        progress); C{sdp} the far end's early media description (a
        L{mgcpswitch.mgcp.SessionDescription}) or None.
        """

    def answered(sdp: SessionDescription) -> None:
        """The far end answered; C{sdp} is its answer to the offer."""

    def failed(code: int, reason: str) -> None:
        """
        The call did not connect: C{code} the final status (486 busy, 404,
        408 no answer or no response, 503 trunk down or full, ...),
        C{reason} text.  Nothing of the call is left on the trunk.
        """

    def ended(reason: str) -> None:
        """The far end hung up an answered call (or it was lost)."""

    def media_changed(sdp: SessionDescription) -> None:
        """The far end moved its media (a re-INVITE): C{sdp} its new description."""


class ITrunkCall(Interface):
    """What both kinds of trunk call offer once answered (phase 2: a trunk call is a leg of a call)."""

    messages = Attribute(
        "The call's signalling, (time, 'in' or 'out', bytes, peer address) in order, while its trunk keeps "
        "them (ITrunk.keep_messages), else None: the admin shows them in the call's ladder."
    )

    def update(sdp: SessionDescription) -> Deferred[SessionDescription]:
        """
        Change the media of the answered call: offer C{sdp} (the line's
        new connection; C{a=sendonly} or C{a=inactive} puts the far end on
        hold) in the call's own signalling (SIP: a re-INVITE).  Never
        raises.
        @return: a Deferred firing with the far end's answer (a
            L{mgcpswitch.mgcp.SessionDescription}, checked as an answer to
            the offer), or failing with L{mgcpswitch.trunk.TrunkCallError}:
            at once before the answer (500) or once the call has ended
            (481, C{ended}); with the far end's status when it refuses
            (the media stay as they were), or with C{ended} set when the
            call is lost with it (no response, 408, 481, an answer that
            is none: the listener is told C{ended} right after).  Updates
            asked while one is under way go out in turn.
        """


class IOutgoingCall(ITrunkCall):
    """A call placed on a trunk (what L{ITrunk.call} returns)."""

    def cancel() -> None:
        """Give up before the answer (CANCEL); no more notifications follow."""

    def hang_up() -> None:
        """End the call (BYE, or CANCEL before the answer); no more notifications follow."""


class IIncomingCallListener(Interface):
    """What call control is told about a call that came in on a trunk."""

    def cancelled() -> None:
        """The caller gave up before the answer."""

    def ended(reason: str) -> None:
        """The caller hung up an answered call (or it was lost: no ACK, no answer in time)."""

    def media_changed(sdp: SessionDescription) -> None:
        """The caller moved its media (a re-INVITE): C{sdp} its new description."""


class IIncomingCall(ITrunkCall):
    """A call from a trunk, handed to the trunk's C{incoming(call)} handler."""

    number = Attribute("the number called, after the trunk's incoming rewriting")
    caller = Attribute("the caller's number (From user), or None")
    offer_sdp = Attribute("the caller's offer (a SessionDescription)")
    listener = Attribute("an IIncomingCallListener: set it when the call is accepted for routing")

    def ringing() -> None:
        """Tell the caller it rings (180)."""

    def answer(sdp: SessionDescription) -> None:
        """Answer with C{sdp} (the line's connection); the trunk makes it an answer to the offer."""

    def reject(code: int) -> None:
        """Refuse the call with a final status (404, 480, 486, 503, ...)."""

    def hang_up() -> None:
        """End the call (BYE once answered, 480 before)."""


class ITrunk(Interface):
    """A trunk: places calls on another network and brings calls from it."""

    name = Attribute("the trunk's name ([trunk:NAME])")
    keep_messages = Attribute("whether its calls keep their messages (set by call control, with its ladders)")

    def call(number: str, offer_sdp: SessionDescription, listener: IOutgoingCallListener,
             caller: str | None = None) -> IOutgoingCall:
        """
        Call C{number} (before the trunk's outgoing rewriting) offering
        C{offer_sdp} (the line's connection); C{listener} provides
        L{IOutgoingCallListener}; C{caller} is the calling number shown.
        @return: an L{IOutgoingCall}.  A trunk that cannot take the call
            (down, every channel busy, no codec in common) says so with
            C{listener.failed} on a later turn.
        """

    def view() -> TrunkView:
        """A frozen L{mgcpswitch.trunk.TrunkView}: state, channels, counters."""


class ITrunkFactory(INamed):
    """
    A kind of trunk, found in C{mgcpswitch.plugins} and chosen by a
    C{[trunk:NAME]} section's C{kind} key.
    """

    name = Attribute("the kind ([trunk:NAME] kind = ...)")

    def build(settings: TrunkSettings, context: PluginContext,
              incoming: Callable[[IIncomingCall], None]) -> ITrunk:
        """
        @param settings: the section read (a L{mgcpswitch.config.TrunkSettings}).
        @param context: a L{mgcpswitch.plugin.PluginContext} (the reactor).
        @param incoming: called with each L{IIncomingCall}.
        @return: the L{ITrunk}; it also provides IService (started and
            stopped with the switch: it binds its port when started).
        """
