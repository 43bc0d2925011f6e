# -*- test-case-name: tests.test_gateway_packages -*-
"""
Validation of notification requests against the package tables: requested
events (C{R:}, C{B/PR:}, embedded C{R(..)}), detect events (C{T:}) and
signals (C{S:}), compiled once into small matchers and signal plans.

Everything here only reads: an RQNT is checked completely before anything
is applied, so that a failing request leaves the endpoint exactly as it was
(RFC 3435 §4.4.2, digest §4.7).  Return codes (RFC 3435 §2.3.3, RFC 3661):
518 unknown package, 522 no such event or signal, 523 bad action, 538 bad
parameter, 515 unknown connection, 527 signal on a connection without a
remote descriptor, 401/402 hook preconditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from ..mgcp import (
    Action,
    EmbeddedRequest,
    Event,
    EventName,
    ExtensionAction,
    RemoteProtocolError,
    RequestedEvent,
    SignalRequest,
)
from .packages import DIGITS, PACKAGES, Hook, SignalType, Symbol, lookup

__all__ = [
    "Matcher",
    "compile_requested",
    "compile_detect",
    "PlannedSignal",
    "check_signal",
    "expand_dollar",
    "hook_error",
    "check_embedded",
    "first_match",
]

_ANY_DIGIT = frozenset("0123456789")


def hook_error(needed: Hook, hook: Hook, what: str) -> RemoteProtocolError | None:
    """401 (already off-hook) or 402 (already on-hook) when the hook is wrong."""
    if needed is hook:
        return None
    if hook is Hook.OFF:
        return RemoteProtocolError(401, f"{what}: phone already off-hook")
    return RemoteProtocolError(402, f"{what}: phone already on-hook")


@dataclass(frozen=True, slots=True)
class Matcher:
    """
    A compiled event pattern: the packages and names it covers (None:
    any) and its connection part (None: an endpoint event, C{"*"}: any
    connection, else a connection id).  C{request} carries the actions.
    """

    packages: frozenset[str] | None
    names: frozenset[str] | None
    connection: str | None
    request: RequestedEvent

    def matches(self, package: str, name: str, connection: str | None) -> bool:
        if self.packages is not None and package not in self.packages:
            return False
        if self.names is not None and name not in self.names:
            return False
        if self.connection is None:
            return connection is None
        return connection is not None and (self.connection == "*" or self.connection == connection)


def first_match(
    matchers: tuple[Matcher, ...], package: str, name: str, connection: str | None
) -> Matcher | None:
    for matcher in matchers:
        if matcher.matches(package, name, connection):
            return matcher
    return None


def _unknown(package: str | None, name: str) -> RemoteProtocolError:
    if package is not None and package != "*" and package not in PACKAGES:
        return RemoteProtocolError(518, f"unsupported package {package}")
    label = name if package is None else f"{package}/{name}"
    return RemoteProtocolError(522, f"no such event or signal {label}")


def _range_symbols(text: str) -> frozenset[str]:
    """C{[0-9#*T]} (canonical, upper-case) as the set of symbols it covers."""
    body = text[1:-1]
    out: set[str] = set()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "X":
            out |= _ANY_DIGIT
        elif ch.isdigit() and i + 2 < len(body) and body[i + 1] == "-" and body[i + 2].isdigit():
            if body[i + 2] < ch:
                raise RemoteProtocolError(522, f"empty range in {text}")
            out.update(str(d) for d in range(int(ch), int(body[i + 2]) + 1))
            i += 2
        elif ch in DIGITS or ch == "T":
            out.add(ch)
        else:
            raise RemoteProtocolError(522, f"bad symbol {ch!r} in event range {text}")
        i += 1
    return frozenset(out)


@lru_cache(maxsize=1024)
def _event_pattern(name: EventName) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """
    The packages and names an event name covers, checked against the
    package tables.  C{pkg/all}, C{*/name}, C{D/[0-9#]}, C{D/X} and the
    unprefixed names of the default package are understood.
    """
    package = name.package
    event = name.name
    if event == "all":
        if package is None:
            package = "L"
        if package == "*":
            return None, None
        if package not in PACKAGES:
            raise _unknown(package, event)
        return frozenset((package,)), None
    if event.startswith("["):
        if package not in (None, "D"):
            raise _unknown(package, event)
        return frozenset(("D",)), _range_symbols(event)
    if package == "*":
        owners = frozenset(p.name for p in PACKAGES.values() if (s := p.get(event)) and s.event)
        if not owners:
            raise RemoteProtocolError(522, f"no package has an event {event}")
        return owners, frozenset((event,))
    found = lookup(package, event)
    if found is None or not found[1].event:
        raise _unknown(package, event)
    pkg, _ = found
    if pkg.name == "D" and event == "X":
        return frozenset(("D",)), _ANY_DIGIT
    return frozenset((pkg.name,)), frozenset((event,))


def _check_connection(conn: str | None, connections: Mapping[str, bool], what: str) -> None:
    if conn is None or conn == "*":
        return
    if conn == "$":
        raise RemoteProtocolError(515, f"{what}: @$ only names the connection of a CRCX or MDCX")
    if conn not in connections:
        raise RemoteProtocolError(515, f"{what}: no connection {conn}")


def compile_requested(
    requested: tuple[RequestedEvent, ...],
    connections: Mapping[str, bool],
    hook: Hook | None,
    has_digit_map: bool,
) -> tuple[Matcher, ...]:
    """
    Check C{R:} (or C{B/PR:}) and compile it.  C{hook} is the current
    hook state for the explicit-detection preconditions (None: skip them,
    as for embedded requests and persistent events).

    @raise RemoteProtocolError: see the module docstring; 519 for a C{D}
        action without a digit map.
    """
    out = []
    for item in requested:
        name = item.name
        packages, names = _event_pattern(name)
        _check_connection(name.connection, connections, str(name))
        for action in item.actions:
            if isinstance(action, ExtensionAction):
                raise RemoteProtocolError(518, f"unsupported extension action {action}")
            if isinstance(action, EmbeddedRequest):
                check_embedded(action, connections, has_digit_map)
            elif action is Action.ACCUMULATE_DIGIT_MAP:
                if packages != frozenset(("D",)) or (names is not None and not names <= _DIGIT_MAP_EVENTS):
                    raise RemoteProtocolError(523, f"the D action needs digits or D/T, not {name}")
                if not has_digit_map:
                    raise RemoteProtocolError(519, "no digit map for the D action")
        if hook is not None and names is not None and len(names) == 1 and packages is not None:
            found = lookup(next(iter(packages)), next(iter(names)))
            if found is not None and found[1].event_hook is not None:
                error = hook_error(found[1].event_hook, hook, f"requesting {name}")
                if error is not None:
                    raise error
        out.append((packages, names, name.connection, item))
    # What was checked depends on the line; what is compiled only on the
    # request: lines armed with the same (interned) request share one
    # tuple of matchers, instead of each holding its own for the garbage
    # collector to scan.
    hit = _COMPILED.get(id(requested))
    if hit is not None and hit[0] is requested:
        return hit[1]
    matchers = tuple(Matcher(*fields) for fields in out)
    if len(_COMPILED) >= 1024:
        _COMPILED.clear()
    _COMPILED[id(requested)] = (requested, matchers)
    return matchers


# id(request) -> (request, its matchers); the entry holds the request, so
# its id is not reused while the entry lives.
_COMPILED: dict[int, tuple[tuple[RequestedEvent, ...], tuple[Matcher, ...]]] = {}


_DIGIT_MAP_EVENTS = frozenset(DIGITS) | {"T"}


def compile_detect(events: tuple[Event, ...], connections: Mapping[str, bool]) -> tuple[Matcher, ...]:
    """Check C{T:} and compile it (the events are quarantined, never acted on)."""
    out = []
    for event in events:
        packages, names = _event_pattern(event.name)
        _check_connection(event.name.connection, connections, str(event.name))
        out.append(Matcher(packages, names, event.name.connection, RequestedEvent(event.name, (Action.IGNORE,))))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PlannedSignal:
    """A signal checked and ready to apply."""

    request: SignalRequest
    symbol: Symbol
    key: EventName  # canonical name without parameters, with @connection
    duration: float  # TO: seconds (0: infinite); BR: play time
    turn_off: bool = False  # OO: "(-)"


def _milliseconds(text: str, what: str) -> float:
    if not text.isdigit() or len(text) > 9:
        raise RemoteProtocolError(538, f"bad {what} value {text!r}")
    return int(text) / 1000.0


def _signal_params(signal: SignalRequest, symbol: Symbol) -> tuple[float, bool]:
    """The duration a C{to=}/C{rep=} parameter asks for, and an OO "off"."""
    duration = symbol.duration
    turn_off = False
    others = []
    for param in signal.params:
        key, eq, value = param.partition("=")
        if not eq and param.endswith(")") and "(" in param:
            key, _, value = param[:-1].partition("(")
            eq = "="
        key = key.strip().lower()
        if eq and key == "to":
            if symbol.signal is not SignalType.TIME_OUT:
                raise RemoteProtocolError(538, f"to= only applies to time-out signals, not {signal.name}")
            duration = _milliseconds(value.strip(), "to")
        elif eq and key == "rep" and symbol.name in _RINGING:
            reps = value.strip()
            if not reps.isdigit() or not 1 <= int(reps) <= 255:
                raise RemoteProtocolError(538, f"bad rep value {reps!r}")
            others.append(param)
        elif param in ("+", "-") and symbol.signal is SignalType.ON_OFF:
            turn_off = param == "-"
        else:
            others.append(param)
    if symbol.params == "none" and others:
        raise RemoteProtocolError(538, f"{signal.name} takes no parameters")
    if symbol.params == "required" and not others:
        raise RemoteProtocolError(538, f"{signal.name} needs parameters")
    if symbol.name == "ci" and len(signal.params) != 3:
        raise RemoteProtocolError(538, "L/ci takes time, number and name")
    for param in signal.params:
        if param.lower().startswith("rep=") and symbol.name in _RINGING:
            duration = 6.0 * int(param[4:])  # 2 s on, 4 s off; rep overrides to (RFC 3660 §2.4)
    return duration, turn_off


_RINGING = frozenset(["rg"] + [f"r{i}" for i in range(8)])


def check_signal(
    signal: SignalRequest, connections: Mapping[str, bool], hook: Hook | None
) -> PlannedSignal:
    """
    Check one signal against the tables, the connections (C{True}: has a
    remote descriptor) and the hook state (None: no precondition check).
    """
    name = signal.name
    package, event, conn = name.package, name.name, name.connection
    found = lookup(package, event)
    if found is None or found[1].signal is None:
        raise _unknown(package, event)
    pkg, symbol = found
    if conn is not None:
        if not symbol.signal_on_connection:
            raise RemoteProtocolError(522, f"{pkg.name}/{event} cannot be applied to a connection")
        _check_connection(conn, connections, str(name))
        if conn == "*":
            if not all(connections.values()):
                raise RemoteProtocolError(527, f"{name}: a connection has no remote descriptor")
        elif not connections[conn]:
            raise RemoteProtocolError(527, f"{name}: the connection has no remote descriptor")
    elif hook is not None and symbol.signal_hook is not None:
        error = hook_error(symbol.signal_hook, hook, f"signal {name}")
        if error is not None:
            raise error
    duration, turn_off = _signal_params(signal, symbol)
    key = EventName.create(pkg.name, event, conn)
    return PlannedSignal(signal, symbol, key, duration, turn_off)


def check_embedded(embedded: EmbeddedRequest, connections: Mapping[str, bool], has_map: bool) -> None:
    """Syntax and tables of an embedded request; preconditions wait for its activation."""
    compile_requested(embedded.requested_events, connections, None, has_map or embedded.digit_map is not None)
    for signal in embedded.signal_requests:
        check_signal(signal, connections, None)


def _expand_name(name: EventName, dollar: str) -> EventName:
    if name.connection != "$":
        return name
    return EventName.create(name.package, name.name, dollar)


def expand_dollar(
    requested: tuple[RequestedEvent, ...], signals: tuple[SignalRequest, ...], dollar: str
) -> tuple[tuple[RequestedEvent, ...], tuple[SignalRequest, ...]]:
    """
    Replace C{@$} by the connection being created or modified (§2.1.7),
    once.  What holds no C{@$} is returned as it came: the same (interned)
    values, so compiled requests are shared across lines.
    """
    return _expand_events(requested, dollar), _expand_signals(signals, dollar)


def _expand_events(items: tuple[RequestedEvent, ...], dollar: str) -> tuple[RequestedEvent, ...]:
    out = []
    for item in items:
        actions = tuple(
            _expand_embedded(a, dollar) if isinstance(a, EmbeddedRequest) else a for a in item.actions
        )
        name = _expand_name(item.name, dollar)
        if name is item.name and all(a is b for a, b in zip(actions, item.actions)):
            out.append(item)
        else:
            out.append(RequestedEvent(name, actions, item.params))
    return items if all(a is b for a, b in zip(out, items)) else tuple(out)


def _expand_embedded(embedded: EmbeddedRequest, dollar: str) -> EmbeddedRequest:
    requested = _expand_events(embedded.requested_events, dollar)
    signals = _expand_signals(embedded.signal_requests, dollar)
    if requested is embedded.requested_events and signals is embedded.signal_requests:
        return embedded
    return EmbeddedRequest(requested, signals, embedded.digit_map)


def _expand_signals(items: tuple[SignalRequest, ...], dollar: str) -> tuple[SignalRequest, ...]:
    if all(s.name.connection != "$" for s in items):
        return items
    return tuple(SignalRequest(_expand_name(s.name, dollar), s.params) for s in items)
