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
import ipaddress
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Optional

from .errors import ConfigError, ProtocolError
from .mgcp import DigitMap, DigitMapError, EndpointName
from .transaction import TransactionConfig

__all__ = [
    "Settings",
    "SwitchSettings",
    "GatewaySettings",
    "SimulatorSettings",
    "DemoSettings",
    "WebSettings",
    "load_settings",
    "parse_settings",
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

    def endpoint_name(self, local: str) -> str:
        return f"{local}@{self.name}"


@dataclass(frozen=True)
class SwitchSettings:
    interface: str = "127.0.0.1"
    port: int = 2727
    dynamic_gateways: bool = False
    keepalive_interval: float = 15.0
    no_answer_timeout: float = 60.0
    digit_map: str = DEFAULT_DIGIT_MAP
    dial_plan: str = "static"
    observers: tuple[str, ...] = ("cdr-sqlite",)
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    packetization: int = 20
    audit_concurrency: int = 16  # audits/RQNTs in flight per gateway after a restart
    ladder: bool = True  # keep each call's MGCP messages for the admin
    embedded_dial_tone: bool = False  # idle lines get dial tone from an embedded request
    ended_calls_kept: int = 100


@dataclass(frozen=True)
class SimulatorSettings:
    """Simulated gateways run inside the switch's process (C{[simulator]})."""

    gateways: tuple[str, ...] = ()
    media: bool = False
    rtp: bool = True


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
    simulator: SimulatorSettings = SimulatorSettings()
    demo: DemoSettings = DemoSettings()
    dialplan: Mapping[str, str] = field(default_factory=dict)  # pattern -> endpoint
    plugins: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    source: str = "<embedded defaults>"

    def gateway(self, name: str) -> GatewaySettings | None:
        for gateway in self.gateways:
            if gateway.name.lower() == name.lower():
                return gateway
        return None


# ---------------------------------------------------------------------------
# Value readers: each raises ConfigError naming the section and key.


def _bool(section: str, key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ConfigError((section, key), f"expected yes or no, not {text!r}")


def _int(section: str, key: str, text: str, low: int | None = None, high: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError((section, key), f"expected an integer, not {text!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError((section, key), f"{value} is out of range [{low}, {high}]")
    return value


def _float(section: str, key: str, text: str, low: float = 0.0) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError((section, key), f"expected a number of seconds, not {text!r}") from None
    if value < low:
        raise ConfigError((section, key), f"must be at least {low}")
    return value


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.replace("\n", ",").split(",") if item.strip())


def _port(section: str, key: str, text: str) -> int:
    return _int(section, key, text, 0, 65535)


def _digit_map(section: str, key: str, text: str) -> str:
    try:
        return str(DigitMap.parse(text.strip()))
    except DigitMapError as e:
        raise ConfigError((section, key), f"bad digit map: {e.reason}") from None


def _numbers(section: str, key: str, text: str) -> tuple[str, ...]:
    """C{1001-1008} or C{1001, 1002, 1005}."""
    out: list[str] = []
    for item in _list(text):
        low, dash, high = item.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ConfigError((section, key), f"bad number or range {item!r}")
        if dash:
            if len(low) != len(high) or int(high) < int(low):
                raise ConfigError((section, key), f"bad range {item!r}")
            out.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
        else:
            out.append(low)
    return tuple(out)


def _networks(section: str, key: str, text: str) -> tuple[Any, ...]:
    out = []
    for item in _list(text):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError((section, key), f"bad address or network {item!r}") from None
    return tuple(out)


def _is_endpoint(text: str) -> bool:
    try:
        EndpointName.parse(text)
    except ProtocolError:
        return False
    return True


def _known_keys(section: str, items: Mapping[str, str], known: set[str]) -> None:
    for key in items:
        if key not in known:
            raise ConfigError(
                (section, key), f"unknown key; known keys are: {', '.join(sorted(known))}"
            )


# ---------------------------------------------------------------------------


def _switch(items: Mapping[str, str]) -> SwitchSettings:
    s = "switch"
    readers: dict[str, Callable[[str, str, str], Any]] = {
        "interface": lambda s, k, v: v.strip(),
        "port": _port,
        "dynamic_gateways": _bool,
        "keepalive_interval": lambda s, k, v: _float(s, k, v, 0.0),
        "no_answer_timeout": lambda s, k, v: _float(s, k, v, 1.0),
        "digit_map": _digit_map,
        "dial_plan": lambda s, k, v: v.strip(),
        "observers": lambda s, k, v: _list(v),
        "codecs": lambda s, k, v: _list(v),
        "packetization": lambda s, k, v: _int(s, k, v, 1, 1000),
        "audit_concurrency": lambda s, k, v: _int(s, k, v, 1, 10000),
        "ladder": _bool,
        "embedded_dial_tone": _bool,
        "ended_calls_kept": lambda s, k, v: _int(s, k, v, 0, 1_000_000),
    }
    _known_keys(s, items, set(readers))
    return SwitchSettings(**{k: readers[k](s, k, v) for k, v in items.items()})


def _transactions(items: Mapping[str, str]) -> TransactionConfig:
    s = "transactions"
    kinds = {f.name: f.type for f in fields(TransactionConfig)}
    _known_keys(s, items, set(kinds))
    values: dict[str, Any] = {}
    for key, text in items.items():
        kind = str(kinds[key])
        if "bool" in kind:
            values[key] = _bool(s, key, text)
        elif "int" in kind and "float" not in kind:
            if "Optional" in kind and text.strip().lower() in ("", "none"):
                values[key] = None
            else:
                values[key] = _int(s, key, text, 0)
        else:
            if "Optional" in kind and text.strip().lower() in ("", "none"):
                values[key] = None
            else:
                values[key] = _float(s, key, text)
    try:
        return TransactionConfig(**values)
    except ValueError as e:
        raise ConfigError((s,), str(e)) from None


def _web(items: Mapping[str, str]) -> WebSettings:
    s = "web"
    _known_keys(s, items, {"listen", "users_file", "tokens", "realm"})
    values: dict[str, Any] = {}
    if "listen" in items:
        values["listen"] = items["listen"].strip()
    if "users_file" in items:
        values["users_file"] = items["users_file"].strip() or None
    if "tokens" in items:
        values["tokens"] = _list(items["tokens"])
    if "realm" in items:
        values["realm"] = items["realm"].strip()
    return check_web_settings(WebSettings(**values))


def check_web_settings(web: WebSettings) -> WebSettings:
    """Refuse an admin reachable beyond loopback without authentication."""
    if not web.auth_required and not _loopback_listen(web.listen):
        raise ConfigError(
            ("web", "listen"),
            f"{web.listen!r} is not on a loopback interface: configure users_file or tokens "
            "before exposing the admin",
        )
    return web


def _loopback_listen(description: str) -> bool:
    """Whether a strports description binds only a loopback address."""
    for part in re.split(r"(?<!\\):", description):  # a ":" in a value is escaped: interface=\:\:1
        if part.startswith("interface="):
            address = part.partition("=")[2].strip("[]").replace("\\", "")
            try:
                return ipaddress.ip_address(address).is_loopback
            except ValueError:
                return address == "localhost"
    return description.startswith("unix:")


def _gateway(name: str, items: Mapping[str, str], switch: SwitchSettings) -> GatewaySettings:
    s = f"gateway:{name}"
    known = {
        "address", "port", "allowed", "match_port", "lines", "endpoints", "numbers", "profile",
        "keepalive_interval", "digit_map",
    }
    _known_keys(s, items, known)
    if not name or not _is_endpoint(f"x@{name}"):
        raise ConfigError((s,), f"{name!r} is not a domain name")
    if "address" not in items:
        raise ConfigError((s, "address"), "missing: the gateway's IP address")
    address = items["address"].strip()
    try:
        ipaddress.ip_address(address)
    except ValueError:
        # Resolving a name would block the reactor (or need the resolver at
        # every send); an operator who has a name puts its address here.
        raise ConfigError((s, "address"), f"{address!r} is not an IP address") from None
    if "lines" in items and "endpoints" in items:
        raise ConfigError((s, "endpoints"), "give either lines or endpoints, not both")
    if "endpoints" in items:
        endpoints = _list(items["endpoints"])
        for local in endpoints:
            if not _is_endpoint(f"{local}@{name}") or "*" in local or "$" in local:
                raise ConfigError((s, "endpoints"), f"bad endpoint name {local!r}")
    else:
        lines = _int(s, "lines", items.get("lines", "8"), 1, 100_000)
        endpoints = tuple(f"aaln/{n}" for n in range(1, lines + 1))
    numbers = _numbers(s, "numbers", items["numbers"]) if "numbers" in items else ()
    if numbers and len(numbers) != len(endpoints):
        raise ConfigError(
            (s, "numbers"), f"{len(numbers)} numbers for {len(endpoints)} endpoints"
        )
    if "allowed" in items:
        allowed = _networks(s, "allowed", items["allowed"])
    else:
        allowed = (ipaddress.ip_network(address),)
    return GatewaySettings(
        name=name,
        address=address,
        port=_port(s, "port", items.get("port", "2427")),
        allowed=allowed,
        match_port=_bool(s, "match_port", items.get("match_port", "yes")),
        endpoints=endpoints,
        numbers=numbers,
        profile=items.get("profile", "default").strip(),
        keepalive_interval=(
            _float(s, "keepalive_interval", items["keepalive_interval"])
            if "keepalive_interval" in items else None
        ),
        digit_map=_digit_map(s, "digit_map", items["digit_map"]) if "digit_map" in items else None,
    )


def parse_settings(text: str, source: str = "<string>") -> Settings:
    """Read settings from INI text."""
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(text, source)
    except configparser.Error as e:
        raise ConfigError((source,), f"not a valid INI file: {e}") from None
    sections = {name: dict(parser.items(name)) for name in parser.sections()}
    switch = _switch(sections.pop("switch", {}))
    transactions = _transactions(sections.pop("transactions", {}))
    web = _web(sections.pop("web", {}))
    simulator_items = sections.pop("simulator", {})
    demo_items = sections.pop("demo", {})
    dialplan = sections.pop("dialplan", {})
    gateways = []
    plugins: dict[str, dict[str, str]] = {}
    for name, items in sections.items():
        kind, colon, rest = name.partition(":")
        if colon and kind == "gateway":
            gateways.append(_gateway(rest.strip(), items, switch))
        elif colon and kind == "plugin":
            plugins[rest.strip()] = items
        else:
            raise ConfigError(
                (name,),
                "unknown section; known: switch, transactions, web, simulator, demo, dialplan, "
                "gateway:NAME, plugin:NAME",
            )
    names = [g.name.lower() for g in gateways]
    for gateway in gateways:
        if names.count(gateway.name.lower()) > 1:
            raise ConfigError((f"gateway:{gateway.name}",), "configured twice")
    s = "simulator"
    _known_keys(s, simulator_items, {"gateways", "media", "rtp"})
    simulated = _list(simulator_items.get("gateways", ""))
    for name in simulated:
        if name.lower() not in names:
            raise ConfigError((s, "gateways"), f"no [gateway:{name}] section to simulate")
    simulator = SimulatorSettings(
        gateways=simulated,
        media=_bool(s, "media", simulator_items.get("media", "no")),
        rtp=_bool(s, "rtp", simulator_items.get("rtp", "yes")),
    )
    s = "demo"
    _known_keys(s, demo_items, {f.name for f in fields(DemoSettings)})
    demo = DemoSettings(**{
        k: (_float(s, k, v) if k != "unknown_number_share" else _share(s, k, v))
        for k, v in demo_items.items()
    })
    for pattern, target in dialplan.items():
        if pattern == "digit_map":
            continue
        if not _is_endpoint(target.strip()):
            raise ConfigError(("dialplan", pattern), f"{target!r} is not an endpoint name")
    return Settings(
        switch=switch,
        transactions=transactions,
        web=web,
        gateways=tuple(gateways),
        simulator=simulator,
        demo=demo,
        dialplan={k: v.strip() for k, v in dialplan.items()},
        plugins=plugins,
        source=source,
    )


def _share(section: str, key: str, text: str) -> float:
    value = _float(section, key, text)
    if value > 1:
        raise ConfigError((section, key), "must be between 0 and 1")
    return value


def load_settings(path: str | None) -> Settings:
    """Read the INI file at C{path}, or the embedded defaults when None."""
    if path is None:
        return parse_settings(DEFAULT_INI, "<embedded defaults>")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError((path,), f"cannot read the configuration: {e.strerror}") from None
    return parse_settings(text, path)
