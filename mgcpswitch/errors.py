# -*- test-case-name: tests.test_transaction -*-
"""
The errors of mgcpswitch, in one place.

Every error carries what its catcher needs to act: a protocol error the
MGCP return code to answer with, a timeout the command and peer, a failed
transaction the final response.  Errbacks trap these types; nothing here
is caught broadly.
"""

from __future__ import annotations

from typing import Any

from .mgcp import LocalProtocolError, MGCPError, ProtocolError, RemoteProtocolError
from .mgcp import Command, Response

__all__ = [
    "MGCPError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "TransactionTimeout",
    "TransactionAborted",
    "TransactionFailed",
    "CallControlError",
    "PluginNotFound",
    "ConfigError",
]


class TransactionTimeout(MGCPError, TimeoutError):
    """
    No final response arrived: the command was retransmitted as RFC 3435
    §4.3 allows and the peer stayed silent.
    """

    def __init__(self, command: Command, address: Any, transmissions: int) -> None:
        super().__init__(
            f"{command.verb} {command.transaction_id} to {address}: "
            f"no response after {transmissions} transmissions"
        )
        self.command = command
        self.address = address
        self.transmissions = transmissions


class TransactionAborted(MGCPError):
    """The transaction layer stopped (its transport closed) before an answer."""


class TransactionFailed(MGCPError):
    """
    A command got a final response that is not a success; for callers that
    turn error codes into failures (the transaction layer itself does not).
    """

    def __init__(self, response: Response, command: Command | None = None) -> None:
        verb = f"{command.verb} " if command is not None else ""
        super().__init__(f"{verb}failed: {response.code} {response.comment}".strip())
        self.response = response
        self.command = command

    @property
    def code(self) -> int:
        return self.response.code


class CallControlError(MGCPError):
    """Call control was asked for something it cannot do (unknown call, busy line)."""


class StandbyError(CallControlError):
    """
    A change asked of a call agent that stands by in a cluster: changes are
    made at the active (C{active}: its name, when known), whose state they
    change; a standby's admin is read-only.
    """

    def __init__(self, active: str | None) -> None:
        where = f"the active agent ({active})" if active else "the active agent (none is known now)"
        super().__init__(f"this call agent stands by: make changes at {where}")
        self.active = active


class PluginNotFound(MGCPError):
    """The configuration names a plugin that discovery did not find."""


class ConfigError(MGCPError):
    """
    A configuration value is missing or wrong.  C{path} names the section
    and key (C{"gateway:rgw1", "address"}) so the message points at the line
    to fix.
    """

    def __init__(self, path: tuple[str, ...] | str, message: str) -> None:
        if isinstance(path, str):
            path = (path,)
        where = "[" + path[0] + "]" + ("" if len(path) < 2 else " " + ".".join(path[1:]))
        super().__init__(f"{where}: {message}")
        self.path = path
        self.message = message
