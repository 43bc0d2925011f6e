# -*- test-case-name: tests.test_interfaces -*-
"""
The seams of mgcpswitch as small zope interfaces.

Internal seams let each layer be tested against a fake: the transaction
layer hands commands to an L{ICommandHandler} and reports peer health to an
L{IPeerListener}; roles send through an L{ITransactionSender}.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = [
    "ICommandHandler",
    "ITransactionSender",
    "IPeerListener",
    "ICallControl",
    "IDialPlan",
    "ICallObserver",
    "IGatewayProfile",
    "IPluginFactory",
    "IDialPlanFactory",
    "ICallObserverFactory",
    "IStore",
    "IMessageWaiting",
    "IMessageWaitingSource",
]


class ICommandHandler(Interface):
    """What a role (call agent or gateway) gives the transaction layer."""

    def command_received(command, source):  # type: ignore[no-untyped-def]
        """
        Execute C{command} (a L{mgcpswitch.mgcp.Command}) that arrived from
        C{source} (an address tuple), at most once per transaction.

        @return: a L{mgcpswitch.mgcp.Response}, a
            L{mgcpswitch.transaction.Reply} (a response with commands
            piggybacked ahead of it), or a Deferred firing with either.
            Raising or failing with a L{mgcpswitch.errors.ProtocolError}
            answers with its code; any other exception is a bug, logged
            and answered with 400.
        """


class ITransactionSender(Interface):
    """Sends commands reliably (the transaction layer)."""

    def send_command(command, address):  # type: ignore[no-untyped-def]
        """
        Send C{command} to C{address}; retransmit until a final response.

        @return: a Deferred firing with the final
            L{mgcpswitch.mgcp.Response} (whatever its code), or failing with
            L{mgcpswitch.errors.TransactionTimeout}.
        """

    def allocate_transaction_id():  # type: ignore[no-untyped-def]
        """A fresh transaction id, for commands that must be resent as is."""


class IPeerListener(Interface):
    """Told when a peer stops answering, and when it answers again."""

    def peer_state_changed(address, state):  # type: ignore[no-untyped-def]
        """
        C{state} is a L{mgcpswitch.transaction.PeerState}: SUSPECT when a
        command to C{address} was repeated Max1 times, DISCONNECTED at Max2
        (RFC 3435 §4.3), REACHABLE when a response arrives again.
        Called after the layer's own state is updated.
        """


# ---------------------------------------------------------------------------
# Call control, as the faces (web admin, mgcpctl) see it.


class ICallControl(Interface):
    """
    What the operator's faces may read and ask of call control.  Every
    value returned is a frozen view from L{mgcpswitch.agent.model} (each
    has C{to_json()}); actions return Deferreds.
    """

    def list_gateways():  # type: ignore[no-untyped-def]
        """All gateways: a list of L{GatewayView}."""

    def get_gateway(name):  # type: ignore[no-untyped-def]
        """One L{GatewayView} by domain name, or None."""

    def list_endpoints(gateway=None):  # type: ignore[no-untyped-def]
        """Endpoints (of one gateway, or all): a list of L{EndpointView}."""

    def get_endpoint(name):  # type: ignore[no-untyped-def]
        """One L{EndpointView} by full endpoint name, or None."""

    def list_calls():  # type: ignore[no-untyped-def]
        """Calls in progress and recently ended: a list of L{CallView}."""

    def get_call(call_id):  # type: ignore[no-untyped-def]
        """One L{CallView} (with its MGCP ladder), or None."""

    def originate(a, b):  # type: ignore[no-untyped-def]
        """
        Ring endpoint C{a}; when it answers, ring C{b} and connect them.
        @return: a Deferred firing with the new call's id once C{a} rings,
            or failing with L{CallControlError} (unknown or busy endpoint).
        """

    def hangup(call_id):  # type: ignore[no-untyped-def]
        """Release a call; Deferred fires when its connections are deleted."""

    def audit_endpoint(name):  # type: ignore[no-untyped-def]
        """AUEP the endpoint; Deferred fires with an L{EndpointView}."""

    def set_gateway_in_service(name, in_service):  # type: ignore[no-untyped-def]
        """Take a gateway out of service (no new calls) or back in."""

    def set_line_services(name, changes):  # type: ignore[no-untyped-def]
        """
        Change a line's services (by endpoint name or directory number):
        C{changes} maps names of L{mgcpswitch.config.LineServices} fields
        (forward_always, dnd, message_waiting, ...) to their new values.
        @return: a Deferred firing with the L{EndpointView}, or failing with
            L{CallControlError} (unknown line, unknown field, bad value).
        """

    def transaction_stats():  # type: ignore[no-untyped-def]
        """The transaction layer's snapshot (a JSON-able dict)."""

    def call_outcomes():  # type: ignore[no-untyped-def]
        """Counts of ended calls per outcome (JSON-able dict)."""

    def subscribe(observer):  # type: ignore[no-untyped-def]
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

    def digit_map(endpoint):  # type: ignore[no-untyped-def]
        """The L{mgcpswitch.mgcp.DigitMap} to push to C{endpoint} (a name)."""

    def route(request):  # type: ignore[no-untyped-def]
        """
        Route a L{mgcpswitch.agent.model.RouteRequest}: return a
        L{RouteDecision} (or a Deferred of one).
        """


class ICallObserver(Interface):
    """Told of call and gateway events after they happen."""

    name = Attribute("the name the configuration enables it by")

    def call_event(event):  # type: ignore[no-untyped-def]
        """
        C{event} is a frozen event of L{mgcpswitch.agent.model}.  Called on
        a later reactor turn; an exception is logged and contained.  May
        return a Deferred (its failure is logged too).
        """


class IGatewayProfile(Interface):
    """Per-gateway quirks and capabilities."""

    name = Attribute("the name the configuration selects it by")
    response_acks = Attribute("whether the gateway accepts K: (osmo-mgw does not)")
    supports_notifications = Attribute("whether it sends NTFY/RSIP (a media-only gateway does not)")
    packages = Attribute("supported packages, default first (tuple of str)")
    codecs = Attribute("codecs to offer, in preference order (tuple of str)")
    packetization = Attribute("packetization period in ms to ask for")


class IPluginFactory(Interface):
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

    def build(settings, context):  # type: ignore[no-untyped-def]
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

    def set_message_waiting(line, waiting):  # type: ignore[no-untyped-def]
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

    def attach(message_waiting):  # type: ignore[no-untyped-def]
        """Keep C{message_waiting} (an L{IMessageWaiting}) to set lines' flags with."""


# ---------------------------------------------------------------------------
# The store: what must survive a restart of the call agent or move to
# another one.


class IStore(Interface):
    """
    Where call control records what must outlive it: gateway
    registrations, a checkpoint of each call when it is answered, and each
    call's record (CDR) when it ends.  Writes are queued and written in
    batches (never one per message on the hot path), so each method
    returns at once; L{flush} says when what was queued is durable.
    """

    def gateway_changed(record):  # type: ignore[no-untyped-def]
        """A gateway's registration changed (a L{mgcpswitch.agent.model.GatewayRecord})."""

    def call_answered(checkpoint):  # type: ignore[no-untyped-def]
        """A call is talking (a L{mgcpswitch.agent.model.CallCheckpoint}): its legs and connections."""

    def call_ended(record):  # type: ignore[no-untyped-def]
        """A call ended (its L{mgcpswitch.agent.model.CallRecord}); its checkpoint goes."""

    def line_changed(record):  # type: ignore[no-untyped-def]
        """A line's services changed (a L{mgcpswitch.agent.model.LineRecord}): kept over the configuration's."""

    def load():  # type: ignore[no-untyped-def]
        """
        A Deferred firing with the L{mgcpswitch.agent.model.StoredState}:
        the gateways, the calls that were talking and the lines' services,
        for an agent that starts (or takes over) after another stopped.
        """

    def flush():  # type: ignore[no-untyped-def]
        """A Deferred firing when everything queued so far is written."""

    def stats():  # type: ignore[no-untyped-def]
        """
        A JSON-able dict: C{kind}, and counts such as C{rows_written},
        C{batches_failed}, C{rows_lost} (given up on) and C{waiting}.
        """
