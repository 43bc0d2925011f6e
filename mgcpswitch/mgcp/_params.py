# -*- test-case-name: tests.test_codec -*-
"""
The parameter table: for every parameter code, its attribute name, how its
value is parsed and formatted, and which commands may carry it; and
L{Parameters}, the typed mapping built from it (L{_message} builds on
this module, never the other way round).

Keeping this as data (not as branches in the decoder) means one place says
what each parameter is, the encoder and decoder cannot disagree, and the
presence rules of RFC 3435 §3.2.2 are checked by one loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ._codes import ParamCode, ParamKey, Verb
from ._digitmap import DigitMap, DigitMapError
from ._errors import LocalProtocolError, RemoteProtocolError
from ._values import (
    Capabilities,
    ConnectionParameters,
    EndpointName,
    ExtensionName,
    LocalConnectionOptions,
    NotificationState,
    NotifiedEntity,
    QuarantineHandling,
    ReasonCode,
    format_events,
    format_requested_events,
    format_response_ack,
    format_signal_requests,
    parse_events,
    parse_mode,
    parse_requested_events,
    parse_response_ack,
    parse_restart_method,
    parse_signal_requests,
)

__all__ = ["Parameters", "PARAMETERS", "PARAMETER_NAMES", "build_parameters", "coerce_param"]

class Parameters(dict[ParamKey, Any]):
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
    setdefault = update = pop = popitem = clear = __ior__ = _readonly

    def __hash__(self) -> int:  # type: ignore[override]  # typeshed: a dict is unhashable; this one is frozen
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


_HEX_ID_RE = re.compile(r"[0-9A-Fa-f]{1,32}")


def _fail(code: int, reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(code, reason)


def _hex_id(code: int, what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if _HEX_ID_RE.fullmatch(text) is None:
            raise _fail(code, f"bad {what} {text!r}")
        return text

    return parse


def _connection_ids(text: str) -> tuple[str, ...]:
    ids = tuple(item.strip() for item in text.split(",")) if text else ()
    for item in ids:
        if _HEX_ID_RE.fullmatch(item) is None:
            raise _fail(515, f"bad connection id {item!r}")
    return ids


def _number(code: int, what: str, digits: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or len(text) > digits or not text.isascii():
            raise _fail(code, f"bad {what} {text!r}")
        return int(text)

    return parse


def _endpoint_list(text: str) -> tuple[EndpointName, ...]:
    return (EndpointName.parse(text),)


def _digit_map(text: str) -> DigitMap | None:
    if not text:
        return None
    try:
        return DigitMap.parse(text)
    except DigitMapError as e:
        raise _fail(e.code, e.reason) from None


def _requested_info(text: str) -> tuple[ParamKey, ...]:
    if not text.strip():
        return ()
    out: list[ParamKey] = []
    for item in text.split(","):
        name = item.strip()
        if not name:
            raise _fail(510, f"empty item in requested info {text!r}")
        out.append(_CODES_BY_NAME.get(name.upper(), name))
    return tuple(out)


def _format_requested_info(items: Iterable[ParamKey]) -> str:
    return ",".join(str(i) for i in items)


def _package_list(text: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in text.split(","):
        name, colon, version = item.strip().partition(":")
        if not name or (colon and not (version.isdigit() and version.isascii())):
            raise _fail(510, f"bad package list item {item.strip()!r}")
        out.append((name, int(version) if colon else 0))
    return tuple(out)


def _bearer(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, colon, value = item.strip().partition(":")
        if not colon:
            raise _fail(510, f"bad bearer information {item.strip()!r}")
        out.append((key.strip().lower(), value.strip()))
    return tuple(out)


def _notification_state(text: str) -> NotificationState:
    try:
        return NotificationState(text.lower())
    except ValueError:
        raise _fail(510, f"bad notification state {text!r}") from None


def _non_empty(parse: Callable[[str], Any], code: int = 510) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        if not text:
            raise _fail(code, "empty value not allowed")
        return parse(text)

    return check


# The texts that recur are few (an agent's R:, S:, L:, M:, N:); the rest
# (dialled digits in O:, caller-id signals) fill the tables with values
# that every full pass of the garbage collector scans.  At 4,096 entries
# per table those passes took 11-14 ms in a switch at 300 calls/s; at
# 1,024, 5 ms, with the same CPU per call.
MAX_MEMO = 1024


def _interned(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """
    Memoise a parser of values whose text recurs (C{L: p:20, a:PCMU},
    C{R: L/hu(N)}, C{O: L/hd}, C{M: recvonly}): the values are immutable,
    so the same text may share one value.  Bounded: the table is cleared
    when it grows past L{MAX_MEMO} entries.  Errors are not cached.
    """
    table: dict[str, Any] = {}

    def parse_interned(text: str) -> Any:
        value = table.get(text, _MISSING)
        if value is _MISSING:
            value = parse(text)
            if len(table) >= MAX_MEMO:
                table.clear()
            table[text] = value
        return value

    parse_interned.table = table  # type: ignore[attr-defined]  # the decoder looks here first
    return parse_interned


_MISSING = object()


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """How one parameter is read and written."""

    code: ParamCode
    attr: str
    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    multi: bool = False  # several lines allowed (AUEP responses: I, Z, A)

    @property
    def name(self) -> str:
        return self.code._value_


_s = str
PARAMETERS: tuple[ParamSpec, ...] = (
    # The tuple order is the canonical output order.
    ParamSpec(ParamCode.RESPONSE_ACK, "response_ack", parse_response_ack, format_response_ack),
    ParamSpec(ParamCode.RESTART_METHOD, "restart_method", _interned(_non_empty(parse_restart_method, 536)), _s),
    ParamSpec(ParamCode.RESTART_DELAY, "restart_delay", _number(510, "restart delay", 6), _s),
    ParamSpec(ParamCode.REASON_CODE, "reason_code", _interned(_non_empty(ReasonCode.parse)), _s),
    ParamSpec(ParamCode.BEARER_INFORMATION, "bearer_information", _interned(_bearer),
              lambda v: ",".join(f"{k}:{x}" for k, x in v)),
    ParamSpec(ParamCode.CALL_ID, "call_id", _hex_id(516, "call id"), _s),
    ParamSpec(ParamCode.CONNECTION_ID, "connection_id", _connection_ids, ", ".join, multi=True),
    ParamSpec(ParamCode.SECOND_CONNECTION_ID, "second_connection_id",
              _hex_id(515, "second connection id"), _s),
    ParamSpec(ParamCode.SPECIFIC_ENDPOINT_ID, "specific_endpoint_id", _interned(_endpoint_list), _s,
              multi=True),
    ParamSpec(ParamCode.SECOND_ENDPOINT_ID, "second_endpoint_id", EndpointName.parse, _s),
    ParamSpec(ParamCode.NOTIFIED_ENTITY, "notified_entity", _interned(NotifiedEntity.parse), _s),
    ParamSpec(ParamCode.REQUEST_ID, "request_id", _hex_id(510, "request identifier"), _s),
    ParamSpec(ParamCode.LOCAL_CONNECTION_OPTIONS, "local_options", _interned(LocalConnectionOptions.parse), _s),
    ParamSpec(ParamCode.CONNECTION_MODE, "mode", _interned(_non_empty(parse_mode, 517)), _s),
    ParamSpec(ParamCode.REQUESTED_EVENTS, "requested_events", _interned(parse_requested_events),
              format_requested_events),
    ParamSpec(ParamCode.SIGNAL_REQUESTS, "signal_requests", _interned(parse_signal_requests),
              format_signal_requests),
    ParamSpec(ParamCode.QUARANTINE_HANDLING, "quarantine_handling",
              _interned(_non_empty(QuarantineHandling.parse, 508)), _s),
    ParamSpec(ParamCode.DETECT_EVENTS, "detect_events", _interned(parse_events), format_events),
    ParamSpec(ParamCode.DIGIT_MAP, "digit_map", _interned(_digit_map), lambda v: "" if v is None else str(v)),
    ParamSpec(ParamCode.OBSERVED_EVENTS, "observed_events", _interned(parse_events), format_events),
    ParamSpec(ParamCode.EVENT_STATES, "event_states", _interned(parse_events), format_events),
    ParamSpec(ParamCode.CONNECTION_PARAMETERS, "connection_parameters",
              ConnectionParameters.parse, _s),
    ParamSpec(ParamCode.REQUESTED_INFO, "requested_info", _interned(_requested_info), _format_requested_info),
    ParamSpec(ParamCode.CAPABILITIES, "capabilities", _interned(lambda t: (Capabilities.parse(t),)), _s,
              multi=True),
    ParamSpec(ParamCode.MAX_DATAGRAM, "max_datagram", _number(510, "max datagram", 9), _s),
    ParamSpec(ParamCode.PACKAGE_LIST, "package_list", _interned(_package_list),
              lambda v: ",".join(f"{n}:{x}" for n, x in v)),
    ParamSpec(ParamCode.PERSISTENT_EVENTS, "persistent_events", _interned(parse_requested_events),
              format_requested_events),
    ParamSpec(ParamCode.NOTIFICATION_STATE, "notification_state", _notification_state, _s),
)

SPECS: dict[ParamKey, ParamSpec] = {spec.code: spec for spec in PARAMETERS}
#: wire name -> (code, parser, the parser's intern table or None): the
#: decoder's hot path, one lookup per parameter line.
FAST: dict[str, tuple[ParamCode, Callable[[str], Any], dict[str, Any] | None]] = {
    spec.code.value: (spec.code, spec.parse, getattr(spec.parse, "table", None))
    for spec in PARAMETERS
}
BY_NAME: dict[str, ParamSpec] = {spec.code.value: spec for spec in PARAMETERS}
BY_ATTR: dict[str, ParamSpec] = {spec.attr: spec for spec in PARAMETERS}
ORDER: dict[ParamKey, int] = {spec.code: i for i, spec in enumerate(PARAMETERS)}
_CODES_BY_NAME = {code.value: code for code in ParamCode}

#: attribute name -> parameter code, for L{Command.create} keywords.
PARAMETER_NAMES: dict[str, ParamCode] = {spec.attr: spec.code for spec in PARAMETERS}
PARAMETER_NAMES["connection_ids"] = ParamCode.CONNECTION_ID
PARAMETER_NAMES["specific_endpoint_ids"] = ParamCode.SPECIFIC_ENDPOINT_ID


def coerce_param(attr: str, value: Any) -> tuple[ParamCode, Any]:
    """
    The parameter code and typed value for a keyword of L{Command.create}:
    strings are parsed as wire text; single values of multi-valued
    parameters become 1-tuples.
    """
    spec = BY_ATTR.get(attr)
    if spec is None:
        if attr in ("connection_ids", "specific_endpoint_ids"):
            spec = SPECS[PARAMETER_NAMES[attr]]
            return spec.code, tuple(value) if value is not None else None
        raise LocalProtocolError(539, f"no MGCP parameter is called {attr!r}")
    if value is None:
        return spec.code, None
    if isinstance(value, str) and not isinstance(value, (EndpointName, ExtensionName)):
        try:
            value = spec.parse(value)
        except RemoteProtocolError as e:
            raise LocalProtocolError(e.code, e.reason) from None
    elif spec.multi and not isinstance(value, tuple):
        value = (value,)
    return spec.code, value


def build_parameters(
    params: Mapping[str, Any], extensions: Mapping[str, str] | None = None
) -> Parameters:
    items: dict[ParamKey, Any] = {}
    for attr, value in params.items():
        if value is None:
            continue
        code, typed = coerce_param(attr, value)
        items[code] = typed
    if extensions:
        items.update(extensions)
    return Parameters(items)


# ---------------------------------------------------------------------------
# Presence rules for commands (RFC 3435 §3.2.2, request table).  Anything not
# allowed is forbidden (539); package (pkg/name) and X- extension parameters
# are always allowed; B/PR goes wherever T does.

P = ParamCode
_ALL = {P.RESPONSE_ACK}
ALLOWED: dict[Verb, frozenset[ParamCode]] = {
    Verb.EPCF: frozenset(_ALL | {P.BEARER_INFORMATION}),
    Verb.CRCX: frozenset(_ALL | {
        P.BEARER_INFORMATION, P.CALL_ID, P.CONNECTION_MODE, P.DETECT_EVENTS, P.DIGIT_MAP,
        P.LOCAL_CONNECTION_OPTIONS, P.NOTIFIED_ENTITY, P.QUARANTINE_HANDLING,
        P.REQUESTED_EVENTS, P.REQUEST_ID, P.SECOND_ENDPOINT_ID, P.SIGNAL_REQUESTS,
        P.PERSISTENT_EVENTS}),
    Verb.MDCX: frozenset(_ALL | {
        P.BEARER_INFORMATION, P.CALL_ID, P.CONNECTION_ID, P.CONNECTION_MODE,
        P.DETECT_EVENTS, P.DIGIT_MAP, P.LOCAL_CONNECTION_OPTIONS, P.NOTIFIED_ENTITY,
        P.QUARANTINE_HANDLING, P.REQUESTED_EVENTS, P.REQUEST_ID, P.SIGNAL_REQUESTS,
        P.PERSISTENT_EVENTS}),
    Verb.DLCX: frozenset(_ALL | {
        P.BEARER_INFORMATION, P.CALL_ID, P.CONNECTION_ID, P.CONNECTION_PARAMETERS,
        P.DETECT_EVENTS, P.DIGIT_MAP, P.NOTIFIED_ENTITY, P.QUARANTINE_HANDLING,
        P.REASON_CODE, P.REQUESTED_EVENTS, P.REQUEST_ID, P.SIGNAL_REQUESTS,
        P.PERSISTENT_EVENTS}),
    Verb.RQNT: frozenset(_ALL | {
        P.BEARER_INFORMATION, P.DETECT_EVENTS, P.DIGIT_MAP, P.NOTIFIED_ENTITY,
        P.QUARANTINE_HANDLING, P.REQUESTED_EVENTS, P.REQUEST_ID, P.SIGNAL_REQUESTS,
        P.PERSISTENT_EVENTS}),
    Verb.NTFY: frozenset(_ALL | {P.NOTIFIED_ENTITY, P.OBSERVED_EVENTS, P.REQUEST_ID}),
    Verb.AUEP: frozenset(_ALL | {P.REQUESTED_INFO}),
    Verb.AUCX: frozenset(_ALL | {P.CONNECTION_ID, P.REQUESTED_INFO}),
    Verb.RSIP: frozenset(_ALL | {P.REASON_CODE, P.RESTART_DELAY, P.RESTART_METHOD}),
    # MESG carries extension parameters only (App. B.3).
    Verb.MESG: frozenset(_ALL),
}

#: mandatory parameters and the code for their absence.
REQUIRED: dict[Verb, dict[ParamCode, int]] = {
    Verb.CRCX: {P.CALL_ID: 516, P.CONNECTION_MODE: 517},
    Verb.MDCX: {P.CALL_ID: 516, P.CONNECTION_ID: 515},
    Verb.RQNT: {P.REQUEST_ID: 510},
    Verb.NTFY: {P.REQUEST_ID: 510, P.OBSERVED_EVENTS: 510},
    Verb.AUCX: {P.CONNECTION_ID: 515, P.REQUESTED_INFO: 510},
    Verb.RSIP: {P.RESTART_METHOD: 510},
}

#: parameters that, when present, mean an encapsulated RQNT (then X: is required).
ENCAPSULATED_RQNT = frozenset(
    {P.REQUESTED_EVENTS, P.SIGNAL_REQUESTS, P.DIGIT_MAP, P.DETECT_EVENTS, P.QUARANTINE_HANDLING}
)

#: wildcard characters each verb accepts in its endpoint name (§2.3, §4.4.5).
WILDCARDS: dict[Verb, str] = {
    Verb.EPCF: "*",
    Verb.CRCX: "$",
    Verb.MDCX: "",
    Verb.DLCX: "*",
    Verb.RQNT: "*",
    Verb.NTFY: "",
    Verb.AUEP: "*",
    Verb.AUCX: "",
    Verb.RSIP: "*",
    Verb.MESG: "*",
}

