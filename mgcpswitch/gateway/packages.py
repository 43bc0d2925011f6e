# -*- test-case-name: tests.test_gateway_packages -*-
"""
The event packages the simulated residential gateway implements, as data.

Every symbol of the line package L, the DTMF package D, the generic media
package G (RFC 3660 §2.4, §2.2, §2.1) and the base package B (RFC 3435
App. B) is one L{Symbol} row: whether it can be requested as an event,
whether it is an auditable event state, its signal type (on/off, time-out,
brief) with its default duration, whether it may be applied to a
connection, and the hook state it needs (the 401/402 preconditions of RFC
3660).  The endpoint reads these tables; it has no per-symbol branches
except for the few symbols with behaviour of their own (hook events,
digits, the inter-digit timer, caller id, ringing repetitions).

Sources: ../shared/spec/mgcp-digest.md §5.0-§5.3, which transcribes the
RFC 3660 tables.  Where the digest names no precondition the table has
none (C{L/ro}, C{L/ci}: see the module notes in L{PRECONDITION_NOTES}).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "SignalType",
    "Hook",
    "Symbol",
    "Package",
    "PACKAGES",
    "DEFAULT_PACKAGE",
    "PACKAGE_LIST",
    "DIGITS",
    "PRECONDITION_NOTES",
    "lookup",
]


class SignalType(enum.Enum):
    """Signal types of RFC 3435 §2.1.7 (never sent on the wire)."""

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    ON_OFF = "OO"
    TIME_OUT = "TO"
    BRIEF = "BR"


class Hook(enum.Enum):
    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    ON = "on"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Symbol:
    """
    One row of a package table.

    @ivar event: requestable as an event (R column x, S or C).
    @ivar state: an auditable event state (R column S), reported in C{ES:}.
    @ivar on_connection: the event can be detected on a connection (C).
    @ivar signal: the signal type, or None when it is not a signal.
    @ivar signal_on_connection: the signal may be applied to a connection.
    @ivar duration: default time-out of a TO signal in seconds (0: infinite),
        or how long a BR signal plays (the simulator's choice).
    @ivar signal_hook: the hook state the signal needs on the endpoint
        (L{Hook.ON}: 401 when off-hook; L{Hook.OFF}: 402 when on-hook).
    @ivar event_hook: the hook state in which the event may be requested
        (C{hd} needs on-hook, else 401; C{hu}/C{hf} need off-hook, else 402).
    @ivar params: C{"none"}, C{"optional"} or C{"required"} signal
        parameters besides C{to=} (538 otherwise).
    """

    name: str
    event: bool = False
    state: bool = False
    on_connection: bool = False
    signal: SignalType | None = None
    signal_on_connection: bool = False
    duration: float = 0.0
    signal_hook: Hook | None = None
    event_hook: Hook | None = None
    params: str = "none"


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    version: int
    symbols: Mapping[str, Symbol]

    def __contains__(self, name: object) -> bool:
        return name in self.symbols

    def get(self, name: str) -> Symbol | None:
        return self.symbols.get(name)


def _package(name: str, version: int, *symbols: Symbol) -> Package:
    return Package(name, version, MappingProxyType({s.name: s for s in symbols}))


TO, OO, BR = SignalType.TIME_OUT, SignalType.ON_OFF, SignalType.BRIEF
ON, OFF = Hook.ON, Hook.OFF

#: DTMF symbols, as events and as brief signals (RFC 3660 §2.2).
DIGITS = "0123456789*#ABCD"

_OPERATION = (Symbol("oc", event=True), Symbol("of", event=True))

# RFC 3660 §2.4 (digest §5.3).  Ringing cadence: 2 s on, 4 s off, so
# rep=n lasts 6n seconds.
_L = _package(
    "L", 1,
    Symbol("adsi", signal=BR, duration=0.5, params="required"),
    Symbol("aw", event=True, signal=OO),
    Symbol("bz", signal=TO, duration=30.0, signal_hook=OFF),
    Symbol("ci", signal=BR, duration=0.5, params="required"),
    Symbol("dl", signal=TO, duration=16.0, signal_hook=OFF),
    Symbol("E", event=True, signal=TO, duration=2.0),
    Symbol("hd", event=True, state=True, event_hook=ON),
    Symbol("hf", event=True, event_hook=OFF),
    Symbol("ht", signal=OO),
    Symbol("hu", event=True, state=True, event_hook=OFF),
    Symbol("lsa", signal=OO),
    Symbol("mwi", signal=TO, duration=16.0, signal_hook=OFF),
    Symbol("nbz", event=True, signal=TO, duration=0.0),
    *_OPERATION,
    Symbol("osi", signal=TO, duration=0.9),
    Symbol("ot", signal=TO, duration=0.0, signal_hook=OFF),
    Symbol("P", event=True, signal=BR, duration=0.3),
    Symbol("rg", signal=TO, duration=180.0, signal_hook=ON, params="optional"),
    *(Symbol(f"r{i}", signal=TO, duration=180.0, signal_hook=ON, params="optional") for i in range(8)),
    Symbol("ro", signal=TO, duration=30.0),
    Symbol("rs", signal=BR, duration=0.5),
    Symbol("S", event=True, signal=BR, duration=0.5, params="required"),
    Symbol("sit", signal=TO, duration=2.0, params="optional"),
    Symbol("sl", signal=TO, duration=16.0, signal_hook=OFF, params="optional"),
    Symbol("V", signal=OO),
    Symbol("vmwi", signal=OO),
    *(Symbol(w, signal=TO, duration=12.0, signal_hook=OFF) for w in ("wt", "wt1", "wt2", "wt3", "wt4")),
    Symbol("Y", signal=TO, duration=0.0),
    Symbol("Z", signal=BR, duration=0.5),
)

# RFC 3660 §2.2 (digest §5.2).
_D = _package(
    "D", 1,
    *(Symbol(d, event=True, signal=BR, duration=0.1, signal_hook=OFF) for d in DIGITS),
    Symbol("dd", event=True, signal=TO, duration=3.0, params="optional"),
    Symbol("do", signal=OO, params="required"),
    Symbol("L", event=True),
    *_OPERATION,
    Symbol("T", event=True, signal=TO, duration=16.0),
    Symbol("X", event=True),
)

# RFC 3660 §2.1 (digest §5.1).
_G = _package(
    "G", 1,
    Symbol("cf", signal=BR, duration=0.5, signal_hook=OFF),
    Symbol("cg", signal=TO, duration=0.0),
    Symbol("ft", event=True),
    Symbol("it", signal=TO, duration=0.0),
    Symbol("ld", event=True, on_connection=True),
    Symbol("mt", event=True),
    *_OPERATION,
    Symbol("pat", event=True, signal=OO, params="required"),
    Symbol("pt", signal=TO, duration=0.0),
    Symbol("rbk", signal=TO, duration=180.0, params="required"),
    Symbol("rt", signal=TO, signal_on_connection=True, duration=180.0, signal_hook=OFF),
)

# RFC 3435 App. B (digest §5.0).
_B = _package(
    "B", 0,
    Symbol("enf", event=True),
    Symbol("oef", event=True),
    Symbol("qbo", event=True),
)

PACKAGES: Mapping[str, Package] = MappingProxyType({p.name: p for p in (_L, _D, _G, _B)})
DEFAULT_PACKAGE = "L"
#: C{PL:} of audits and 518 responses: the default package first.
PACKAGE_LIST: tuple[tuple[str, int], ...] = tuple((p.name, p.version) for p in (_L, _D, _G, _B))

#: Names without a package prefix are looked up in these, in order: the
#: default package (RFC 3435 §2.1.6), then D, for call agents that write
#: C{[0-9#*T](D)}.
_UNPREFIXED = (_L, _D)

#: Symbol names are stored in the canonical case of L{EventName}: one
#: character names (C{L/E}, C{L/P}, C{D/T}) upper-case, the rest lower-case.

PRECONDITION_NOTES = """
The digest's tables (RFC 3660) name no precondition for L/ro and L/ci, so
none is enforced: a reorder tone may be applied on-hook, and caller id may
be sent off-hook (type 2, with call waiting).
"""


def lookup(package: str | None, name: str) -> tuple[Package, Symbol] | None:
    """The package and row of C{package/name} (package None: unprefixed)."""
    if package is None:
        for candidate in _UNPREFIXED:
            symbol = candidate.symbols.get(name)
            if symbol is not None:
                return candidate, symbol
        return None
    found = PACKAGES.get(package)
    if found is None:
        return None
    symbol = found.symbols.get(name)
    return None if symbol is None else (found, symbol)
