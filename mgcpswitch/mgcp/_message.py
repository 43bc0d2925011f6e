# -*- test-case-name: tests.test_codec -*-
"""
MGCP messages as frozen values: L{Command}, L{Response} and, for what could
not be read, L{MalformedMessage}.

Parameters live in a L{Parameters} mapping keyed by L{ParamCode} (or by the
verbatim name of an extension or unknown parameter), each value typed by
the table in L{_params}.  Convenience properties (C{call_id},
C{connection_id}, ...) read the common ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union, final

from ._codes import CODES, COMMENTS, VERBS, ParamCode, Verb
from ._params import Parameters, build_parameters
from ._sdp import SessionDescription
from ._values import EndpointName, ExtensionName

__all__ = [
    "Command",
    "Response",
    "MalformedMessage",
    "Message",
    "DEFAULT_VERSION",
    "trusted_command",
    "trusted_response",
]

DEFAULT_VERSION = "MGCP 1.0"


class _Accessors:
    """Properties shared by commands and responses for the common parameters."""

    __slots__ = ()
    params: Parameters

    @property
    def call_id(self) -> str | None:
        return self.params.get(ParamCode.CALL_ID)

    @property
    def connection_id(self) -> str | None:
        ids = self.params.get(ParamCode.CONNECTION_ID)
        return ids[0] if ids else None

    @property
    def connection_ids(self) -> tuple[str, ...]:
        ids: tuple[str, ...] = self.params.get(ParamCode.CONNECTION_ID, ())
        return ids

    @property
    def request_id(self) -> str | None:
        return self.params.get(ParamCode.REQUEST_ID)

    @property
    def specific_endpoint(self) -> EndpointName | None:
        names = self.params.get(ParamCode.SPECIFIC_ENDPOINT_ID)
        return names[0] if names else None

    @property
    def response_ack(self) -> tuple[tuple[int, int], ...] | None:
        return self.params.get(ParamCode.RESPONSE_ACK)


@final  # encoders test type(m) is Command: a subclass would be encoded as a Response
@dataclass(frozen=True, slots=True)
class Command(_Accessors):
    """
    An MGCP command.  Build one with L{Command.create}, which takes the
    parameters as keyword arguments (typed values or wire text).
    """

    verb: Verb | ExtensionName
    transaction_id: int
    endpoint: EndpointName
    params: Parameters
    sdp: SessionDescription | None = None
    version: str = DEFAULT_VERSION

    @classmethod
    def create(
        cls,
        verb: Verb | str,
        transaction_id: int,
        endpoint: str,
        *,
        sdp: SessionDescription | str | None = None,
        version: str = DEFAULT_VERSION,
        extensions: Mapping[str, str] | None = None,
        **params: Any,
    ) -> Command:
        """
        C{Command.create(Verb.CRCX, 1204, "aaln/1@gw", call_id="A3C4",
        mode="recvonly", local_options="p:20, a:PCMU")}.  Parameter keywords
        are the attribute names of L{mgcpswitch.mgcp.PARAMETER_NAMES}; string
        values are parsed as if read from the wire.
        """
        if isinstance(verb, str) and not isinstance(verb, Verb):
            verb = VERBS.get(verb.upper()) or ExtensionName(verb.upper())
        if isinstance(sdp, str):
            sdp = SessionDescription.parse(sdp)
        return cls(
            verb,
            transaction_id,
            endpoint if isinstance(endpoint, EndpointName) else EndpointName.parse(endpoint),
            build_parameters(params, extensions),
            sdp,
            version,
        )

    @property
    def profile(self) -> str | None:
        """The profile after the version (C{NCS 1.0}), if any."""
        parts = self.version.split(None, 2)
        return parts[2] if len(parts) > 2 else None

    def with_transaction_id(self, transaction_id: int) -> Command:
        # Every field but the id is this command's, already checked: the
        # unchecked constructor (the layer numbers each command it sends).
        return trusted_command(self.verb, transaction_id, self.endpoint, self.params, self.sdp, self.version)

    def with_params(self, **changes: Any) -> Command:
        return Command(
            self.verb, self.transaction_id, self.endpoint, self.params.replace(**changes),
            self.sdp, self.version,
        )


@final
@dataclass(frozen=True, slots=True)
class Response(_Accessors):
    """
    An MGCP response (or the C{000} response acknowledgement).  Up to two
    session descriptions follow it; when both appear the local one is first
    (RFC 3435 §3.3).
    """

    code: int
    transaction_id: int
    comment: str = ""
    params: Parameters = Parameters()
    sdp: SessionDescription | None = None
    second_sdp: SessionDescription | None = None
    package: str | None = None

    @classmethod
    def create(
        cls,
        code: int,
        transaction_id: int,
        comment: str | None = None,
        *,
        sdp: SessionDescription | str | None = None,
        second_sdp: SessionDescription | str | None = None,
        package: str | None = None,
        extensions: Mapping[str, str] | None = None,
        **params: Any,
    ) -> Response:
        if comment is None:
            comment = COMMENTS.get(code, "")
        if isinstance(sdp, str):
            sdp = SessionDescription.parse(sdp)
        if isinstance(second_sdp, str):
            second_sdp = SessionDescription.parse(second_sdp)
        return cls(
            CODES.get(code, code), transaction_id, comment,
            build_parameters(params, extensions), sdp, second_sdp, package,
        )

    @property
    def is_provisional(self) -> bool:
        return 100 <= self.code < 200

    @property
    def is_final(self) -> bool:
        return self.code >= 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_ack(self) -> bool:
        """A C{000} response acknowledgement (RFC 3435 §3.5.6)."""
        return self.code < 100

    @property
    def descriptors(self) -> tuple[SessionDescription, ...]:
        return tuple(d for d in (self.sdp, self.second_sdp) if d is not None)

    def with_transaction_id(self, transaction_id: int) -> Response:
        return trusted_response(
            self.code, transaction_id, self.comment, self.params, self.sdp,
            self.second_sdp, self.package,
        )


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """
    What L{decode} returns for a message it cannot accept.

    @ivar code: the return code the receiver must answer with (510 protocol
        error, 504 unknown command, 528 incompatible version, 500 bad
        endpoint name, ...); for a malformed I{response}, which cannot be
        answered, it is 510 and the receiver drops the message.
    @ivar transaction_id: the transaction id when it could be read, else
        None (then the message cannot be answered: drop and count it).
    @ivar reason: what was wrong, for logs and the response commentary.
    @ivar is_response: whether the message looked like a response.
    @ivar raw: the text of the message.
    """

    code: int
    transaction_id: int | None
    reason: str
    is_response: bool = False
    raw: str = ""

    @property
    def answerable(self) -> bool:
        return self.transaction_id is not None and not self.is_response

    def error_response(self) -> Response:
        """The response a receiver sends back (only when L{answerable})."""
        assert self.transaction_id is not None
        return Response(CODES.get(self.code, self.code), self.transaction_id, self.reason[:80])


Message = Union[Command, Response]


# The generated __init__ of a frozen dataclass sets each field through
# object.__setattr__, which doubles the allocation cost, and so would the
# slots' member descriptors (each __set__ a method-wrapper call, ~800
# machine instructions on Python 3.11).  The decoder and the hot paths of
# both roles build values they have already validated, so they store the
# fields on a mutable twin with the same slots (a plain slot store each)
# and then make it the frozen class: __class__ assignment checks that the
# two layouts are the same, and the value is a Command or Response like
# any other from then on.
_new = object.__new__


class _CommandFields(_Accessors):
    __slots__ = Command.__slots__


class _ResponseFields(_Accessors):
    __slots__ = Response.__slots__


def trusted_command(
    verb: Verb | ExtensionName, txid: int, endpoint: EndpointName, params: Parameters,
    sdp: SessionDescription | None = None, version: str = DEFAULT_VERSION,
) -> Command:
    """
    A L{Command} built without any check, at a third of the cost of
    L{Command.create}: for hot paths that build commands from values they
    already hold.

    The caller promises what C{create} would otherwise check or convert:
    C{verb} is a L{Verb} (or the L{ExtensionName} of an experimental verb),
    C{txid} an int in 0..999,999,999 (0: the transaction layer allocates
    one), C{endpoint} an L{EndpointName}, C{params} a L{Parameters} whose
    keys are L{ParamCode}s (or extension names) with values of the types
    the parameter table gives (tuples for C{I:}, C{Z:}, C{A:}), allowed
    for the verb.  A broken promise is not detected here; it shows up as
    a wrong datagram or a peer's error code.
    """
    obj: Any = _new(_CommandFields)
    obj.verb = verb
    obj.transaction_id = txid
    obj.endpoint = endpoint
    obj.params = params
    obj.sdp = sdp
    obj.version = version
    obj.__class__ = Command
    return obj  # type: ignore[no-any-return]  # a Command now


def trusted_response(
    code: int, txid: int, comment: str, params: Parameters,
    sdp: SessionDescription | None = None, second: SessionDescription | None = None,
    package: str | None = None,
) -> Response:
    """
    A L{Response} built without any check (see L{trusted_command}).

    The caller promises: C{code} is a L{ReturnCode} member when the RFC
    names the code (the decoder's and L{Response.create}'s values compare
    and print as such), C{comment} printable ASCII without line breaks,
    C{params} a L{Parameters} of typed values as in L{trusted_command}.
    """
    obj: Any = _new(_ResponseFields)
    obj.code = code
    obj.transaction_id = txid
    obj.comment = comment
    obj.params = params
    obj.sdp = sdp
    obj.second_sdp = second
    obj.package = package
    obj.__class__ = Response
    return obj  # type: ignore[no-any-return]  # a Response now
