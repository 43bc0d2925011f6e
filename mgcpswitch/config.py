# -*- test-case-name: tests.test_config -*-
"""
The switch's configuration: one INI file (see etc/mgcpswitch.ini, which
documents every key) read into frozen, validated settings.

Every error names the section and key to fix.  Unknown sections and keys
are errors too: a misspelt key silently ignored is a misconfigured switch.
With no file, L{DEFAULT_INI} (two simulated gateways of eight lines on
loopback, the web admin on 127.0.0.1:8080) makes a switch that runs.
"""

from __future__ import annotations

import configparser
import enum
import ipaddress
import re
from collections import Counter
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable, Mapping, Optional, TypeVar, get_args, get_type_hints

from .errors import ConfigError, ProtocolError
from .mgcp import DigitMap, DigitMapError, EndpointName
from .transaction import TransactionConfig

__all__ = [
    "Settings",
    "PluginContext",
    "SwitchSettings",
    "GatewaySettings",
    "TrunkSettings",
    "SimulatorSettings",
    "StoreSettings",
    "ClusterSettings",
    "OverloadSettings",
    "ServiceSettings",
    "LineServices",
    "DemoSettings",
    "WebSettings",
    "Key",
    "KEYS",
    "REQUIRED",
    "read_keys",
    "load_settings",
    "parse_settings",
    "check_web_settings",
    "text",
    "optional_text",
    "boolean",
    "integer",
    "number",
    "optional",
    "one_of",
    "notified_entity",
    "words",
    "names",
    "ip_address",
    "interface",
    "digit_map",
    "DEFAULT_INI",
    "DEFAULT_DIGIT_MAP",
]

DEFAULT_DIGIT_MAP = "(xxxx|*xx|0T|00T)"
DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"

DEFAULT_INI = """\
# Embedded defaults: a switch on loopback with two simulated gateways.
[switch]
interface = 127.0.0.1
port = 2727

[web]
listen = tcp:8080:interface=127.0.0.1

[gateway:rgw1]
address = 127.0.0.1
port = 2427
lines = 8
numbers = 1001-1008

[gateway:rgw2]
address = 127.0.0.1
port = 2428
lines = 8
numbers = 2001-2008

[simulator]
gateways = rgw1, rgw2
"""


@dataclass(frozen=True)
class GatewaySettings:
    """One configured gateway (C{[gateway:NAME]}); NAME is its domain."""

    name: str
    address: str  # where commands go (an IP address)
    port: int = 2427
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    match_port: bool = True
    endpoints: tuple[str, ...] = ()  # local names, e.g. ("aaln/1", "aaln/2")
    numbers: tuple[str, ...] = ()  # directory numbers, one per endpoint, in order
    profile: str = "default"
    keepalive_interval: Optional[float] = None  # None: the switch's
    digit_map: Optional[str] = None
    dynamic: bool = False  # learned at run time ([switch] dynamic_gateways), not configured
    # Served by another call agent: its RSIPs are answered 521 with this
    # notified entity in N: (RFC 3435 §2.3.12), so it re-registers there.
    redirect: Optional[str] = None

    def endpoint_name(self, local: str) -> str:
        return f"{local}@{self.name}"


@dataclass(frozen=True)
class TrunkSettings:
    """
    One trunk to another network (C{[trunk:NAME]}): its kind (the
    L{mgcpswitch.interfaces.ITrunkFactory} that builds it, C{sip} built
    in), the peer, credentials, codecs, number rewriting and channels.
    Every kind reads these keys; docs/SIP.md says what SIP does with them.
    """

    name: str
    address: str  # the peer's IP address: calls and keepalives go there
    kind: str = "sip"
    port: int = 5060
    domain: Optional[str] = None  # the host part of URIs towards the peer (default: address)
    transport: str = "udp"
    local_address: str = "127.0.0.1"  # where the trunk listens
    local_port: int = 5060  # 0: any free port
    registrar: Optional[tuple[str, int]] = None  # register there (IP, port); None: no registration
    register_expiry: int = 3600
    username: Optional[str] = None
    password: Optional[str] = None
    caller_id: Optional[str] = None  # the From user when a call names no caller (default: username)
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    max_channels: int = 30
    keepalive_interval: float = 30.0  # OPTIONS to the peer; 0: none
    ring_timeout: float = 120.0  # a call not answered by then ends
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # who may call in
    outgoing_strip: int = 0  # digits removed from the front of numbers sent out
    outgoing_prefix: str = ""  # then put in front
    incoming_strip: int = 0  # digits removed from the front of numbers that come in
    incoming_prefix: str = ""

    def rewrite_out(self, number: str) -> str:
        return self.outgoing_prefix + number[self.outgoing_strip:]

    def rewrite_in(self, number: str) -> str:
        return self.incoming_prefix + number[self.incoming_strip:]


@dataclass(frozen=True)
class SwitchSettings:
    interface: str = "127.0.0.1"
    port: int = 2727
    dynamic_gateways: bool = False
    keepalive_interval: float = 15.0
    no_answer_timeout: float = 60.0
    digit_map: str = DEFAULT_DIGIT_MAP
    dial_plan: str = "static"
    observers: tuple[str, ...] = ()
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    packetization: int = 20
    audit_concurrency: int = 16  # audits/RQNTs in flight per gateway after a restart
    ladder: bool = True  # keep each call's MGCP messages for the admin
    embedded_dial_tone: bool = False  # idle lines get dial tone from an embedded request
    ended_calls_kept: int = 100
    # What a caller hears when the line called cannot take calls now (out of
    # service, restarting, its gateway draining or away): busy or reorder.
    unavailable_tone: str = "busy"
    # The agent's UDP receive buffer (bytes; 0: the system's default).
    receive_buffer: int = 0


@dataclass(frozen=True)
class SimulatorSettings:
    """Simulated gateways run inside the switch's process (C{[simulator]})."""

    gateways: tuple[str, ...] = ()
    media: bool = False
    rtp: bool = True


@dataclass(frozen=True)
class LineServices:
    """
    A line's services and settings: what the configuration gives, then
    what its user (star codes) or the operator (the admin) changed.
    """

    name: Optional[str] = None  # shown as caller ID name to the parties it calls
    private: bool = False  # its number and name are withheld (caller ID "P")
    call_waiting: bool = True
    three_way: bool = True
    transfer: bool = True
    transfer_on_hangup: bool = False  # the initiator of a three-way call hangs up: the other two stay
    forward_always: Optional[str] = None  # numbers calls are forwarded to
    forward_busy: Optional[str] = None
    forward_no_answer: Optional[str] = None
    dnd: bool = False  # do not disturb: callers hear busy (or are forwarded on busy)
    message_waiting: bool = False  # the visual indicator, and stutter dial tone

    @property
    def flash(self) -> bool:
        """Whether the line uses hook-flash at all (so it is asked for during calls)."""
        return self.call_waiting or self.three_way or self.transfer

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServiceSettings:
    """The services' feature codes and limits (C{[services]}); lines' defaults too."""

    cancel_waiting: str = "*70"  # before a number: no call waiting during that call
    forward_always_on: str = "*72"  # then the number to forward to
    forward_always_off: str = "*73"
    forward_busy_on: str = "*90"
    forward_busy_off: str = "*91"
    forward_no_answer_on: str = "*92"
    forward_no_answer_off: str = "*93"
    dnd_on: str = "*78"
    dnd_off: str = "*79"
    # Forwarding stops after this many hops (a chain of forwards longer than
    # a few is a mistake, and each hop rings someone): the caller hears
    # reorder, the record says forward-loop.  A loop is refused at once.
    forward_limit: int = 5
    forward_no_answer_after: float = 20.0  # seconds of ringing before a no-answer forward
    recall_timeout: float = 60.0  # how long a line is rung back for a held call
    flash_digit_map: Optional[str] = None  # digits after a flash; default: the line's digit map
    lines: LineServices = LineServices()  # every line's services unless its [line:ENDPOINT] says


@dataclass(frozen=True)
class StoreSettings:
    """
    Where call control keeps what must outlive it (C{[store]}): gateway
    registrations, a checkpoint of each answered call, and the CDRs.
    """

    # sqlite:PATH (the embedded default), memory (nothing survives a
    # restart), or a postgresql:// URL (agents sharing state).
    url: str = "sqlite:mgcpswitch.sqlite"
    batch_size: int = 200  # rows per write, at most
    flush_interval: float = 1.0  # seconds a row may wait for its batch
    retry_for: float = 60.0  # seconds a failed batch is retried before its rows count as lost


@dataclass(frozen=True)
class ClusterSettings:
    """
    This agent as a member of a cluster (C{[cluster]}, with a PostgreSQL
    C{[store] url}): agents of one cluster share the database and the
    gateways; one is active, the others stand by.
    """

    # The member's name, unique in the cluster, and the notified entity it
    # puts in N: so that gateways send to it (ca@192.0.2.7:2727).  Default:
    # mgcpswitch@ the [switch] interface and port.
    name: Optional[str] = None
    heartbeat: float = 0.25  # seconds between renewals of the active's lease
    lease: float = 1.0  # an active that has not renewed for this long stops commanding gateways
    idle_timeout: float = 1.5  # the server ends a frozen active's session after this long
    txid_block_size: int = 100_000  # transaction ids per block drawn from the database

    def member_name(self, switch: SwitchSettings) -> str:
        """C{name}, or the default made of where the agent listens (after any command-line override)."""
        if self.name is not None:
            return self.name
        host = switch.interface
        return f"mgcpswitch@{f'[{host}]' if ':' in host else host}:{switch.port}"


@dataclass(frozen=True)
class OverloadSettings:
    """
    C{[overload]}: how the agent sheds new calls when it falls behind
    (L{mgcpswitch.agent.overload}).
    """

    enabled: bool = True
    interval: float = 0.02  # seconds between probes of the reactor's lateness
    target: float = 0.03  # lateness (s, over two probes) above which fewer calls are admitted
    decrease: float = 0.7  # the admitted share is multiplied by this per late probe
    increase: float = 0.01  # and grows by this per probe once lateness is below target / 2
    floor: float = 0.02  # the smallest share admitted (some calls always get through)
    busy: float = 0.5  # the share of a core the agent must use for lateness to count (0: lateness alone)
    ceiling: float = 0.8  # the agent's share of a core (over ~100 ms) above which fewer calls are admitted (why 0.8: etc/mgcpswitch.ini)
    capacity: bool = True  # also admit at most the calls/s its measured CPU per call allows at the ceiling
    shed_cost: float = 0.15  # a shed call's CPU as a share of an admitted call's (bench_overload.py --shed-cost)
    burst: float = 0.1  # seconds of that rate admitted at once beyond it
    tone: str = "reorder"  # what a refused caller hears: reorder or busy


@dataclass(frozen=True)
class DemoSettings:
    """Scripted subscribers for C{--demo} (C{[demo]})."""

    call_interval: float = 4.0  # seconds between new calls
    hold_time: float = 6.0
    answer_delay: float = 2.0
    unknown_number_share: float = 0.1  # some calls dial a number that does not exist


@dataclass(frozen=True, slots=True)
class WebSettings:
    """
    Where the web admin listens and who may use it (C{[web]}).  Defined
    here with the rest of the configuration, not in L{mgcpswitch.web}: the
    configuration sits below the faces, and call control reads it.

    @ivar listen: a server strports description: C{tcp:PORT:interface=ADDR}
        or, for HTTPS, C{ssl:PORT:interface=ADDR:privateKey=KEY:certKey=CERT}.
        Loopback by default.
    @ivar users_file: a file of C{user:pbkdf2_sha256$...} lines (see
        L{mgcpswitch.web.auth}); enables HTTP Basic authentication.
    @ivar tokens: bearer tokens accepted in C{Authorization: Bearer ...}.
    @ivar realm: the realm named in the HTTP Basic challenge.
    """

    listen: str = DEFAULT_LISTEN
    users_file: str | None = None
    tokens: tuple[str, ...] = ()
    realm: str = "mgcpswitch"

    @property
    def auth_required(self) -> bool:
        """Whether requests must authenticate (a users file or tokens set)."""
        return bool(self.users_file) or bool(self.tokens)


@dataclass(frozen=True)
class Settings:
    switch: SwitchSettings = SwitchSettings()
    transactions: TransactionConfig = TransactionConfig()
    web: WebSettings = WebSettings()
    gateways: tuple[GatewaySettings, ...] = ()
    trunks: tuple[TrunkSettings, ...] = ()
    simulator: SimulatorSettings = SimulatorSettings()
    demo: DemoSettings = DemoSettings()
    store: StoreSettings = StoreSettings()
    cluster: Optional[ClusterSettings] = None  # with a PostgreSQL store only
    overload: OverloadSettings = OverloadSettings()
    services: ServiceSettings = ServiceSettings()
    lines: Mapping[str, LineServices] = field(default_factory=dict)  # by endpoint name, lower case
    dialplan: Mapping[str, str] = field(default_factory=dict)  # pattern -> endpoint
    plugins: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    source: str = "<embedded defaults>"

    def gateway(self, name: str) -> GatewaySettings | None:
        for gateway in self.gateways:
            if gateway.name.lower() == name.lower():
                return gateway
        return None


@dataclass(frozen=True)
class PluginContext:
    """What a plugin factory may use to build its object (L{mgcpswitch.plugin} hands it over)."""

    reactor: Any
    settings: Optional[Settings] = None
    extras: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Keys and their readers.  A reader turns the text of one value into the
# value, or raises ValueError saying what is wrong with it; read_keys adds
# the section and key to the message.


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of a L{Key} that must be given.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Key:
    """
    One key a section may hold.

    @ivar read: turns the value's text into the value; raises L{ValueError}
        with the reason when the text is wrong.
    @ivar default: the value when the key is absent, or L{REQUIRED}.
    @ivar doc: what the key is for, said when a required key is missing.
    """

    read: Callable[[str], Any]
    default: Any = REQUIRED
    doc: str = ""


def read_keys(section: str, items: Mapping[str, str], keys: Mapping[str, Key]) -> dict[str, Any]:
    """
    The values of a section: every key of C{keys}, read from C{items} or
    defaulted.  A key C{keys} does not declare, a missing required key or a
    value its reader refuses is a L{ConfigError} naming section and key.
    """
    for name in items:
        if name not in keys:
            known = f"known keys are: {', '.join(sorted(keys))}" if keys else "this section has no keys"
            raise ConfigError((section, name), f"unknown key; {known}")
    values: dict[str, Any] = {}
    for name, key in keys.items():
        if name in items:
            values[name] = _read(section, name, key.read, items[name])
        elif key.default is REQUIRED:
            raise ConfigError((section, name), "required but missing" + (f": {key.doc}" if key.doc else ""))
        else:
            values[name] = key.default
    return values


def _read(section: str, key: str, read: Callable[[str], Any], value: str) -> Any:
    try:
        return read(value)
    except ValueError as e:
        raise ConfigError((section, key), str(e)) from None


def text(value: str) -> str:
    """Text without its surrounding blanks; empty is refused."""
    stripped = value.strip()
    if not stripped:
        raise ValueError("must not be empty")
    return stripped


def optional_text(value: str) -> str | None:
    """Text without its surrounding blanks, or None when empty."""
    return value.strip() or None


def boolean(value: str) -> bool:
    """C{yes}/C{no} (or true/false, on/off, 1/0)."""
    word = value.strip().lower()
    if word in ("1", "yes", "true", "on"):
        return True
    if word in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes or no, not {value!r}")


_Number = TypeVar("_Number", int, float)


def _bounded(value: _Number, low: float | None, high: float | None) -> _Number:
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"must be between {low:g} and {high:g}, not {value:g}")
    if low is not None and value < low:
        raise ValueError(f"must be at least {low:g}, not {value:g}")
    if high is not None and value > high:
        raise ValueError(f"must be at most {high:g}, not {value:g}")
    return value


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A reader of whole numbers between C{low} and C{high} (either may be None)."""

    def read(value: str) -> int:
        try:
            result = int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer, not {value!r}") from None
        return _bounded(result, low, high)

    return read


def number(low: float | None = 0.0, high: float | None = None) -> Callable[[str], float]:
    """A reader of numbers (seconds, shares) between C{low} and C{high}."""

    def read(value: str) -> float:
        try:
            result = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, not {value!r}") from None
        if result != result or result in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, not {value!r}")
        return _bounded(result, low, high)

    return read


def optional(read: Callable[[str], Any]) -> Callable[[str], Any]:
    """C{read}, or None for an empty value or C{none}."""

    def read_optional(value: str) -> Any:
        return None if value.strip().lower() in ("", "none") else read(value)

    return read_optional


def one_of(*choices: str) -> Callable[[str], str]:
    """One of C{choices} (case-insensitive)."""

    def read_choice(value: str) -> str:
        word = value.strip().lower()
        if word not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, not {value.strip()!r}")
        return word

    return read_choice


def notified_entity(value: str) -> str:
    """A notified entity, C{[name@]host[:port]} (RFC 3435 §3.2.1.3), as text."""
    from .mgcp import NotifiedEntity

    text = value.strip()
    try:
        entity = NotifiedEntity.parse(text)
    except ProtocolError:
        entity = None
    if entity is None or not text:
        raise ValueError(f"expected a notified entity like ca@192.0.2.7:2727, not {text!r}")
    return text


def store_url(value: str) -> str:
    """C{sqlite:PATH}, C{memory}, or a C{postgresql://} URL."""
    text = value.strip()
    if text == "memory" or (text.startswith("sqlite:") and text[7:].strip()) \
            or text.startswith(("postgresql://", "postgres://")):
        return text
    raise ValueError(f"expected sqlite:PATH, memory or postgresql://..., not {text!r}")


def words(value: str) -> tuple[str, ...]:
    """Comma- (or line-) separated items, blanks removed."""
    return tuple(item.strip() for item in value.replace("\n", ",").split(",") if item.strip())


def names(value: str) -> tuple[str, ...]:
    """Like L{words}, but naming one thing twice is refused."""
    items = words(value)
    seen: set[str] = set()
    for item in items:
        if item.lower() in seen:
            raise ValueError(f"{item!r} is named twice")
        seen.add(item.lower())
    return items


def ip_address(value: str) -> str:
    """
    An IPv4 or IPv6 address (not a name: resolving one would block the
    reactor), in its one canonical spelling (IPv6 compressed, v4-mapped as
    IPv4): addresses are keys, compared with what sockets report.
    """
    address = value.strip()
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def interface(value: str) -> str:
    """An address to listen on: an IP address of this host, or empty for all of them."""
    return ip_address(value) if value.strip() else ""


def digit_map(value: str) -> str:
    """A digit map (RFC 3435 §2.1.5), in its canonical form."""
    try:
        return str(DigitMap.parse(value.strip()))
    except DigitMapError as e:
        raise ValueError(f"bad digit map: {e.reason}") from None


def _numbers(value: str) -> tuple[str, ...]:
    """C{1001-1008} or C{1001, 1002, 1005}: directory numbers, each once."""
    out: list[str] = []
    for item in words(value):
        low, dash, high = item.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"bad number or range {item!r}")
        if dash:
            if len(low) != len(high) or int(high) < int(low):
                raise ValueError(f"bad range {item!r}")
            out.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
        else:
            out.append(low)
    if len(set(out)) < len(out):
        twice = sorted(n for n, count in Counter(out).items() if count > 1)
        raise ValueError(f"{', '.join(twice)} given twice")
    return tuple(out)


def _networks(value: str) -> tuple[Any, ...]:
    out = []
    for item in words(value):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"bad address or network {item!r}") from None
    return tuple(out)


def _endpoints(value: str) -> tuple[str, ...]:
    """Local endpoint names (C{aaln/1, aaln/2}): no wildcards."""
    endpoints = names(value)
    for local in endpoints:
        if not _is_endpoint(f"{local}@x") or "*" in local or "$" in local:
            raise ValueError(f"bad endpoint name {local!r}")
    if not endpoints:
        raise ValueError("name at least one endpoint")
    return endpoints


def _is_endpoint(value: str) -> bool:
    try:
        EndpointName.parse(value)
    except ProtocolError:
        return False
    return True


def _keys_of(kind: type, readers: Mapping[str, Callable[[str], Any]]) -> dict[str, Key]:
    """Keys read by C{readers}, with the defaults of the dataclass C{kind}'s fields."""
    defaults = {f.name: (REQUIRED if f.default is MISSING else f.default) for f in fields(kind)}
    return {name: Key(read, defaults[name]) for name, read in readers.items()}


def _reader_of(kind: Any) -> Callable[[str], Any]:
    """The reader of a value of type C{kind}: bool, int, float, an enum (by value) or an Optional of one."""
    arguments = get_args(kind)
    if type(None) in arguments:
        [inner] = [a for a in arguments if a is not type(None)]
        return optional(_reader_of(inner))
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        read_word = one_of(*(str(member.value) for member in kind))
        return lambda value: kind(read_word(value))
    readers: dict[Any, Callable[[str], Any]] = {bool: boolean, int: integer(0), float: number()}
    if kind not in readers:
        raise TypeError(f"no reader for values of type {kind!r}: give the key its own")
    return readers[kind]


# ---------------------------------------------------------------------------
# The sections.  KEYS is what etc/mgcpswitch.ini documents, key by key.

_SWITCH_KEYS = _keys_of(SwitchSettings, {
    "interface": interface,
    "port": integer(0, 65535),
    "dynamic_gateways": boolean,
    "keepalive_interval": number(0.0),
    "no_answer_timeout": number(1.0),
    "digit_map": digit_map,
    "dial_plan": text,
    "observers": names,
    "codecs": names,
    "packetization": integer(1, 1000),
    "audit_concurrency": integer(1, 10000),
    "ladder": boolean,
    "embedded_dial_tone": boolean,
    "ended_calls_kept": integer(0, 1_000_000),
    "unavailable_tone": one_of("busy", "reorder"),
    "receive_buffer": integer(0),
})
_TRANSACTION_KEYS = _keys_of(TransactionConfig, {
    name: _reader_of(kind) for name, kind in get_type_hints(TransactionConfig).items()
})
_WEB_KEYS = _keys_of(WebSettings, {
    "listen": text, "users_file": optional_text, "tokens": words, "realm": text,
})
_GATEWAY_KEYS = {
    "address": Key(ip_address, REQUIRED, "the gateway's IP address, where commands go"),
    **_keys_of(GatewaySettings, {
        "port": integer(0, 65535),
        "allowed": _networks,  # () here: the gateway's address
        "match_port": boolean,
        "endpoints": _endpoints,  # () here: aaln/1 to aaln/LINES
        "numbers": _numbers,
        "profile": text,
        "keepalive_interval": optional(number(0.0)),
        "digit_map": optional(digit_map),
        "redirect": optional(notified_entity),
    }),
    "lines": Key(integer(1, 100_000), 8),
}


def _transport(value: str) -> str:
    word = value.strip().lower()
    if word != "udp":
        raise ValueError(f"only udp is supported, not {value.strip()!r}")
    return word


def _address_port(value: str) -> tuple[str, int]:
    """C{IP} or C{IP:PORT} (C{[IPv6]:PORT}); the port defaults to 5060."""
    text = value.strip()
    host, port = text, "5060"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad address {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    return ip_address(host), integer(1, 65535)(port)


def _dial_digits(value: str) -> str:
    """Digits (and a leading +) to put in front of a number; empty for none."""
    text = value.strip()
    if text and not (text.lstrip("+").isdigit() and text.count("+") <= 1 and not text.endswith("+")):
        raise ValueError(f"expected digits (a leading + allowed), not {text!r}")
    return text


def _sip_user(value: str) -> str:
    text = value.strip()
    if not text or any(c in text for c in " \t@:<>\";,?"):
        raise ValueError(f"{text!r} cannot be the user part of a SIP URI")
    return text


_TRUNK_KEYS = {
    "address": Key(ip_address, REQUIRED, "the peer's IP address, where calls go"),
    **_keys_of(TrunkSettings, {
        "kind": text,
        "port": integer(1, 65535),
        "domain": optional_text,
        "transport": _transport,
        "local_address": ip_address,
        "local_port": integer(0, 65535),
        "registrar": optional(_address_port),
        "register_expiry": integer(60, 86400),
        "username": optional(_sip_user),
        "password": optional_text,
        "caller_id": optional(_sip_user),
        "codecs": names,
        "max_channels": integer(1, 100_000),
        "keepalive_interval": number(0.0),
        "ring_timeout": number(1.0),
        "allowed": _networks,  # () here: the peer's address
        "outgoing_strip": integer(0, 32),
        "outgoing_prefix": _dial_digits,
        "incoming_strip": integer(0, 32),
        "incoming_prefix": _dial_digits,
    }),
}
_SIMULATOR_KEYS = _keys_of(SimulatorSettings, {"gateways": names, "media": boolean, "rtp": boolean})
def feature_code(value: str) -> str:
    """A star code: * or # then one to three digits."""
    text = value.strip()
    if re.fullmatch(r"[*#][0-9]{1,3}", text) is None:
        raise ValueError(f"expected a feature code like *72, not {text!r}")
    return text


def directory_number(value: str) -> Optional[str]:
    """A number to forward to (digits, * and #), or none."""
    text = value.strip()
    if text.lower() in ("", "none"):
        return None
    if re.fullmatch(r"[0-9*#]{1,32}", text) is None:
        raise ValueError(f"expected a number of digits, not {text!r}")
    return text


_LINE_DEFAULT_KEYS = {
    "call_waiting": boolean, "three_way": boolean, "transfer": boolean, "transfer_on_hangup": boolean,
}
_SERVICE_KEYS = {
    **_keys_of(ServiceSettings, {
        "cancel_waiting": feature_code,
        "forward_always_on": feature_code,
        "forward_always_off": feature_code,
        "forward_busy_on": feature_code,
        "forward_busy_off": feature_code,
        "forward_no_answer_on": feature_code,
        "forward_no_answer_off": feature_code,
        "dnd_on": feature_code,
        "dnd_off": feature_code,
        "forward_limit": integer(1, 20),
        "forward_no_answer_after": number(1.0),
        "recall_timeout": number(1.0),
        "flash_digit_map": optional(digit_map),
    }),
    **_keys_of(LineServices, _LINE_DEFAULT_KEYS),
}
_LINE_KEYS = _keys_of(LineServices, {
    "name": optional_text,
    "private": boolean,
    **_LINE_DEFAULT_KEYS,
    "forward_always": directory_number,
    "forward_busy": directory_number,
    "forward_no_answer": directory_number,
    "dnd": boolean,
    "message_waiting": boolean,
})


def _services(items: Mapping[str, str]) -> ServiceSettings:
    values = read_keys("services", items, _SERVICE_KEYS)
    lines = LineServices(**{k: values.pop(k) for k in _LINE_DEFAULT_KEYS})
    codes = [values[k] for k in values if k.endswith(("_on", "_off")) or k == "cancel_waiting"]
    for code in codes:
        if codes.count(code) > 1:
            raise ConfigError(("services",), f"feature code {code} is given to two services")
    return ServiceSettings(**values, lines=lines)


def _line(name: str, items: Mapping[str, str], defaults: LineServices,
          gateways: list[GatewaySettings]) -> tuple[str, LineServices]:
    section = f"line:{name}"
    endpoints = {g.endpoint_name(e).lower() for g in gateways for e in g.endpoints}
    if name.lower() not in endpoints:
        raise ConfigError((section,), f"no configured gateway has an endpoint {name!r}")
    values = read_keys(section, items, {k: Key(key.read, getattr(defaults, k), key.doc)
                                        for k, key in _LINE_KEYS.items()})
    return name.lower(), LineServices(**values)


_STORE_KEYS = _keys_of(StoreSettings, {
    "url": store_url,
    "batch_size": integer(1, 1_000_000),
    "flush_interval": number(0.001),
    "retry_for": number(0.0),
})
_CLUSTER_KEYS = _keys_of(ClusterSettings, {
    "name": optional(notified_entity),
    "heartbeat": number(0.01),
    "lease": number(0.02),
    "idle_timeout": number(0.03),
    "txid_block_size": integer(1000, 100_000_000),
})
_OVERLOAD_KEYS = _keys_of(OverloadSettings, {
    "enabled": boolean,
    "interval": number(0.001, 1.0),
    "target": number(0.001, 10.0),
    "decrease": number(0.01, 0.99),
    "increase": number(0.0001, 1.0),
    "floor": number(0.0, 1.0),
    "busy": number(0.0, 1.0),
    "ceiling": number(0.1, 10.0),
    "capacity": boolean,
    "shed_cost": number(0.0, 1.0),
    "burst": number(0.001, 10.0),
    "tone": one_of("reorder", "busy"),
})
_DEMO_KEYS = _keys_of(DemoSettings, {
    "call_interval": number(0.1),  # 0 would place calls on every turn of the reactor
    "hold_time": number(0.0),
    "answer_delay": number(0.0),
    "unknown_number_share": number(0.0, 1.0),
})

#: The keys of each section (C{[dialplan]} holds patterns, and C{digit_map};
#: C{[plugin:NAME]} sections are declared by their plugins).
KEYS: Mapping[str, Mapping[str, Key]] = {
    "switch": _SWITCH_KEYS,
    "transactions": _TRANSACTION_KEYS,
    "web": _WEB_KEYS,
    "gateway:NAME": _GATEWAY_KEYS,
    "trunk:NAME": _TRUNK_KEYS,
    "simulator": _SIMULATOR_KEYS,
    "demo": _DEMO_KEYS,
    "store": _STORE_KEYS,
    "cluster": _CLUSTER_KEYS,
    "overload": _OVERLOAD_KEYS,
    "services": _SERVICE_KEYS,
    "line:ENDPOINT": _LINE_KEYS,
    "dialplan": {"digit_map": Key(digit_map, None)},
}


def _cluster(items: Optional[Mapping[str, str]], store: StoreSettings,
             switch: SwitchSettings) -> Optional[ClusterSettings]:
    """
    C{[cluster]}: there when the store is PostgreSQL (agents sharing a
    database form a cluster, whether the section is written or not), an
    error otherwise.
    """
    clustered = store.url.startswith(("postgresql://", "postgres://"))
    if not clustered:
        if items is not None:
            raise ConfigError(("cluster",), f"agents form a cluster through PostgreSQL: [store] url is {store.url!r}")
        return None
    cluster = ClusterSettings(**read_keys("cluster", items or {}, _CLUSTER_KEYS))
    if not 0 < cluster.heartbeat < cluster.lease < cluster.idle_timeout:
        raise ConfigError(("cluster", "lease"), (
            f"needs heartbeat ({cluster.heartbeat:g}) < lease ({cluster.lease:g}) "
            f"< idle_timeout ({cluster.idle_timeout:g})"
        ))
    if cluster.name is None:
        host = switch.interface
        if host in ("", "0.0.0.0", "::"):
            raise ConfigError(("cluster", "name"), (
                f"needed when [switch] interface is {host or 'every address'!r}: the notified entity "
                "gateways reach this agent at, like ca@192.0.2.7:2727"
            ))
    return cluster


def check_web_settings(web: WebSettings) -> WebSettings:
    """
    Refuse an admin reachable beyond loopback without authentication,
    decided on the endpoint Twisted builds from C{listen} (see
    L{mgcpswitch.listen}), not on its text.
    """
    from .listen import check_exposure

    check_exposure(web)
    return web


def _gateway(name: str, items: Mapping[str, str]) -> GatewaySettings:
    s = f"gateway:{name}"
    if not name or not _is_endpoint(f"x@{name}"):
        raise ConfigError((s,), f"{name!r} is not a domain name")
    if "lines" in items and "endpoints" in items:
        raise ConfigError((s, "endpoints"), "give either lines or endpoints, not both")
    values = read_keys(s, items, _GATEWAY_KEYS)
    lines = values.pop("lines")
    if not values["endpoints"]:
        values["endpoints"] = tuple(f"aaln/{n}" for n in range(1, lines + 1))
    if values["numbers"] and len(values["numbers"]) != len(values["endpoints"]):
        raise ConfigError(
            (s, "numbers"), f"{len(values['numbers'])} numbers for {len(values['endpoints'])} endpoints"
        )
    if not values["allowed"]:
        values["allowed"] = (ipaddress.ip_network(values["address"]),)
    return GatewaySettings(name=name, **values)


def _trunk(name: str, items: Mapping[str, str]) -> TrunkSettings:
    s = f"trunk:{name}"
    if not name or not TOKEN_NAME.fullmatch(name):
        raise ConfigError((s,), f"{name!r} is not a trunk name (letters, digits, - and _)")
    values = read_keys(s, items, _TRUNK_KEYS)
    if not values["codecs"]:
        raise ConfigError((s, "codecs"), "name at least one codec")
    if values["password"] is not None and values["username"] is None:
        raise ConfigError((s, "username"), "a password needs a username")
    if values["registrar"] is not None and values["username"] is None:
        raise ConfigError((s, "username"), "registering needs a username")
    if not values["allowed"]:
        values["allowed"] = (ipaddress.ip_network(values["address"]),)
    return TrunkSettings(name=name, **values)


def _check_trunks(trunks: list[TrunkSettings], switch: SwitchSettings) -> None:
    """Each trunk is named once and listens on a port of its own (not the switch's MGCP port)."""
    seen: dict[str, str] = {}
    ports: dict[tuple[str, int], str] = {}
    mgcp = {switch.interface or "0.0.0.0", "0.0.0.0"}
    for trunk in trunks:
        s = f"trunk:{trunk.name}"
        if trunk.name.lower() in seen:
            raise ConfigError((s,), f"configured twice (also [trunk:{seen[trunk.name.lower()]}])")
        seen[trunk.name.lower()] = trunk.name
        if trunk.local_port == 0:
            continue
        where = (trunk.local_address, trunk.local_port)
        if trunk.local_port == switch.port and (trunk.local_address in mgcp or switch.interface == ""):
            raise ConfigError((s, "local_port"), f"port {trunk.local_port} is the switch's MGCP port ([switch] port)")
        if where in ports:
            raise ConfigError((s, "local_port"), f"{where[0]} port {where[1]} is already [trunk:{ports[where]}]'s")
        ports[where] = trunk.name


TOKEN_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _check_gateways(gateways: list[GatewaySettings]) -> None:
    """Each gateway, address and port, and directory number is configured once."""
    seen_names: dict[str, str] = {}
    seen_addresses: dict[tuple[Any, int], str] = {}
    seen_numbers: dict[str, GatewaySettings] = {}
    for gateway in gateways:
        s = f"gateway:{gateway.name}"
        if gateway.name.lower() in seen_names:
            raise ConfigError((s,), f"configured twice (also [gateway:{seen_names[gateway.name.lower()]}])")
        seen_names[gateway.name.lower()] = gateway.name
        where = (ipaddress.ip_address(gateway.address), gateway.port)
        if where in seen_addresses:
            raise ConfigError(
                (s, "port"),
                f"{gateway.address} port {gateway.port} is already [gateway:{seen_addresses[where]}]'s: "
                "two gateways cannot share an address and port",
            )
        seen_addresses[where] = gateway.name
        clashes = sorted(seen_numbers.keys() & set(gateway.numbers))
        if clashes:
            other = seen_numbers[clashes[0]]
            local = other.endpoints[other.numbers.index(clashes[0])]
            raise ConfigError((s, "numbers"), f"{clashes[0]} is already the number of {other.endpoint_name(local)}")
        seen_numbers.update(dict.fromkeys(gateway.numbers, gateway))


def _dialplan(items: Mapping[str, str], gateways: list[GatewaySettings], dynamic: bool,
              trunks: list[TrunkSettings] = []) -> dict[str, str]:
    """
    C{[dialplan]}: patterns that are digit maps, routed to configured
    endpoints, or to configured trunks (C{9x.T = trunk:provider}: the
    number dialled goes to the trunk, which rewrites it as its section says).
    """
    s = "dialplan"
    plan: dict[str, str] = {}
    by_name = {g.name.lower(): g for g in gateways}
    trunk_names = {t.name.lower() for t in trunks}
    for pattern, target_text in items.items():
        if pattern == "digit_map":
            plan[pattern] = _read(s, pattern, digit_map, target_text)
            continue
        _read(s, pattern, digit_map, pattern)  # each pattern is a digit map
        target = target_text.strip()
        if target.lower().startswith("trunk:"):
            if target[6:].lower() not in trunk_names:
                raise ConfigError((s, pattern), f"no [trunk:{target[6:]}] section for {target}")
            plan[pattern] = target
            continue
        if not _is_endpoint(target) or "*" in target or "$" in target:
            raise ConfigError((s, pattern), f"{target!r} is not an endpoint name")
        local, _, domain = target.rpartition("@")
        gateway = by_name.get(domain.lower())
        if gateway is None:
            if not dynamic:
                raise ConfigError(
                    (s, pattern), f"no [gateway:{domain}] section for {target} (and [switch] dynamic_gateways is off)"
                )
        elif local.lower() not in {e.lower() for e in gateway.endpoints}:
            raise ConfigError((s, pattern), f"[gateway:{gateway.name}] has no endpoint {local}")
        plan[pattern] = target
    return plan


def parse_settings(text: str, source: str = "<string>") -> Settings:
    """Read settings from INI text."""
    # No DEFAULT section: its keys would silently join every section.
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=(";", "#"), default_section="\0"
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(text, source)
    except configparser.DuplicateOptionError as e:
        raise ConfigError((e.section, e.option), f"given twice (line {e.lineno})") from None
    except configparser.DuplicateSectionError as e:
        raise ConfigError((e.section,), f"given twice (line {e.lineno})") from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(
            (source,), f"not a valid INI file: line {e.lineno} {e.line.strip()!r} comes before any [section]"
        ) from None
    except configparser.ParsingError as e:
        lineno = e.errors[0][0]
        line = text.splitlines()[lineno - 1].strip()
        raise ConfigError((source,), f"not a valid INI file: cannot read line {lineno}: {line!r}") from None
    except configparser.Error as e:
        raise ConfigError((source,), "not a valid INI file: " + " ".join(str(e).split())) from None
    sections = {name: dict(parser.items(name)) for name in parser.sections()}
    switch = SwitchSettings(**read_keys("switch", sections.pop("switch", {}), _SWITCH_KEYS))
    try:
        transactions = TransactionConfig(
            **read_keys("transactions", sections.pop("transactions", {}), _TRANSACTION_KEYS)
        )
    except ValueError as e:  # limits that contradict each other
        raise ConfigError(("transactions",), str(e)) from None
    web = check_web_settings(WebSettings(**read_keys("web", sections.pop("web", {}), _WEB_KEYS)))
    simulator = SimulatorSettings(**read_keys("simulator", sections.pop("simulator", {}), _SIMULATOR_KEYS))
    demo = DemoSettings(**read_keys("demo", sections.pop("demo", {}), _DEMO_KEYS))
    store = StoreSettings(**read_keys("store", sections.pop("store", {}), _STORE_KEYS))
    cluster = _cluster(sections.pop("cluster", None), store, switch)
    overload = OverloadSettings(**read_keys("overload", sections.pop("overload", {}), _OVERLOAD_KEYS))
    services = _services(sections.pop("services", {}))
    dialplan_items = sections.pop("dialplan", {})
    gateways = []
    trunks: list[TrunkSettings] = []
    plugins: dict[str, dict[str, str]] = {}
    line_sections: dict[str, Mapping[str, str]] = {}
    for name, items in sections.items():
        kind, colon, rest = name.partition(":")
        if colon and kind == "gateway":
            gateways.append(_gateway(rest.strip(), items))
        elif colon and kind == "trunk":
            trunks.append(_trunk(rest.strip(), items))
        elif colon and kind == "plugin":
            plugins[rest.strip()] = items
        elif colon and kind == "line":
            line_sections[rest.strip()] = items
        else:
            raise ConfigError(
                (name,),
                "unknown section; known: switch, transactions, web, simulator, demo, store, cluster, overload, services, "
                "dialplan, gateway:NAME, line:ENDPOINT, trunk:NAME, plugin:NAME",
            )
    _check_gateways(gateways)
    _check_trunks(trunks, switch)
    lines = dict(_line(name, items, services.lines, gateways) for name, items in line_sections.items())
    configured = {g.name.lower() for g in gateways}
    for simulated in simulator.gateways:
        if simulated.lower() not in configured:
            raise ConfigError(("simulator", "gateways"), f"no [gateway:{simulated}] section to simulate")
    return Settings(
        switch=switch,
        transactions=transactions,
        web=web,
        gateways=tuple(gateways),
        trunks=tuple(trunks),
        simulator=simulator,
        demo=demo,
        store=store,
        cluster=cluster,
        overload=overload,
        services=services,
        lines=lines,
        dialplan=_dialplan(dialplan_items, gateways, switch.dynamic_gateways, trunks),
        plugins=plugins,
        source=source,
    )


def load_settings(path: str | None) -> Settings:
    """Read the INI file at C{path} (UTF-8), or the embedded defaults when None."""
    if path is None:
        return parse_settings(DEFAULT_INI, "<embedded defaults>")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError((path,), f"cannot read the configuration: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as some editors write, is no error
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            (path,), f"not UTF-8 text: byte 0x{data[e.start]:02x} on line {line} cannot be decoded"
        ) from None
    return parse_settings(text, path)
