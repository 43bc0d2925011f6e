# -*- test-case-name: tests.test_codec -*-
"""
Typed values of MGCP parameters (RFC 3435 §3.2.2), each with a parser that
reads the wire text and a formatter that writes the canonical text.

Parsers are strict where RFC 3435 gives a grammar and say which return code
a receiver must answer when the grammar is broken; they are lenient where
real gateways differ harmlessly (runs of whitespace, case).  Names that RFC
3435 declares case-insensitive are canonicalised on the way in (package
names upper-case, event names lower-case except digits, DTMF letters and
ranges), so values compare equal whatever case the peer used.

Values are built to be cheap: decoding runs once per datagram, so the hot
ones (endpoint names, event names) are C{str} subclasses and the others
frozen dataclasses with few fields.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Union

from ._digitmap import DigitMap, DigitMapError
from ._errors import RemoteProtocolError

__all__ = [
    "EndpointName",
    "NotifiedEntity",
    "EMPTY_NOTIFIED_ENTITY",
    "ConnectionMode",
    "ExtensionName",
    "Mode",
    "LocalConnectionOptions",
    "ReservationService",
    "EventName",
    "Action",
    "ExtensionAction",
    "EmbeddedRequest",
    "RequestedEvent",
    "SignalRequest",
    "Event",
    "ConnectionParameters",
    "ReasonCode",
    "RestartMethod",
    "QuarantineHandling",
    "LoopControl",
    "QuarantineProcessing",
    "Capabilities",
    "NotificationState",
    "parse_requested_events",
    "format_requested_events",
    "parse_signal_requests",
    "format_signal_requests",
    "parse_events",
    "format_events",
    "parse_response_ack",
    "format_response_ack",
    "split_top_level",
]


def _fail(code: int, reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(code, reason)


# ---------------------------------------------------------------------------
# Generic helpers


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """
    Split C{text} on C{sep} where it is not inside parentheses or a quoted
    string, stripping whitespace around each item.

    MGCP lists nest (C{L/hd(E(R(D/[0-9](D)),S(L/dl)))}) and carry quoted
    strings with commas (C{L/ci(01/02/03/04,"5551212","Doe, John")}), so a
    plain C{str.split} is wrong.  The fast path is a plain split when no
    bracket or quote is present.

    @raise RemoteProtocolError: 510 on unbalanced parentheses or quotes.
    """
    if "(" not in text and '"' not in text and ")" not in text:
        return [item.strip() for item in text.split(sep)]
    items: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quoted:
            if ch == '"':
                if i + 1 < n and text[i + 1] == '"':
                    i += 1  # "" is an escaped quote inside a quoted string
                else:
                    quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "(" or ch == "[":
            depth += 1
        elif ch == ")" or ch == "]":
            depth -= 1
            if depth < 0:
                raise _fail(510, f"unbalanced parenthesis in {text!r}")
        elif ch == sep and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
        i += 1
    if quoted or depth:
        raise _fail(510, f"unbalanced parenthesis or quote in {text!r}")
    items.append(text[start:].strip())
    return items


class ExtensionName(str):
    """
    A package or vendor extension used where an enumeration is expected:
    an extension connection mode (C{pkg/name}), restart method or action.
    Kept verbatim so it round-trips; the role decides whether it is
    supported (518).
    """

    __slots__ = ()


# ---------------------------------------------------------------------------
# Endpoint names (RFC 3435 §2.1.2, §3.2.1.3, App. A)

_LOCAL_PART = r"(?:\$|\*|[\x21-\x23\x25-\x29\x2b-\x2e\x30-\x3f\x41-\x7e]+)"
_ENDPOINT_RE = re.compile(
    rf"({_LOCAL_PART}(?:/{_LOCAL_PART})*)@([\x21-\x3f\x41-\x7e]{{1,255}})"
)


class EndpointName(str):
    """
    An endpoint name C{local@domain}, kept in the spelling the peer used
    (RFC 3435 §2.1.2: the most recently supplied spelling must be used).

    Being a C{str}, it hashes and compares as its text; the comparison is
    case-sensitive, so registries that must treat C{aaln/1@GW} and
    C{aaln/1@gw} as one endpoint key on L{key}.  The domain grammar is read
    leniently (any visible character but C{@}) because real gateways use
    forms such as osmo-mgw's C{@*}.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> EndpointName:
        """
        @raise RemoteProtocolError: 500 when the text is not an endpoint
            name (no domain, empty or illegal local part).
        """
        if _ENDPOINT_RE.fullmatch(text) is None:
            raise _fail(500, f"bad endpoint name {text!r}")
        return cls(text)

    @property
    def local(self) -> str:
        return self.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.rpartition("@")[2]

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(self.local.split("/"))

    @property
    def key(self) -> str:
        """The case-folded name, for registries (names are case-insensitive)."""
        return self.lower()

    @property
    def is_wildcard(self) -> bool:
        local = self.local
        return "*" in local or "$" in local

    @property
    def is_any_of(self) -> bool:
        """Holds a C{$} ("any one") term."""
        return "$" in self.local

    @property
    def is_all_of(self) -> bool:
        """Holds a C{*} ("all of") term."""
        return "*" in self.local

    def matches(self, concrete: str) -> bool:
        """
        Whether the concrete endpoint C{concrete} is named by this (possibly
        wildcarded) name.  C{*} and C{$} stand for one term each, except
        that a C{*} as the last term matches any remaining terms, as a local
        name of just C{*} means every endpoint of the gateway (§2.1.2).
        """
        local, _, domain = concrete.rpartition("@")
        if domain.lower() != self.domain.lower():
            return False
        mine = self.local.lower().split("/")
        theirs = local.lower().split("/")
        for i, term in enumerate(mine):
            if term in ("*", "$"):
                if i == len(mine) - 1:
                    return len(theirs) >= len(mine)
                if i >= len(theirs):
                    return False
                continue
            if i >= len(theirs) or theirs[i] != term:
                return False
        return len(theirs) == len(mine)


# ---------------------------------------------------------------------------
# Notified entity (RFC 3435 §2.1.4, §3.2.1.3)


@dataclass(frozen=True, slots=True)
class NotifiedEntity:
    """
    Where an endpoint sends its commands: C{[local@]domain[:port]}.  The
    port defaults to 2727 when absent (L{port_or_default}).  An empty
    C{N:} (which empties the notified entity) is L{EMPTY_NOTIFIED_ENTITY}.
    """

    local: str | None
    domain: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> NotifiedEntity:
        if not text:
            return EMPTY_NOTIFIED_ENTITY
        local: str | None = None
        if "@" in text:
            local, _, rest = text.rpartition("@")
            if not local:
                raise _fail(510, f"bad notified entity {text!r}")
        else:
            rest = text
        port: int | None = None
        if rest.startswith("["):
            close = rest.find("]")
            if close < 0:
                raise _fail(510, f"bad notified entity {text!r}")
            domain = rest[: close + 1]
            tail = rest[close + 1 :]
            if tail:
                if not tail.startswith(":"):
                    raise _fail(510, f"bad notified entity {text!r}")
                port = _parse_port(tail[1:], text)
        else:
            domain, colon, port_text = rest.partition(":")
            if colon:
                port = _parse_port(port_text, text)
        if not domain or any(c.isspace() for c in domain):
            raise _fail(510, f"bad notified entity {text!r}")
        return cls(local, domain, port)

    @property
    def is_empty(self) -> bool:
        return not self.domain

    @property
    def port_or_default(self) -> int:
        return 2727 if self.port is None else self.port

    def __str__(self) -> str:
        if not self.domain:
            return ""
        text = self.domain if self.local is None else f"{self.local}@{self.domain}"
        return text if self.port is None else f"{text}:{self.port}"


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or len(text) > 5 or not text.isascii() or not 0 < int(text) < 65536:
        raise _fail(510, f"bad port in notified entity {whole!r}")
    return int(text)


EMPTY_NOTIFIED_ENTITY = NotifiedEntity(None, "", None)


# ---------------------------------------------------------------------------
# Connection modes (RFC 3435 §2.3.1, §3.2.2.6)


class ConnectionMode(enum.Enum):
    """The connection modes of MGCP 1.0 (there is no C{data} mode)."""

    __hash__ = object.__hash__

    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    SENDRECV = "sendrecv"
    CONFRNCE = "confrnce"
    INACTIVE = "inactive"
    LOOPBACK = "loopback"
    CONTTEST = "conttest"
    NETWLOOP = "netwloop"
    NETWTEST = "netwtest"

    def __str__(self) -> str:
        return self._value_


Mode = Union[ConnectionMode, ExtensionName]

_MODES = {m.value: m for m in ConnectionMode}


def parse_mode(text: str) -> Mode:
    """
    @raise RemoteProtocolError: 517 for an unknown mode; a C{pkg/name}
        extension mode is returned as an L{ExtensionName}.
    """
    mode = _MODES.get(text) or _MODES.get(text.lower())
    if mode is not None:
        return mode
    if "/" in text and _EXT_NAME_RE.fullmatch(text):
        return ExtensionName(text)
    raise _fail(517, f"unknown connection mode {text!r}")


_EXT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9][A-Za-z0-9-]*")


# ---------------------------------------------------------------------------
# Local connection options (RFC 3435 §2.3.5, §3.2.2.10)


class ReservationService(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    GUARANTEED = "g"
    CONTROLLED_LOAD = "cl"
    BEST_EFFORT = "be"


_ON_OFF = {"on": True, "off": False}
_RANGE_RE = re.compile(r"(\d{1,4})(?:-(\d{1,4}))?")
_LCO_ORDER = ("p", "a", "b", "t", "e", "gc", "s", "r", "k", "nt")
_LCO_RANK = {key: i for i, key in enumerate(_LCO_ORDER)}


@dataclass(frozen=True, slots=True)
class LocalConnectionOptions:
    """
    C{L:} as an ordered tuple of C{(key, value)} pairs, keys lower-case,
    values as given; the typed meaning of each standard key is read through
    properties.  Storing pairs keeps unknown and extension options
    verbatim and in order, and makes decoding cheap.

    Build one with L{create}, which orders the standard keys canonically
    (C{p, a, b, t, e, gc, s, r, k, nt}, then extensions).
    """

    options: tuple[tuple[str, str], ...]

    @classmethod
    def create(
        cls,
        *,
        packetization: int | tuple[int, int] | None = None,
        codecs: Iterable[str] = (),
        bandwidth: int | tuple[int, int] | None = None,
        type_of_service: int | None = None,
        echo_cancellation: bool | None = None,
        gain_control: int | str | None = None,
        silence_suppression: bool | None = None,
        reservation: ReservationService | None = None,
        key: str | None = None,
        network_type: str | None = None,
        extensions: Iterable[tuple[str, str]] = (),
    ) -> LocalConnectionOptions:
        pairs: list[tuple[str, str]] = []
        if packetization is not None:
            pairs.append(("p", _format_range(packetization)))
        codecs = tuple(codecs)
        if codecs:
            pairs.append(("a", ";".join(codecs)))
        if bandwidth is not None:
            pairs.append(("b", _format_range(bandwidth)))
        if type_of_service is not None:
            pairs.append(("t", format(type_of_service, "x")))
        if echo_cancellation is not None:
            pairs.append(("e", "on" if echo_cancellation else "off"))
        if gain_control is not None:
            pairs.append(("gc", str(gain_control)))
        if silence_suppression is not None:
            pairs.append(("s", "on" if silence_suppression else "off"))
        if reservation is not None:
            pairs.append(("r", reservation.value))
        if key is not None:
            pairs.append(("k", key))
        if network_type is not None:
            pairs.append(("nt", network_type))
        pairs.extend(extensions)
        return cls(tuple(pairs))

    def get(self, key: str) -> str | None:
        for k, v in self.options:
            if k == key:
                return v
        return None

    @property
    def packetization(self) -> tuple[int, int] | None:
        """C{p:} as (low, high) milliseconds; a single value gives low == high."""
        return _range_value(self.get("p"))

    @property
    def codecs(self) -> tuple[str, ...]:
        value = self.get("a")
        return tuple(value.split(";")) if value else ()

    @property
    def bandwidth(self) -> tuple[int, int] | None:
        return _range_value(self.get("b"))

    @property
    def type_of_service(self) -> int | None:
        value = self.get("t")
        return None if value is None else int(value, 16)

    @property
    def echo_cancellation(self) -> bool | None:
        value = self.get("e")
        return None if value is None else _ON_OFF[value.lower()]

    @property
    def silence_suppression(self) -> bool | None:
        value = self.get("s")
        return None if value is None else _ON_OFF[value.lower()]

    @property
    def gain_control(self) -> int | str | None:
        value = self.get("gc")
        if value is None or value.lower() == "auto":
            return value and "auto"
        return int(value)

    @property
    def reservation(self) -> ReservationService | None:
        value = self.get("r")
        return None if value is None else ReservationService(value.lower())

    @property
    def network_type(self) -> str | None:
        return self.get("nt")

    @property
    def extensions(self) -> tuple[tuple[str, str], ...]:
        """Options that are not one of the standard keys, in order."""
        return tuple(kv for kv in self.options if kv[0] not in _LCO_RANK)

    def __str__(self) -> str:
        return ", ".join(f"{k}:{v}" if v else k for k, v in self.options)

    @classmethod
    def parse(cls, text: str) -> LocalConnectionOptions:
        """
        @raise RemoteProtocolError: 541 for an invalid value of a standard
            option, 524 for an inconsistent one (a range whose low end is
            above its high end, a repeated option).
        """
        if not text:
            return cls(())
        pairs = []
        seen = set()
        for item in split_top_level(text):
            key, colon, value = item.partition(":")
            key = key.strip().lower()
            value = value.strip()
            if not key:
                raise _fail(541, f"empty local connection option in {text!r}")
            if key in seen:
                raise _fail(524, f"local connection option {key!r} repeated")
            seen.add(key)
            check = _LCO_CHECKS.get(key)
            if check is not None:
                check(key, value)
            pairs.append((key, value))
        return cls(tuple(pairs))


def _format_range(value: int | tuple[int, int]) -> str:
    if isinstance(value, int):
        return str(value)
    low, high = value
    return str(low) if low == high else f"{low}-{high}"


def _range_value(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    low, _, high = value.partition("-")
    return (int(low), int(high or low))


def _check_range(key: str, value: str) -> None:
    m = _RANGE_RE.fullmatch(value)
    if m is None:
        raise _fail(541, f"bad value {value!r} for local connection option {key}")
    if m.group(2) is not None and int(m.group(2)) < int(m.group(1)):
        raise _fail(524, f"inverted range {value!r} in local connection option {key}")


def _check_choice(*choices: str) -> Callable[[str, str], None]:
    def check(key: str, value: str) -> None:
        if value.lower() not in choices:
            raise _fail(541, f"bad value {value!r} for local connection option {key}")

    return check


def _check_hex(key: str, value: str) -> None:
    if not re.fullmatch(r"[0-9A-Fa-f]{1,2}", value):
        raise _fail(541, f"bad value {value!r} for local connection option {key}")


def _check_gain(key: str, value: str) -> None:
    if value.lower() != "auto" and not re.fullmatch(r"-?\d{1,4}", value):
        raise _fail(541, f"bad value {value!r} for local connection option {key}")


def _check_codecs(key: str, value: str) -> None:
    if not value or any(not c.strip() for c in value.split(";")):
        raise _fail(541, f"bad codec list {value!r}")


def _check_nonempty(key: str, value: str) -> None:
    if not value:
        raise _fail(541, f"empty value for local connection option {key}")


_LCO_CHECKS: dict[str, Callable[[str, str], None]] = {
    "p": _check_range,
    "b": _check_range,
    "a": _check_codecs,
    "t": _check_hex,
    "e": _check_choice("on", "off"),
    "s": _check_choice("on", "off"),
    "gc": _check_gain,
    "r": _check_choice("g", "cl", "be"),
    "k": _check_nonempty,
    "nt": _check_nonempty,
}


# ---------------------------------------------------------------------------
# Capabilities (RFC 3435 §3.2.2.3)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """
    One C{A:} line of an audit response: LCO-style C{(key, value)} pairs
    plus C{v:} (packages, default first) and C{m:} (modes).  Lists inside a
    value are C{;}-separated.  Unknown attributes are kept (and must be
    ignored by readers, §3.2.2.3).
    """

    options: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        for k, v in self.options:
            if k == key:
                return v
        return None

    def _list(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        return tuple(value.split(";")) if value else ()

    @property
    def codecs(self) -> tuple[str, ...]:
        return self._list("a")

    @property
    def packages(self) -> tuple[str, ...]:
        return self._list("v")

    @property
    def modes(self) -> tuple[str, ...]:
        return self._list("m")

    def __str__(self) -> str:
        return ", ".join(f"{k}:{v}" for k, v in self.options)

    @classmethod
    def parse(cls, text: str) -> Capabilities:
        pairs = []
        for item in split_top_level(text):
            if not item:
                continue
            key, _, value = item.partition(":")
            pairs.append((key.strip().lower(), value.strip()))
        return cls(tuple(pairs))


# ---------------------------------------------------------------------------
# Event and signal names (RFC 3435 §2.1.6, §2.1.7, §3.2.2.4)

_EVENT_NAME_RE = re.compile(
    r"(?:([A-Za-z0-9][A-Za-z0-9-]*|\*)/)?"  # package
    r"([A-Za-z0-9][A-Za-z0-9-]*|\[[^\]\s]+\]|\*|#|[0-9A-Za-z#*]+)"  # event
    r"(?:@([0-9A-Fa-f]{1,32}|\$|\*))?"  # connection
)


class EventName(str):
    """
    C{[package/]event[@connection]}, canonicalised: package upper-case,
    event lower-case unless it is a digit string, a DTMF letter, a single
    character or a C{[...]} range (C{D/[0-9#*T]}, C{D/T}, C{D/8295555T}),
    which are upper-case.  So C{l/HD} and C{L/hd} are one value.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> EventName:
        """
        @raise RemoteProtocolError: 522 when the text is not an event name.
        """
        m = _EVENT_NAME_RE.fullmatch(text)
        if m is None:
            raise _fail(522, f"bad event or signal name {text!r}")
        return cls(_canonical_event(m.group(1), m.group(2), m.group(3)))

    @classmethod
    def create(
        cls, package: str | None, name: str, connection: str | None = None
    ) -> EventName:
        return cls(_canonical_event(package, name, connection))

    @property
    def package(self) -> str | None:
        head, slash, _ = self.partition("/")
        return head if slash else None

    @property
    def name(self) -> str:
        rest = self.partition("/")[2] or str(self)
        return rest.partition("@")[0]

    @property
    def connection(self) -> str | None:
        _, at, conn = self.rpartition("@")
        return conn if at else None

    @property
    def without_connection(self) -> EventName:
        return EventName(self.partition("@")[0]) if "@" in self else self


def _canonical_event(package: str | None, name: str, connection: str | None) -> str:
    if name[0] in "0123456789[#*" or len(name) == 1:
        name = name.upper()
    else:
        name = name.lower()
    text = name if package is None else f"{package.upper()}/{name}"
    return text if connection is None else f"{text}@{connection}"


class Action(enum.Enum):
    """The basic requested-event actions (RFC 3435 §2.3.3)."""

    __hash__ = object.__hash__

    NOTIFY = "N"
    ACCUMULATE = "A"
    ACCUMULATE_DIGIT_MAP = "D"
    SWAP = "S"
    IGNORE = "I"
    KEEP_SIGNALS = "K"

    def __str__(self) -> str:
        return self._value_


_ACTIONS = {a.value: a for a in Action}


class ExtensionAction(str):
    """A package action C{pkg/Action[(params)]}, kept verbatim."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class EmbeddedRequest:
    """
    The embedded notification request C{E(R(..),S(..),D(..))}: activated when
    the event fires, as an RQNT with the same N, X, Q and T would be.
    C{digit_map} None means "keep the current map".
    """

    requested_events: tuple[RequestedEvent, ...] = ()
    signal_requests: tuple[SignalRequest, ...] = ()
    digit_map: DigitMap | None = None

    def __str__(self) -> str:
        parts = [f"R({format_requested_events(self.requested_events)})"]
        if self.signal_requests:
            parts.append(f"S({format_signal_requests(self.signal_requests)})")
        if self.digit_map is not None:
            parts.append(f"D({self.digit_map})")
        return "E(" + ",".join(parts) + ")"


ActionItem = Union[Action, EmbeddedRequest, ExtensionAction]

# Allowed pairs of actions (RFC 3435 §2.3.3); any other pair, or an action
# twice, is illegal (523).
_COMPATIBLE = {
    frozenset("NS"),
    frozenset("NK"),
    frozenset("NE"),
    frozenset("SA"),
    frozenset("SI"),
    frozenset("AK"),
    frozenset("AE"),
    frozenset("DK"),
    frozenset("KE"),
    frozenset("KI"),
}


def _action_letter(action: ActionItem) -> str | None:
    if isinstance(action, Action):
        return action.value
    if isinstance(action, EmbeddedRequest):
        return "E"
    return None


@dataclass(frozen=True, slots=True)
class RequestedEvent:
    """
    One item of C{R:}: an event, the actions to take when it fires and its
    parameters.  Empty C{actions} means the default, notify (C{ft} is
    C{ft(N)}); it is kept empty so the value round-trips as written.
    """

    name: EventName
    actions: tuple[ActionItem, ...] = ()
    params: tuple[str, ...] = ()

    @property
    def effective_actions(self) -> tuple[ActionItem, ...]:
        return self.actions or (Action.NOTIFY,)

    @property
    def embedded(self) -> EmbeddedRequest | None:
        for action in self.actions:
            if isinstance(action, EmbeddedRequest):
                return action
        return None

    def __str__(self) -> str:
        text = str(self.name)
        if self.actions or self.params:
            text += "(" + ",".join(str(a) for a in self.actions) + ")"
        if self.params:
            text += "(" + ",".join(self.params) + ")"
        return text


@dataclass(frozen=True, slots=True)
class SignalRequest:
    """One item of C{S:}: a signal and its parameters (C{L/rg(to=6000)})."""

    name: EventName
    params: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.params:
            return f"{self.name}({','.join(self.params)})"
        return str(self.name)


@dataclass(frozen=True, slots=True)
class Event:
    """
    An event with parameters, as in C{T:} (detect events), C{O:} (observed
    events) and C{ES:} (event states): C{L/hd}, C{D/8295555T},
    C{L/oc(L/rg)}, C{R/uc@A1(15)}.
    """

    name: EventName
    params: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.params:
            return f"{self.name}({','.join(self.params)})"
        return str(self.name)


def _split_name_and_groups(item: str, code: int) -> tuple[str, list[str]]:
    """
    Split C{name(g1)(g2)} into the name and the parenthesised groups.
    """
    paren = item.find("(")
    if paren < 0:
        return item, []
    name = item[:paren].strip()
    groups: list[str] = []
    i = paren
    n = len(item)
    while i < n:
        if item[i] != "(":
            if item[i].isspace():
                i += 1
                continue
            raise _fail(code, f"unexpected text after parameters in {item!r}")
        depth = 0
        quoted = False
        j = i
        while j < n:
            ch = item[j]
            if quoted:
                if ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if j >= n:
            raise _fail(code, f"unbalanced parenthesis in {item!r}")
        groups.append(item[i + 1 : j])
        i = j + 1
    return name, groups


def _params(group: str) -> tuple[str, ...]:
    if not group.strip():
        return ()
    try:
        return tuple(split_top_level(group))
    except RemoteProtocolError as e:
        raise _fail(538, e.reason) from None


def _parse_actions(text: str, allow_embedded: bool) -> tuple[ActionItem, ...]:
    actions: list[ActionItem] = []
    for item in split_top_level(text):
        letter = item.upper()
        basic = _ACTIONS.get(letter)
        if basic is not None:
            actions.append(basic)
        elif letter.startswith("E") and item[1:].lstrip().startswith("("):
            if not allow_embedded:
                raise _fail(523, "an embedded request may not embed another one")
            actions.append(_parse_embedded(item[1:].strip()[1:-1]))
        elif "/" in item and _EXT_ACTION_RE.fullmatch(item):
            actions.append(ExtensionAction(item))
        else:
            raise _fail(523, f"unknown action {item!r}")
    letters = [x for x in (_action_letter(a) for a in actions) if x]
    if len(set(letters)) != len(letters):
        raise _fail(523, f"action repeated in ({text})")
    for i, a in enumerate(letters):
        for b in letters[i + 1 :]:
            if frozenset((a, b)) not in _COMPATIBLE:
                raise _fail(523, f"actions {a} and {b} cannot be combined")
    return tuple(actions)


_EXT_ACTION_RE = re.compile(r"[A-Za-z0-9-]+/[A-Za-z0-9-]+(\(.*\))?")


def _parse_embedded(text: str) -> EmbeddedRequest:
    requested: tuple[RequestedEvent, ...] = ()
    signals: tuple[SignalRequest, ...] = ()
    digit_map: DigitMap | None = None
    seen = set()
    for part in split_top_level(text):
        head, groups = _split_name_and_groups(part, 523)
        head = head.upper()
        if head not in ("R", "S", "D") or len(groups) != 1 or head in seen:
            raise _fail(523, f"bad embedded request part {part!r}")
        seen.add(head)
        if head == "R":
            requested = _parse_requested(groups[0], allow_embedded=False)
        elif head == "S":
            signals = parse_signal_requests(groups[0])
        else:
            try:
                digit_map = DigitMap.parse(groups[0])
            except DigitMapError as e:
                raise _fail(e.code, e.reason) from None
    return EmbeddedRequest(requested, signals, digit_map)


def _parse_requested(text: str, allow_embedded: bool) -> tuple[RequestedEvent, ...]:
    if not text.strip():
        return ()
    events = []
    seen = set()
    for item in split_top_level(text):
        name_text, groups = _split_name_and_groups(item, 510)
        name = EventName.parse(name_text)
        if len(groups) > 2:
            raise _fail(510, f"too many parameter groups in {item!r}")
        actions = _parse_actions(groups[0], allow_embedded) if groups and groups[0].strip() else ()
        params = _params(groups[1]) if len(groups) == 2 else ()
        if name in seen:
            raise _fail(510, f"event {name} requested twice")
        seen.add(name)
        events.append(RequestedEvent(name, actions, params))
    return tuple(events)


def parse_requested_events(text: str) -> tuple[RequestedEvent, ...]:
    """
    Parse C{R:} (or C{B/PR:}).

    @raise RemoteProtocolError: 523 for an unknown action or an illegal
        combination, 522 for a bad event name, 538 for bad event
        parameters, 510 for other grammar errors (an event twice).
    """
    return _parse_requested(text, allow_embedded=True)


def format_requested_events(events: Iterable[RequestedEvent]) -> str:
    return ", ".join(str(e) for e in events)


def parse_signal_requests(text: str) -> tuple[SignalRequest, ...]:
    """
    Parse C{S:}; an empty value is the empty list (stop all TO signals).

    @raise RemoteProtocolError: 522 for a bad signal name, 538 for bad
        parameters, 510 for a signal listed twice.
    """
    if not text.strip():
        return ()
    signals = []
    seen = set()
    for item in split_top_level(text):
        name_text, groups = _split_name_and_groups(item, 538)
        if len(groups) > 1:
            raise _fail(538, f"too many parameter groups in {item!r}")
        name = EventName.parse(name_text)
        if name in seen:
            raise _fail(510, f"signal {name} requested twice")
        seen.add(name)
        signals.append(SignalRequest(name, _params(groups[0]) if groups else ()))
    return tuple(signals)


def format_signal_requests(signals: Iterable[SignalRequest]) -> str:
    return ", ".join(str(s) for s in signals)


# Events without parameters, by their text: the items of C{O:} recur
# (C{L/hd}, C{D/5}) even where the whole text does not (every number
# dialled is a new C{O: D/2,D/0,D/1,...}), so a call's digits share these
# values instead of making two objects a digit that the parser's memo of
# whole texts then keeps alive into the collector's oldest generation.
# Bounded: cleared past _MAX_EVENTS (a gateway reporting whole numbers as
# one event, C{D/2015551234}, fills it).
_EVENTS: dict[str, Event] = {}
_MAX_EVENTS = 1024


def parse_events(text: str) -> tuple[Event, ...]:
    """Parse C{T:}, C{O:} or C{ES:}: a list of events with parameters."""
    if not text.strip():
        return ()
    events = []
    for item in split_top_level(text):
        if "(" not in item:
            event = _EVENTS.get(item)
            if event is None:
                event = Event(EventName.parse(item))
                if len(_EVENTS) >= _MAX_EVENTS:
                    _EVENTS.clear()
                _EVENTS[item] = event
            events.append(event)
            continue
        name_text, groups = _split_name_and_groups(item, 538)
        if len(groups) > 1:
            raise _fail(538, f"too many parameter groups in {item!r}")
        events.append(Event(EventName.parse(name_text), _params(groups[0]) if groups else ()))
    return tuple(events)


def format_events(events: Iterable[Event]) -> str:
    return ", ".join(str(e) for e in events)


# ---------------------------------------------------------------------------
# Connection parameters (RFC 3435 §2.3.7, §3.2.2.7)

_CP_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[/-][A-Za-z0-9]+)?")
_CP_PAIR = r"[A-Za-z][A-Za-z0-9]*(?:[/-][A-Za-z0-9]+)?=[0-9]+"
_CP_PLAIN_RE = re.compile(rf"{_CP_PAIR}(?:, ?{_CP_PAIR})*")
_CP_PAIR_RE = re.compile(r"([A-Za-z][A-Za-z0-9]*(?:[/-][A-Za-z0-9]+)?)=([0-9]+)")


@dataclass(frozen=True, slots=True)
class ConnectionParameters:
    """
    C{P:} statistics as ordered C{(name, value)} pairs (names upper-case):
    PS, OS, PR, OR, PL, JI, LA and extensions (C{X-xx}, C{pkg/name}),
    which readers must ignore when unknown (§3.2.2.7).
    """

    values: tuple[tuple[str, int], ...]

    @classmethod
    def create(cls, **values: int) -> ConnectionParameters:
        """C{create(PS=5, OS=860, PR=5, OR=860, PL=0, JI=0)}."""
        return cls(tuple((k.upper(), v) for k, v in values.items()))

    def get(self, name: str) -> int | None:
        name = name.upper()
        for k, v in self.values:
            if k == name:
                return v
        return None

    def as_dict(self) -> dict[str, int]:
        return dict(self.values)

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values)

    @classmethod
    def parse(cls, text: str) -> ConnectionParameters:
        """@raise RemoteProtocolError: 510 for a malformed item."""
        if _CP_PLAIN_RE.fullmatch(text):
            # The form every gateway sends (NAME=digits, comma and space):
            # one C-level match, then the pairs.
            return cls(tuple((name.upper(), int(value)) for name, value in _CP_PAIR_RE.findall(text)))
        if not text.strip():
            return cls(())
        values = []
        for item in text.split(","):
            name, eq, value = item.partition("=")
            name = name.strip()
            value = value.strip()
            if not eq or not _CP_NAME_RE.fullmatch(name):
                raise _fail(510, f"bad connection parameter {item.strip()!r}")
            try:
                number = int(value)
            except ValueError:
                raise _fail(510, f"bad connection parameter {item.strip()!r}") from None
            values.append((name.upper(), number))
        return cls(tuple(values))


# ---------------------------------------------------------------------------
# Reason codes, restart methods (RFC 3435 §2.5, §3.2.2.15, §3.2.2.20)

_REASON_RE = re.compile(r"(\d{3})(?:\s+(/[A-Za-z0-9-]+))?(?:\s+(.*))?")


@dataclass(frozen=True, slots=True)
class ReasonCode:
    """C{E: 900 Endpoint malfunctioning}; 8xx codes carry C{/package}."""

    code: int
    text: str = ""
    package: str | None = None

    @classmethod
    def parse(cls, text: str) -> ReasonCode:
        m = _REASON_RE.fullmatch(text.strip())
        if m is None:
            raise _fail(510, f"bad reason code {text!r}")
        return cls(int(m.group(1)), (m.group(3) or "").strip(), m.group(2) and m.group(2)[1:])

    def __str__(self) -> str:
        parts = [f"{self.code:03d}"]
        if self.package:
            parts.append("/" + self.package)
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


class RestartMethod(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    GRACEFUL = "graceful"
    FORCED = "forced"
    RESTART = "restart"
    DISCONNECTED = "disconnected"
    CANCEL_GRACEFUL = "cancel-graceful"

    def __str__(self) -> str:
        return self._value_


_RESTART_METHODS = {m.value: m for m in RestartMethod}


def parse_restart_method(text: str) -> RestartMethod | ExtensionName:
    """@raise RemoteProtocolError: 536 for an unknown method."""
    method = _RESTART_METHODS.get(text.lower())
    if method is not None:
        return method
    if _EXT_NAME_RE.fullmatch(text):
        return ExtensionName(text)
    raise _fail(536, f"unknown restart method {text!r}")


# ---------------------------------------------------------------------------
# Quarantine handling (RFC 3435 §3.2.2.14)


class LoopControl(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    STEP = "step"
    LOOP = "loop"


class QuarantineProcessing(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    PROCESS = "process"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class QuarantineHandling:
    """C{Q: loop,discard}; a missing keyword means the default (step, process)."""

    loop: LoopControl | None = None
    processing: QuarantineProcessing | None = None

    @property
    def effective_loop(self) -> LoopControl:
        return self.loop or LoopControl.STEP

    @property
    def effective_processing(self) -> QuarantineProcessing:
        return self.processing or QuarantineProcessing.PROCESS

    @classmethod
    def parse(cls, text: str) -> QuarantineHandling:
        """
        Either order is accepted on receive (loop-control first is the
        grammar's order, and the one we emit).

        @raise RemoteProtocolError: 508 for an unknown or repeated keyword.
        """
        loop = None
        processing = None
        for item in text.split(","):
            word = item.strip().lower()
            if word in ("step", "loop") and loop is None:
                loop = LoopControl(word)
            elif word in ("process", "discard") and processing is None:
                processing = QuarantineProcessing(word)
            else:
                raise _fail(508, f"bad quarantine handling {text!r}")
        return cls(loop, processing)

    def __str__(self) -> str:
        return ",".join(x.value for x in (self.loop, self.processing) if x is not None)


# ---------------------------------------------------------------------------
# Response acknowledgement (RFC 3435 §3.2.2.19)


def parse_response_ack(text: str) -> tuple[tuple[int, int], ...]:
    """
    C{K: 6234-6255, 6257} as C{((6234, 6255), (6257, 6257))}; empty is
    allowed (a final response asking for a C{000}).
    """
    if not text.strip():
        return ()
    ranges = []
    for item in text.split(","):
        first, dash, last = item.strip().partition("-")
        if (
            not first.isdigit()
            or len(first) > 9
            or (dash and (not last.isdigit() or len(last) > 9))
            or not item.isascii()  # str.isdigit() accepts "²", which int() rejects
        ):
            raise _fail(510, f"bad response acknowledgement {item.strip()!r}")
        low = int(first)
        high = int(last) if dash else low
        if high < low:
            raise _fail(510, f"inverted response acknowledgement range {item.strip()!r}")
        ranges.append((low, high))
    return tuple(ranges)


def format_response_ack(ranges: Iterable[tuple[int, int]]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


# ---------------------------------------------------------------------------
# Base package notification state (RFC 3435 App. B.2.2)


class NotificationState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    NOTIFICATION = "ns"
    LOCKSTEP = "ls"
    OTHER = "o"

    def __str__(self) -> str:
        return self._value_
