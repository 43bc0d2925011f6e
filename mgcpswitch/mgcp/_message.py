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

import enum
from dataclasses import dataclass
from typing import Any, Mapping, Union

from ._sdp import SessionDescription
from ._values import EndpointName, ExtensionName

__all__ = [
    "Verb",
    "ReturnCode",
    "ParamCode",
    "Parameters",
    "Command",
    "Response",
    "MalformedMessage",
    "Message",
    "DEFAULT_VERSION",
]

DEFAULT_VERSION = "MGCP 1.0"


class Verb(enum.Enum):
    """The commands of MGCP 1.0 and the base package (RFC 3435 §2.3, App. B.3)."""

    # Members are singletons compared by identity, so the C identity hash is
    # right; Enum's own __hash__ is Python code run on every dict lookup.
    __hash__ = object.__hash__

    EPCF = "EPCF"
    CRCX = "CRCX"
    MDCX = "MDCX"
    DLCX = "DLCX"
    RQNT = "RQNT"
    NTFY = "NTFY"
    AUEP = "AUEP"
    AUCX = "AUCX"
    RSIP = "RSIP"
    MESG = "MESG"

    def __str__(self) -> str:
        return self._value_


class ReturnCode(enum.IntEnum):
    """Return codes of RFC 3435 §2.4 (meanings as RFC 3661 refines them)."""

    ACK = 0
    TRANSACTION_EXECUTING = 100
    TRANSACTION_QUEUED = 101
    OK = 200
    CONNECTION_DELETED = 250
    TRANSIENT_ERROR = 400
    ALREADY_OFF_HOOK = 401
    ALREADY_ON_HOOK = 402
    INSUFFICIENT_RESOURCES_NOW = 403
    INSUFFICIENT_BANDWIDTH_NOW = 404
    ENDPOINT_RESTARTING = 405
    TRANSACTION_TIMEOUT = 406
    TRANSACTION_ABORTED = 407
    OVERLOADED = 409
    NO_ENDPOINT_AVAILABLE = 410
    UNKNOWN_ENDPOINT = 500
    ENDPOINT_NOT_READY = 501
    INSUFFICIENT_RESOURCES = 502
    WILDCARD_TOO_COMPLICATED = 503
    UNKNOWN_COMMAND = 504
    UNSUPPORTED_REMOTE_DESCRIPTOR = 505
    CANNOT_SATISFY_OPTIONS_AND_DESCRIPTOR = 506
    UNSUPPORTED_FUNCTIONALITY = 507
    UNKNOWN_QUARANTINE_HANDLING = 508
    REMOTE_DESCRIPTOR_ERROR = 509
    PROTOCOL_ERROR = 510
    UNRECOGNIZED_EXTENSION = 511
    CANNOT_DETECT_EVENT = 512
    CANNOT_GENERATE_SIGNAL = 513
    CANNOT_SEND_ANNOUNCEMENT = 514
    INCORRECT_CONNECTION_ID = 515
    UNKNOWN_CALL_ID = 516
    UNSUPPORTED_MODE = 517
    UNSUPPORTED_PACKAGE = 518
    NO_DIGIT_MAP = 519
    ENDPOINT_RESTARTING_LEGACY = 520
    ENDPOINT_REDIRECTED = 521
    NO_SUCH_EVENT_OR_SIGNAL = 522
    UNKNOWN_ACTION = 523
    INCONSISTENT_OPTIONS = 524
    UNKNOWN_OPTION_EXTENSION = 525
    INSUFFICIENT_BANDWIDTH = 526
    MISSING_REMOTE_DESCRIPTOR = 527
    INCOMPATIBLE_VERSION = 528
    HARDWARE_FAILURE = 529
    CAS_SIGNALING_ERROR = 530
    TRUNK_GROUP_FAILURE = 531
    UNSUPPORTED_OPTION_VALUE = 532
    RESPONSE_TOO_LARGE = 533
    CODEC_NEGOTIATION_FAILURE = 534
    PACKETIZATION_NOT_SUPPORTED = 535
    UNKNOWN_RESTART_METHOD = 536
    UNKNOWN_DIGIT_MAP_EXTENSION = 537
    EVENT_PARAMETER_ERROR = 538
    INVALID_PARAMETER = 539
    CONNECTION_LIMIT_EXCEEDED = 540
    INVALID_OPTION = 541

    @property
    def is_provisional(self) -> bool:
        return 100 <= self < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self < 300

    @property
    def default_comment(self) -> str:
        return _COMMENTS.get(self, "")


def code_class(code: int) -> int:
    """
    The class an unknown code is handled as (RFC 3435 §2.4, RFC 3661 §3.2):
    0xx→000, 1xx→100, 2xx→200, 3xx→521, 4xx→400, 5xx–9xx→510.
    """
    hundreds = code // 100
    return {0: 0, 1: 100, 2: 200, 3: 521, 4: 400}.get(hundreds, 510)


_COMMENTS = {
    ReturnCode.ACK: "",
    ReturnCode.TRANSACTION_EXECUTING: "Transaction executing",
    ReturnCode.TRANSACTION_QUEUED: "Transaction queued",
    ReturnCode.OK: "OK",
    ReturnCode.CONNECTION_DELETED: "Connection deleted",
}


class ParamCode(enum.Enum):
    """
    Parameter names of RFC 3435 §3.2.2 (and the base package's B/PR, B/NS).
    C{RC} and C{LC} name the connection descriptors inside C{F:} only.
    """

    __hash__ = object.__hash__

    BEARER_INFORMATION = "B"
    CALL_ID = "C"
    CAPABILITIES = "A"
    CONNECTION_ID = "I"
    CONNECTION_MODE = "M"
    CONNECTION_PARAMETERS = "P"
    DETECT_EVENTS = "T"
    DIGIT_MAP = "D"
    EVENT_STATES = "ES"
    LOCAL_CONNECTION_OPTIONS = "L"
    MAX_DATAGRAM = "MD"
    NOTIFIED_ENTITY = "N"
    OBSERVED_EVENTS = "O"
    PACKAGE_LIST = "PL"
    QUARANTINE_HANDLING = "Q"
    REASON_CODE = "E"
    REQUESTED_EVENTS = "R"
    REQUESTED_INFO = "F"
    REQUEST_ID = "X"
    RESPONSE_ACK = "K"
    RESTART_DELAY = "RD"
    RESTART_METHOD = "RM"
    SECOND_CONNECTION_ID = "I2"
    SECOND_ENDPOINT_ID = "Z2"
    SIGNAL_REQUESTS = "S"
    SPECIFIC_ENDPOINT_ID = "Z"
    PERSISTENT_EVENTS = "B/PR"
    NOTIFICATION_STATE = "B/NS"
    REMOTE_DESCRIPTOR = "RC"
    LOCAL_DESCRIPTOR = "LC"

    def __str__(self) -> str:
        return self._value_


ParamKey = Union[ParamCode, str]


class Parameters(dict):  # type: ignore[type-arg]
    """
    An immutable mapping of parameter to typed value, in the order the
    parameters were given.  Equality ignores order, as MGCP does.

    Keys are L{ParamCode} members, or for extension and unknown parameters
    the name as sent (C{"X-Osmux"}).  Multi-valued parameters (C{I}, C{Z},
    C{A}: an audit response may carry several) are tuples.

    A C{dict} subclass with its mutators disabled: lookups and copies run
    at C speed, which matters because every message builds one.
    """

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("Parameters are immutable; use replace()")

    __setitem__ = __delitem__ = _readonly
    setdefault = update = pop = popitem = clear = __ior__ = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v!r}" for k, v in self.items())
        return f"Parameters({{{inner}}})"

    def __reduce__(self) -> Any:
        return (Parameters, (dict(self),))

    def replace(self, **changes: Any) -> Parameters:
        """A copy with parameters set (by attribute name) or removed (None)."""
        items = dict(self)
        for attr, value in changes.items():
            code, typed = coerce_param(attr, value)
            if value is None:
                items.pop(code, None)
            else:
                items[code] = typed
        return Parameters(items)


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
        return self.params.get(ParamCode.CONNECTION_ID, ())

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
            verb = _VERBS.get(verb.upper()) or ExtensionName(verb.upper())
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
        return Command(self.verb, transaction_id, self.endpoint, self.params, self.sdp, self.version)

    def with_params(self, **changes: Any) -> Command:
        return Command(
            self.verb, self.transaction_id, self.endpoint, self.params.replace(**changes),
            self.sdp, self.version,
        )


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
            comment = _COMMENTS.get(code, "")  # type: ignore[call-overload]
        if isinstance(sdp, str):
            sdp = SessionDescription.parse(sdp)
        if isinstance(second_sdp, str):
            second_sdp = SessionDescription.parse(second_sdp)
        return cls(
            _CODES.get(code, code), transaction_id, comment,
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
        return Response(
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
        return Response(_CODES.get(self.code, self.code), self.transaction_id, self.reason[:80])


Message = Union[Command, Response]


# The generated __init__ of a frozen dataclass sets each field through
# object.__setattr__, which doubles the decoder's allocation cost.  The
# decoder builds values it has already validated, so it sets the slots
# through their member descriptors instead.
_new = object.__new__
_c_verb, _c_txid, _c_ep, _c_params, _c_sdp, _c_version = (
    Command.__dict__[n].__set__
    for n in ("verb", "transaction_id", "endpoint", "params", "sdp", "version")
)
_r_code, _r_txid, _r_comment, _r_params, _r_sdp, _r_second, _r_package = (
    Response.__dict__[n].__set__
    for n in ("code", "transaction_id", "comment", "params", "sdp", "second_sdp", "package")
)


def _new_command(
    verb: Any, txid: int, endpoint: EndpointName, params: Parameters,
    sdp: SessionDescription | None, version: str,
) -> Command:
    obj = _new(Command)
    _c_verb(obj, verb)
    _c_txid(obj, txid)
    _c_ep(obj, endpoint)
    _c_params(obj, params)
    _c_sdp(obj, sdp)
    _c_version(obj, version)
    return obj  # type: ignore[no-any-return]


def _new_response(
    code: int, txid: int, comment: str, params: Parameters,
    sdp: SessionDescription | None, second: SessionDescription | None, package: str | None,
) -> Response:
    obj = _new(Response)
    _r_code(obj, code)
    _r_txid(obj, txid)
    _r_comment(obj, comment)
    _r_params(obj, params)
    _r_sdp(obj, sdp)
    _r_second(obj, second)
    _r_package(obj, package)
    return obj  # type: ignore[no-any-return]


def build_parameters(params: Mapping[str, Any], extensions: Mapping[str, str] | None) -> Parameters:
    """Bound at the end of L{_params} (which imports this module)."""
    raise RuntimeError("mgcpswitch.mgcp._params is not loaded")


def coerce_param(attr: str, value: Any) -> tuple[ParamCode, Any]:
    """Bound at the end of L{_params} (which imports this module)."""
    raise RuntimeError("mgcpswitch.mgcp._params is not loaded")


_VERBS = {v.value: v for v in Verb}
_CODES: dict[int, int] = {c.value: c for c in ReturnCode}
