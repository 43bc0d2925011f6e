# -*- test-case-name: tests.test_digitmap -*-
"""
MGCP digit maps: compile the ``D:`` parameter once, then match dial strings.

Why this module exists
----------------------
A call agent pushes a digit map to a gateway in a NotificationRequest so
that the gateway can collect a whole dialled number locally and report it in
one Notify, instead of one datagram per key press (RFC 3435 §2.1.5).  Both
roles of mgcpswitch need the same engine: the simulated gateway collects
digits against the map it was given, and the call agent validates the maps it
is configured with before sending them.  A map is parsed once, at the edge,
into a :class:`DigitMap` value; :meth:`DigitMap.match` is then called after
every detected digit, so it is kept cheap.

What a digit map is (RFC 3435 §2.1.5 and App. A, RFC 3660 §2.2)
----------------------------------------------------------------
A map is one digit string, or a parenthesised list of alternatives separated
by ``|``.  Each alternative is a sequence of *positions*, each optionally
followed by ``.`` ("zero or more repetitions of the preceding position"):

* ``0``-``9``, ``#``, ``*``, ``A``-``D``: that symbol;
* ``T``: the inter-digit timer expired;
* ``x``: any digit ``0``-``9``;
* ``[...]``: one symbol of a set; inside the brackets ``d-d`` is a digit
  range and ``x`` stands for ``0``-``9``;
* extension letters ``E``-``Z`` (except ``T`` and ``X``): optional in the
  RFC; we accept them as plain literal symbols.

Matching is an NFA simulation (one bit per position of every alternative,
held in one Python ``int``) with a small lazily filled transition cache, so
that a typical ``match`` call costs a handful of dictionary look-ups; no
string is ever generated from the map.

Decisions on the edges of the RFC, all pinned by tests
------------------------------------------------------
* Canonical text: ASCII letters upper-case except ``x``, which is written
  lower-case as in the RFC examples; all whitespace (space, tab, CR, LF)
  dropped; parentheses kept exactly when they were given; ranges kept as
  written (``[2-3T]`` is not rewritten as ``[23T]``).  Maps that differ only in
  case or whitespace therefore compare equal, and ``parse(str(m)) == m``.
* Errors carry the MGCP return code to answer with: ``537`` (unknown or
  unsupported digit map extension, RFC 3661) for a character that is not a
  digit map letter at all (``%``, ``!``, non-ASCII, ...); ``510`` (protocol
  error) for everything structural: empty map, empty alternative, unbalanced
  or nested parentheses, several alternatives without parentheses, ``.`` with
  nothing to repeat or doubled, ``-`` outside brackets, bad or empty ranges,
  maps longer than 4096 characters.  The first error from the left wins.
* The dial string is matched as given, with no memory of earlier calls:
  ``match("00")`` against ``(0[12].|00)`` is COMPLETE even though a gateway
  would already have notified on ``0``.  An alternative made only of ``.``
  positions (``x.``) matches the empty dial string.  A dial string symbol
  that is not a digit map symbol (``X``, ``!``) can never match, so it gives
  NO_MATCH rather than an exception: dial strings come from the line, not
  from a peer's syntax.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType

__all__ = [
    "DigitMap",
    "DigitMapError",
    "InterDigitTimer",
    "MatchResult",
    "MatchStatus",
]

#: MGCP return code for a map that breaks the grammar (RFC 3435 §2.4).
_PROTOCOL_ERROR = 510
#: MGCP return code for an unknown or unsupported digit map letter
#: (RFC 3435 §2.1.5, RFC 3661 §2.3).
_UNSUPPORTED_EXTENSION = 537

#: Longest map text accepted.  RFC 3435 §2.1.5 asks gateways to hold at
#: least 2048 bytes per endpoint; twice that bounds the work one ``D:``
#: parameter can cause.
_MAX_MAP_LENGTH = 4096

_DIGITS = "0123456789"
_DTMF_LETTERS = "#*ABCD"
_TIMER = "T"
_WILDCARD = "x"
_EXTENSION_LETTERS = "EFGHIJKLMNOPQRSUVWYZ"
#: Every symbol a dial string may contain (upper-case form).
_SYMBOLS = _DIGITS + _DTMF_LETTERS + _TIMER + _EXTENSION_LETTERS
#: Every letter a map may contain outside the structural characters.
_MAP_LETTERS = frozenset(_SYMBOLS + _WILDCARD)

_WHITESPACE = " \t\r\n"
#: Canonical case in one ``str.translate``: ASCII only, so that no Unicode
#: case mapping can change the length of the text (``"ß".upper() == "SS"``),
#: and ``X`` written lower-case as in the RFC examples.
_CANONICAL_CASE = str.maketrans(
    {
        **{chr(c): chr(c - 32) for c in range(ord("a"), ord("z") + 1)},
        "X": _WILDCARD,
        _WILDCARD: _WILDCARD,
        **{ws: None for ws in _WHITESPACE},
    }
)


class DigitMapError(ValueError):
    """
    Raised by :meth:`DigitMap.parse` for a map that cannot be compiled.

    It carries the MGCP return code the receiver of the map should answer
    with, so the command handler can build its error response without
    re-diagnosing the map: ``537`` for an unknown or unsupported letter,
    ``510`` for a grammar error.
    """

    code: int
    reason: str

    def __init__(self, code: int, reason: str) -> None:
        # Pass both to ValueError so the exception pickles and copies.
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code} {self.reason}"


class MatchStatus(enum.Enum):
    """
    What the gateway should do with the dial string collected so far.

    The RFC's loop notifies on an exact match *or* an impossible match and
    keeps collecting otherwise, so these three outcomes are all a caller
    needs.
    """

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    #: Some alternative matches the dial string exactly: notify now.
    COMPLETE = "complete"
    #: Nothing matches yet, but more symbols could still make a match: keep
    #: collecting.
    PARTIAL = "partial"
    #: No alternative can ever match (the RFC's "impossible match", e.g. an
    #: unexpected ``T``): notify now.
    NO_MATCH = "no-match"


class InterDigitTimer(enum.Enum):
    """
    Which inter-digit timer a collecting endpoint should arm (RFC 3660 §2.2).

    The values name the RFC's timers; their durations are configuration, not
    protocol, so they are not held here.
    """

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    #: The status is not PARTIAL: collection is over, no timer.
    NONE = "none"
    #: T-partial (16 s by default): more symbols are needed.
    LONG = "partial"
    #: T-critical (4 s by default): the timer symbol ``T`` alone would
    #: complete a match, so a short pause ends the number.
    SHORT = "critical"


@dataclass(frozen=True, slots=True)
class MatchResult:
    """
    The outcome of matching one dial string: a status and the timer to arm.

    The timer is :attr:`InterDigitTimer.NONE` exactly when the status is not
    PARTIAL; construction refuses any other combination so that a caller can
    rely on it.
    """

    status: MatchStatus
    timer: InterDigitTimer

    def __post_init__(self) -> None:
        partial = self.status is MatchStatus.PARTIAL
        if partial == (self.timer is InterDigitTimer.NONE):
            raise ValueError(f"{self.status} cannot go with {self.timer}")


# The only four results there are; ``match`` returns these shared values
# instead of allocating one per call.
_COMPLETE = MatchResult(MatchStatus.COMPLETE, InterDigitTimer.NONE)
_NO_MATCH = MatchResult(MatchStatus.NO_MATCH, InterDigitTimer.NONE)
_PARTIAL_LONG = MatchResult(MatchStatus.PARTIAL, InterDigitTimer.LONG)
_PARTIAL_SHORT = MatchResult(MatchStatus.PARTIAL, InterDigitTimer.SHORT)


@dataclass(frozen=True, slots=True)
class _Element:
    """
    One position of an alternative: the symbols it accepts, and whether a
    trailing ``.`` lets it repeat zero or more times.
    """

    symbols: frozenset[str]
    repeat: bool


#: Entries kept in one automaton's transition cache.  Normal maps reach a few
#: dozen states; the cap only stops a hostile map from growing it for ever.
_TRANSITION_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True, eq=False)
class _Automaton:
    """
    The compiled form of a map: every alternative laid out in one bit set.

    Alternative *k* with *n* elements owns bits ``offset .. offset + n``; bit
    ``offset + i`` set means "element *i* is the next to match", and bit
    ``offset + n`` is that alternative's accepting bit.  The accepting bits
    carry no symbols, so a shift never carries a state from one alternative
    into the next.  A state is always epsilon-closed: whenever a repeatable
    element's bit is set, so is the bit after it.
    """

    #: The per-alternative element tables the bit masks were built from;
    #: kept so that a debugger (or a reader of ``repr``) sees the map as
    #: compiled, not only as bits.
    alternatives: tuple[tuple[_Element, ...], ...]
    #: Closed start state.
    start: int
    #: Union of the accepting bits.
    accept: int
    #: Bits of the repeatable (``.``) elements, for the epsilon closure.
    skippable: int
    #: For each dial string symbol, in both cases: the bits of the
    #: non-repeatable elements that accept it, and of the repeatable ones.
    masks: Mapping[str, tuple[int, int]]
    #: Lazily filled ``(state, symbol) -> state`` table; mutable on purpose,
    #: private, and excluded from comparison like the automaton itself.
    transitions: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, alternatives: tuple[tuple[_Element, ...], ...]) -> _Automaton:
        """Lay the alternatives out in one bit set and precompute the masks."""
        start = accept = skippable = 0
        step: dict[str, tuple[int, int]] = {s: (0, 0) for s in _SYMBOLS}
        offset = 0
        for elements in alternatives:
            start |= 1 << offset
            for index, element in enumerate(elements):
                bit = 1 << (offset + index)
                if element.repeat:
                    skippable |= bit
                for symbol in element.symbols:
                    once, repeated = step[symbol]
                    if element.repeat:
                        step[symbol] = (once, repeated | bit)
                    else:
                        step[symbol] = (once | bit, repeated)
            accept |= 1 << (offset + len(elements))
            offset += len(elements) + 1
        masks = dict(step)
        masks.update({s.lower(): m for s, m in step.items() if s.isalpha()})
        return cls(
            alternatives=alternatives,
            start=_close(start, skippable),
            accept=accept,
            skippable=skippable,
            masks=MappingProxyType(masks),
        )

    def _advance(self, state: int, symbol: str) -> int:
        """
        Consume one dial string symbol from a closed state, and remember it.

        A non-repeatable element moves its bit one place on; a repeatable one
        stays where it is (it may match again) and the closure re-adds the
        skip past it.  Called only on a miss of the transition table.
        """
        once, repeated = self.masks.get(symbol, (0, 0))
        following = _close(((state & once) << 1) | (state & repeated), self.skippable)
        if len(self.transitions) < _TRANSITION_CACHE_LIMIT:
            self.transitions[(state, symbol)] = following
        return following

    def match(self, dial_string: str) -> MatchResult:
        """Run the dial string through the automaton and classify the end."""
        state = self.start
        transitions = self.transitions
        for symbol in dial_string:
            following = transitions.get((state, symbol))
            if following is None:
                following = self._advance(state, symbol)
            state = following
            if not state:
                return _NO_MATCH
        if state & self.accept:
            return _COMPLETE
        after_timer = transitions.get((state, _TIMER))
        if after_timer is None:
            after_timer = self._advance(state, _TIMER)
        if after_timer & self.accept:
            return _PARTIAL_SHORT
        return _PARTIAL_LONG


def _close(state: int, skippable: int) -> int:
    """
    Epsilon closure: a repeatable element may be skipped (zero repetitions),
    so its set bit also sets the next one; chains of ``.`` elements need one
    round each.
    """
    while True:
        closed = state | ((state & skippable) << 1)
        if closed == state:
            return state
        state = closed


class _Parser:
    """
    A recursive-descent reader of one canonical map text.

    Kept as a tiny class so that the position and error reporting live in one
    place; it is only ever used by :func:`_compile`.
    """

    __slots__ = ("_text", "_pos")

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _fail(self, reason: str, code: int = _PROTOCOL_ERROR) -> DigitMapError:
        # The offset counts in the canonical (whitespace-free) text; the
        # snippet is short and ASCII-only so the reason can go into a log
        # line or a response's commentary as it is.
        snippet = ascii(self._text[self._pos : self._pos + 16])
        return DigitMapError(code, f"{reason} at offset {self._pos} ({snippet})")

    def _unknown(self, char: str) -> DigitMapError:
        return self._fail(f"unknown digit map letter {ascii(char)}", _UNSUPPORTED_EXTENSION)

    def parse_map(self) -> tuple[tuple[_Element, ...], ...]:
        """``DigitMap = DigitString / "(" DigitStringList ")"``."""
        if not self._text:
            raise self._fail("empty digit map")
        alternatives: tuple[tuple[_Element, ...], ...]
        if self._peek() != "(":
            alternatives = (self._parse_string(),)
            if self._peek() == "|":
                raise self._fail("several alternatives need parentheses")
        else:
            self._pos += 1
            found = [self._parse_string()]
            while self._peek() == "|":
                self._pos += 1
                found.append(self._parse_string())
            if self._peek() != ")":
                raise self._fail("missing ')'")
            self._pos += 1
            alternatives = tuple(found)
        if self._pos != len(self._text):
            raise self._fail(f"unexpected {self._peek()!r} after the map")
        return alternatives

    def _parse_string(self) -> tuple[_Element, ...]:
        """``DigitString = 1*(DigitPosition ["."])``, up to ``|``, ``)`` or the end."""
        elements: list[_Element] = []
        while True:
            char = self._peek()
            if char in ("", "|", ")"):
                break
            if char == "[":
                symbols = self._parse_range()
            elif char in _MAP_LETTERS:
                symbols = frozenset(_DIGITS) if char == _WILDCARD else frozenset(char)
                self._pos += 1
            elif char == ".":
                if elements:
                    raise self._fail("'.' may follow a position only once")
                raise self._fail("'.' with nothing before it")
            elif char == "(":
                raise self._fail("nested '('")
            elif char == "]":
                raise self._fail("']' without '['")
            elif char == "-":
                raise self._fail("'-' outside a range")
            else:
                raise self._unknown(char)
            repeat = self._peek() == "."
            if repeat:
                self._pos += 1
            elements.append(_Element(symbols, repeat))
        if not elements:
            raise self._fail("empty alternative")
        return tuple(elements)

    def _parse_range(self) -> frozenset[str]:
        """``"[" 1*(DIGIT "-" DIGIT / DigitMapLetter) "]"``; ``x`` is ``0-9``."""
        self._pos += 1
        symbols: set[str] = set()
        while True:
            char = self._peek()
            if char == "]":
                self._pos += 1
                break
            if char == "":
                raise self._fail("missing ']'")
            if char == "-":
                raise self._fail("'-' must join two digits")
            if char in "[]().|":
                raise self._fail(f"{char!r} inside a range")
            if char not in _MAP_LETTERS:
                raise self._unknown(char)
            self._pos += 1
            if char == _WILDCARD:
                symbols.update(_DIGITS)
            elif char in _DIGITS and self._peek() == "-":
                self._pos += 1
                high = self._peek()
                if high == "" or high not in _DIGITS:
                    raise self._fail("'-' must join two digits")
                if high < char:
                    raise self._fail(f"empty range {char}-{high}")
                self._pos += 1
                symbols.update(_DIGITS[int(char) : int(high) + 1])
            else:
                symbols.add(char)
        if not symbols:
            raise self._fail("empty range '[]'")
        return frozenset(symbols)


@lru_cache(maxsize=256)
def _compile(text: str) -> tuple[str, _Automaton]:
    """
    Canonicalise and compile one map text.

    Cached because a call agent sends the same few maps in every RQNT; the
    bound keeps a stream of distinct maps from a peer from growing memory.
    Errors are not cached (``lru_cache`` does not cache exceptions).
    """
    if len(text) > _MAX_MAP_LENGTH:
        raise DigitMapError(
            _PROTOCOL_ERROR,
            f"digit map of {len(text)} characters is longer than {_MAX_MAP_LENGTH}",
        )
    canonical = text.translate(_CANONICAL_CASE)
    return canonical, _Automaton.build(_Parser(canonical).parse_map())


@dataclass(frozen=True, slots=True)
class DigitMap:
    """
    A compiled digit map, compared and hashed by its canonical text.

    Build one with :meth:`parse` (or the constructor, which does the same):
    either validates, canonicalises and compiles the text, raising
    :class:`DigitMapError` for a map a gateway must refuse.
    """

    #: Canonical text of the map; see the module docstring.
    text: str
    _automaton: _Automaton = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        canonical, automaton = _compile(self.text)
        object.__setattr__(self, "text", canonical)
        object.__setattr__(self, "_automaton", automaton)

    @classmethod
    def parse(cls, text: str) -> DigitMap:
        """
        Validate and compile ``text`` (the value of a ``D:`` parameter).

        :raises DigitMapError: with ``code`` 537 for a letter that is not a
            digit map letter, 510 for any other defect.
        """
        return cls(text)

    def match(self, dial_string: str) -> MatchResult:
        """
        Classify the dial string collected so far, case-insensitively.

        COMPLETE when some alternative matches all of it, NO_MATCH when none
        can match any extension of it, PARTIAL otherwise, with the SHORT
        (T-critical) timer when one more ``T`` would complete a match and the
        LONG (T-partial) timer when real symbols are still needed.
        """
        return self._automaton.match(dial_string)

    def __str__(self) -> str:
        return self.text
