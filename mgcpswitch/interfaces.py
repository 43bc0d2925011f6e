# -*- test-case-name: tests.test_interfaces -*-
"""
The seams of mgcpswitch as small zope interfaces.

Internal seams let each layer be tested against a fake: the transaction
layer hands commands to an L{ICommandHandler} and reports peer health to an
L{IPeerListener}; roles send through an L{ITransactionSender}.
"""

from __future__ import annotations

from zope.interface import Interface

__all__ = [
    "ICommandHandler",
    "ITransactionSender",
    "IPeerListener",
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
