# -*- test-case-name: tests.test_codec -*-
"""
The one error family of the protocol core.

Every failure to read or build an MGCP message is a L{ProtocolError} that
carries the return code a receiver must answer with (RFC 3435 §2.4, RFC 3661),
so the layer that catches it never has to guess a code.  As in h11, the
error says whose fault it was: L{RemoteProtocolError} for what a peer sent,
L{LocalProtocolError} for what our own code tried to build.
"""

from __future__ import annotations

__all__ = ["MGCPError", "ProtocolError", "LocalProtocolError", "RemoteProtocolError"]


class MGCPError(Exception):
    """The base of every error mgcpswitch raises on purpose."""


class ProtocolError(MGCPError):
    """
    An MGCP message that breaks the grammar or the rules of RFC 3435.

    Not instantiable itself: raise L{LocalProtocolError} or
    L{RemoteProtocolError} so that the handler knows whose fault it was.

    @ivar code: the MGCP return code the receiver should answer with
        (for instance 510 for a protocol error, 517 for a bad mode).
    @ivar reason: a short human-readable explanation, safe to put in the
        commentary of an error response.
    """

    code: int
    reason: str

    def __init__(self, code: int, reason: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError(
                "raise LocalProtocolError or RemoteProtocolError, "
                "not ProtocolError itself"
            )
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code} {self.reason}"


class LocalProtocolError(ProtocolError):
    """Our own code tried to build or send something MGCP does not allow."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something MGCP does not allow; answer with C{code}."""
