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
    "IDialPlanFactory",
    "ICallObserverFactory",
]


class ICommandHandler(Interface):
    """What a role (call agent or gateway) gives the transaction layer."""

    def command_received(command, source):  # type: ignore[no-untyped-def]
        """
        Execute C{command} (a L{mgcpswitch.mgcp.Command}) that arrived from
        C{source} (an address tuple), at most once per transaction.

        @return: a L{mgcpswitch.mgcp.Response}, a
            L{mgcpswitch.transaction.Reply} (a response with the commands
            that share its datagram: copies ahead of it, new transactions
            after it), or a Deferred firing with either.
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
        (RFC 3435 §4.3) or when a command gave up unanswered, REACHABLE
        when a response (provisional or final) comes from C{address}
        again.  Each is about one transaction, not a verdict on the peer
        (see L{mgcpswitch.transaction.PeerState}).  Called after the
        layer's own state is updated.
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


class IDialPlanFactory(Interface):
    """
    A dial-plan plugin as found in C{mgcpswitch.plugins}: builds the
    L{IDialPlan} from its configuration section.
    """

    name = Attribute("the name the configuration enables it by")

    def build(settings, context):  # type: ignore[no-untyped-def]
        """
        @param settings: the C{[plugin:NAME]} section as a mapping of str.
        @param context: a L{mgcpswitch.plugin.PluginContext} (reactor,
            configuration of gateways, ...).
        @return: an L{IDialPlan}.
        """


class ICallObserverFactory(Interface):
    """An observer plugin: builds the L{ICallObserver} from its section."""

    name = Attribute("the name the configuration enables it by")

    def build(settings, context):  # type: ignore[no-untyped-def]
        """@return: an L{ICallObserver}; may also provide IService to be started."""
