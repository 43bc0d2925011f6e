"""
Tests for L{mgcpswitch.mgcp._digitmap}: digit map parsing and matching.

The worked examples of RFC 3435 §2.1.5 and RFC 3660 §2.2 are pinned one by
one; the edges the RFC leaves open are pinned by tables whose rows say what we
decided; hypothesis then checks the matcher against an independent oracle
built from Python regular expressions and a naive backtracking prefix test.
"""

from __future__ import annotations

import ast
import pickle
import re
from collections.abc import Sequence
from dataclasses import FrozenInstanceError, dataclass
from functools import lru_cache
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.mgcp import (
    DigitMap,
    DigitMapError,
    InterDigitTimer,
    MatchResult,
    MatchStatus,
)
# White box: the bound of the module's own cache, and its source file.
from mgcpswitch.mgcp import _digitmap

COMPLETE = MatchResult(MatchStatus.COMPLETE, InterDigitTimer.NONE)
NO_MATCH = MatchResult(MatchStatus.NO_MATCH, InterDigitTimer.NONE)
LONG = MatchResult(MatchStatus.PARTIAL, InterDigitTimer.LONG)
SHORT = MatchResult(MatchStatus.PARTIAL, InterDigitTimer.SHORT)

#: Hypothesis runs without an example database so a test run writes nothing.
PROPERTY = settings(max_examples=100, deadline=None, database=None)


def mismatches(
    text: str, table: Sequence[tuple[str, MatchResult]]
) -> list[tuple[str, MatchResult, MatchResult]]:
    """
    Match every dial string of C{table} against the map C{text} and return
    the rows that disagree, so one failure message shows every wrong row.
    """
    digit_map = DigitMap.parse(text)
    return [
        (dial, expected, actual)
        for dial, expected in table
        if (actual := digit_map.match(dial)) != expected
    ]


class RFCExampleTests(SynchronousTestCase):
    """
    The worked examples of RFC 3435 §2.1.5 and RFC 3660 §2.2.
    """

    def test_x11(self) -> None:
        """
        C{(xxxxxxx|x11)}: dialling 4, 1, 1 matches C{x11} at once; seven
        digits match the other alternative; anything shorter keeps
        collecting with the long timer.
        """
        table = [
            ("4", LONG),
            ("41", LONG),
            ("411", COMPLETE),
            ("41111", LONG),
            ("4111111", COMPLETE),
            ("41111111", NO_MATCH),
        ]
        self.assertEqual([], mismatches("(xxxxxxx|x11)", table))

    def test_zero_repetitions(self) -> None:
        """
        C{(0[12].|00|1[12].1|2x.#)}: C{.} allows zero repetitions, so C{0}
        matches at once (which makes C{00} unreachable for a gateway), and
        C{2#} matches without any C{x}.
        """
        table = [
            ("0", COMPLETE),
            ("1", LONG),
            ("12", LONG),
            ("11", COMPLETE),
            ("121", COMPLETE),
            ("2", LONG),
            ("23", LONG),
            ("2345", LONG),
            ("2345#", COMPLETE),
            ("2#", COMPLETE),
            ("3", NO_MATCH),
        ]
        self.assertEqual([], mismatches("(0[12].|00|1[12].1|2x.#)", table))

    def test_timer_inside_repeated_range(self) -> None:
        """
        C{(1[2-3T].)} matches immediately on C{1}: the repeated range may
        occur zero times.
        """
        table = [("1", COMPLETE), ("12", COMPLETE), ("1T", COMPLETE), ("13T2", COMPLETE)]
        self.assertEqual([], mismatches("(1[2-3T].)", table))

    def test_timer_after_repeated_range(self) -> None:
        """
        C{(1[2-3].T)}: after C{1} only a timer expiry is missing, so the
        gateway arms T-critical (the short timer); the same after C{12}.
        """
        table = [
            ("1", SHORT),
            ("1T", COMPLETE),
            ("12", SHORT),
            ("12T", COMPLETE),
            ("1232", SHORT),
            ("14", NO_MATCH),
        ]
        self.assertEqual([], mismatches("(1[2-3].T)", table))

    def test_repeated_timer(self) -> None:
        """
        C{(1[2-3]T.)}: after C{1} a digit is still needed (T-partial, the
        long timer); then C{2} or C{3} matches at once because C{T.} may
        occur zero times.
        """
        table = [("1", LONG), ("12", COMPLETE), ("13", COMPLETE), ("13T", COMPLETE)]
        self.assertEqual([], mismatches("(1[2-3]T.)", table))

    def test_critical_timer(self) -> None:
        """
        C{(xxxxxxx|x11T)}: after C{4}, C{1} the long timer runs; after the
        second C{1} only the timer is missing, so the short one runs.
        """
        table = [
            ("4", LONG),
            ("41", LONG),
            ("411", SHORT),
            ("411T", COMPLETE),
            ("4111", LONG),
            ("4111111", COMPLETE),
        ]
        self.assertEqual([], mismatches("(xxxxxxx|x11T)", table))

    def test_rfc3435_map(self) -> None:
        """
        The map of RFC 3435 §2.1.5: operator (C{0T}), long distance
        operator (C{00T}), local extensions, local and international
        numbers, star services; an unexpected C{T} is an impossible match.
        """
        table = [
            ("0", SHORT),
            ("0T", COMPLETE),
            ("00", SHORT),
            ("00T", COMPLETE),
            ("1234", COMPLETE),
            ("5", LONG),
            ("81234567", COMPLETE),
            ("#1234567", COMPLETE),
            ("*12", COMPLETE),
            ("91", LONG),
            ("912125551234", COMPLETE),
            ("9011", SHORT),
            ("901144", SHORT),
            ("901144T", COMPLETE),
            ("9T", NO_MATCH),
            ("000", NO_MATCH),
        ]
        text = "(0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)"
        self.assertEqual([], mismatches(text, table))

    def test_unexpected_timer(self) -> None:
        """
        A C{T} that no alternative expects can never match: C{(5xxx)} with
        C{5T} is NO_MATCH, so the gateway notifies what it has.
        """
        table = [("5", LONG), ("5T", NO_MATCH), ("T", NO_MATCH)]
        self.assertEqual([], mismatches("(5xxx)", table))


class MatchEdgeTests(SynchronousTestCase):
    """
    Matching rules the RFC leaves implicit, pinned down.
    """

    def test_case_insensitive(self) -> None:
        """
        Map and dial string are both case-insensitive; C{X} in either case
        is any digit, never a letter.
        """
        table = [
            ("15", COMPLETE),
            ("1", LONG),
            ("1a", NO_MATCH),
            ("a*", COMPLETE),
            ("A*", COMPLETE),
            ("a", LONG),
        ]
        self.assertEqual([], mismatches("(1X|A*)", table))
        self.assertEqual([], mismatches("(1x|a*)", table))

    def test_timer_symbol_case(self) -> None:
        """
        A lower-case C{t} in the dial string is the timer symbol too.
        """
        self.assertEqual([], mismatches("(x11T)", [("411t", COMPLETE), ("411T", COMPLETE)]))

    def test_extension_letters(self) -> None:
        """
        Extension letters (E..Z except T and X) are plain literal symbols,
        in and out of ranges.
        """
        table = [
            ("1e", COMPLETE),
            ("1E", COMPLETE),
            ("z", COMPLETE),
            ("zzz", COMPLETE),
            ("", COMPLETE),
            ("1", LONG),
            ("1f", NO_MATCH),
            ("QR", COMPLETE),
            ("RQ", COMPLETE),
        ]
        self.assertEqual([], mismatches("(1E|Z.|[QR][RQ])", table))

    def test_wildcard_in_range(self) -> None:
        """
        Inside brackets C{x} stands for every digit and can be mixed with
        other letters and sub-ranges.
        """
        table = [
            ("0", COMPLETE),
            ("9", COMPLETE),
            ("#", COMPLETE),
            ("B", COMPLETE),
            ("C", NO_MATCH),
            ("*", NO_MATCH),
        ]
        self.assertEqual([], mismatches("[x#B]", table))
        self.assertEqual([], mismatches("[0-4x5-9#b]", table))

    def test_digit_range_bounds(self) -> None:
        """
        C{d-d} includes both ends; a one-digit range C{[5-5]} is valid.
        """
        table = [(d, COMPLETE if "3" <= d <= "6" else NO_MATCH) for d in "0123456789"]
        self.assertEqual([], mismatches("[3-6]", table))
        self.assertEqual([], mismatches("[5-5]", [("5", COMPLETE), ("4", NO_MATCH)]))

    def test_chain_of_repeats(self) -> None:
        """
        Several C{.} elements in a row may all be skipped at once.
        """
        table = [
            ("12", COMPLETE),
            ("1#2", COMPLETE),
            ("1xyz", NO_MATCH),
            ("1999##*2", COMPLETE),
            ("1999#9", NO_MATCH),
            ("1", LONG),
        ]
        self.assertEqual([], mismatches("1x.#.*.2", table))

    def test_parentheses_optional_for_one_alternative(self) -> None:
        """
        C{5xxx} and C{(5xxx)} match alike.
        """
        table = [("5", LONG), ("5123", COMPLETE), ("6", NO_MATCH)]
        self.assertEqual([], mismatches("5xxx", table))
        self.assertEqual([], mismatches("(5xxx)", table))

    def test_empty_dial_string(self) -> None:
        """
        The empty dial string is matched as it is: COMPLETE only where an
        alternative is all C{.} elements, otherwise PARTIAL.
        """
        self.assertEqual(DigitMap.parse("x.").match(""), COMPLETE)
        self.assertEqual(DigitMap.parse("(xxx|T)").match(""), SHORT)
        self.assertEqual(DigitMap.parse("(xxx|*x)").match(""), LONG)

    def test_no_memory_between_calls(self) -> None:
        """
        C{match} judges the string it is given: C{00} against
        C{(0[12].|00)} is COMPLETE even though a gateway would already have
        notified on C{0}; and earlier calls do not change later answers.
        """
        digit_map = DigitMap.parse("(0[12].|00)")
        self.assertEqual(digit_map.match("0"), COMPLETE)
        self.assertEqual(digit_map.match("00"), COMPLETE)
        self.assertEqual(digit_map.match("0"), COMPLETE)

    def test_unknown_dial_symbols(self) -> None:
        """
        A dial string character that is no digit map symbol (C{X} itself,
        punctuation, non-ASCII) is an impossible match, never an exception;
        and no Unicode case mapping sneaks in (C{ß} is not C{SS}).
        """
        table = [(dial, NO_MATCH) for dial in ("x", "X", "!", "ß", "\u0661")]
        self.assertEqual([], mismatches("(x|SS|X.)", table))
        self.assertEqual(DigitMap.parse("(SS)").match("ß"), NO_MATCH)

    def test_bounded_transition_cache(self) -> None:
        """
        The lazily filled transition table stops growing at its limit, and
        matches stay right past it.  The map needs a state for every pattern
        of ones among the last twelve symbols, so the 8192 binary strings of
        length 13 walk 8192 distinct transitions, twice the limit.
        """
        digit_map = DigitMap.parse("([01].1" + "[01]" * 11 + ")")
        oracle = re.compile("[01]*1[01]{11}")
        for n in range(1 << 13):
            dial = format(n, "013b")
            expected = COMPLETE if oracle.fullmatch(dial) else LONG
            self.assertEqual(digit_map.match(dial), expected, dial)
        transitions = digit_map._automaton.transitions
        self.assertEqual(len(transitions), _digitmap._TRANSITION_CACHE_LIMIT)


class ParseErrorTests(SynchronousTestCase):
    """
    Maps a gateway must refuse, and the return code it refuses them with:
    537 for a character that is no digit map letter, 510 for the rest.
    """

    #: (map, code, why) -- the decision for each edge, in one place.
    BAD_MAPS: Sequence[tuple[str, int, str]] = [
        ("", 510, "empty map"),
        (" \t ", 510, "whitespace only is an empty map"),
        ("()", 510, "empty alternative"),
        ("(1|)", 510, "empty last alternative"),
        ("(|1)", 510, "empty first alternative"),
        ("(1||2)", 510, "empty middle alternative"),
        ("(12", 510, "missing ')'"),
        ("12)", 510, "')' without '('"),
        (")", 510, "')' without '('"),
        ("(1)(2)", 510, "text after the closing ')'"),
        ("(1)2", 510, "text after the closing ')'"),
        ("1(2)", 510, "'(' only opens the map"),
        ("(1|(2))", 510, "nested parentheses"),
        ("1|2", 510, "several alternatives need parentheses"),
        (".1", 510, "'.' with nothing before it"),
        ("(1|.2)", 510, "'.' at the start of an alternative"),
        ("1..", 510, "doubled '.'"),
        ("[5-2]", 510, "descending range"),
        ("[]", 510, "empty range"),
        ("[].", 510, "empty range, repeated"),
        ("[1-]", 510, "range without upper end"),
        ("[-1]", 510, "range without lower end"),
        ("[1--3]", 510, "doubled '-'"),
        ("[1-2-3]", 510, "chained ranges"),
        ("[A-D]", 510, "ranges join digits only"),
        ("[1-x]", 510, "ranges join digits only"),
        ("[1", 510, "missing ']'"),
        ("1]", 510, "']' without '['"),
        ("[[1]]", 510, "nested brackets"),
        ("[1.]", 510, "'.' inside a range"),
        ("[1|2]", 510, "'|' inside a range"),
        ("[(1)]", 510, "'(' inside a range"),
        ("1-2", 510, "'-' outside a range"),
        ("1" * 4097, 510, "longer than 4096 characters"),
        ("1%", 537, "unknown letter"),
        ("1!", 537, "unknown letter"),
        ("[1%]", 537, "unknown letter inside a range"),
        ("(1|2$)", 537, "unknown letter in an alternative"),
        ("1ß", 537, "non-ASCII letter"),
        ("\u0661", 537, "non-ASCII digit"),
        ("(%", 537, "first error from the left wins: the letter"),
        ("(1|)%", 510, "first error from the left wins: the empty alternative"),
    ]

    def test_codes(self) -> None:
        """
        Every bad map raises L{DigitMapError} with the code its row names.
        """
        wrong: list[tuple[object, ...]] = []
        for text, code, why in self.BAD_MAPS:
            try:
                DigitMap.parse(text)
            except DigitMapError as error:
                if error.code != code:
                    wrong.append((text, why, code, error.code, error.reason))
            else:
                wrong.append((text, why, code, "accepted"))
        self.assertEqual([], wrong)

    def test_error_is_value_error(self) -> None:
        """
        L{DigitMapError} is a L{ValueError}, the constructor validates like
        C{parse}, and the error's text starts with its code and carries a
        short ASCII reason fit for a log or a response commentary.
        """
        error = self.assertRaises(ValueError, DigitMap, "(1|%)")
        assert isinstance(error, DigitMapError)
        self.assertEqual(error.code, 537)
        self.assertTrue(str(error).startswith("537 "))
        long_error = self.assertRaises(DigitMapError, DigitMap.parse, "(" + "1" * 3000 + "ß)")
        self.assertTrue(long_error.reason.isascii())
        self.assertLess(len(long_error.reason), 120)

    def test_error_pickles(self) -> None:
        """
        The error survives a pickle round trip with its code and reason,
        as exceptions crossing a process boundary must.
        """
        error = self.assertRaises(DigitMapError, DigitMap.parse, "[5-2]")
        copy = pickle.loads(pickle.dumps(error))
        self.assertEqual((copy.code, copy.reason), (error.code, error.reason))


class CanonicalTextTests(SynchronousTestCase):
    """
    The canonical text: what C{text}, C{str}, equality and hashing use.
    """

    #: (as given, canonical) -- valid maps with odd spelling.
    SPELLINGS: Sequence[tuple[str, str]] = [
        ("1 2 3", "123"),
        (" ( X11 | xxxxxxx ) ", "(x11|xxxxxxx)"),
        ("\t5XXX\r\n", "5xxx"),
        ("(5xxx)", "(5xxx)"),
        ("[x]", "[x]"),
        ("[X#]", "[x#]"),
        ("[1 - 3]", "[1-3]"),
        ("[2-3t].", "[2-3T]."),
        ("1 .", "1."),
        ("t", "T"),
        ("x.", "x."),
        ("(e|z.)", "(E|Z.)"),
        ("[0-9a*#d]", "[0-9A*#D]"),
        ("(0t|00t|[1-7]XXX|9011x.t)", "(0T|00T|[1-7]xxx|9011x.T)"),
    ]

    def test_spellings(self) -> None:
        """
        Case is folded (letters upper-case, C{x} lower-case), whitespace is
        dropped, parentheses and range spelling are kept.
        """
        wrong = [
            (given, canonical, DigitMap.parse(given).text)
            for given, canonical in self.SPELLINGS
            if DigitMap.parse(given).text != canonical
        ]
        self.assertEqual([], wrong)

    def test_round_trip(self) -> None:
        """
        C{str} gives the canonical text and parsing it gives an equal map.
        """
        for spelling, canonical in self.SPELLINGS:
            digit_map = DigitMap.parse(spelling)
            self.assertEqual(str(digit_map), canonical)
            self.assertEqual(DigitMap.parse(str(digit_map)), digit_map)

    def test_equality_and_hash(self) -> None:
        """
        Maps that differ only in case or whitespace are equal and hash
        alike; a map with parentheses differs from the same map without.
        """
        first = DigitMap.parse("(X11|xxxxxxx)")
        second = DigitMap.parse(" ( x11 | XXXXXXX ) ")
        self.assertEqual(first, second)
        self.assertEqual(hash(first), hash(second))
        self.assertEqual(len({first, second, DigitMap("(x11|xxxxxxx)")}), 1)
        self.assertNotEqual(DigitMap.parse("5xxx"), DigitMap.parse("(5xxx)"))
        self.assertNotEqual(first, DigitMap.parse("(xxxxxxx|x11)"))

    def test_value_shape(self) -> None:
        """
        A map is frozen, and its C{repr} shows the text, not the compiled
        automaton.
        """
        digit_map = DigitMap.parse("(x11)")
        self.assertEqual(repr(digit_map), "DigitMap(text='(x11)')")
        with self.assertRaises(FrozenInstanceError):
            digit_map.text = "1"  # type: ignore[misc]

    def test_length_limit(self) -> None:
        """
        A 2048-byte map (the least RFC 3435 §2.1.5 asks a gateway to hold)
        is accepted and works; so is one of 4096 characters; one more is
        refused with 510.  The limit counts the text as given.
        """
        alternatives = "|".join(f"{i:03d}xxxx" for i in range(250))
        text = f"({alternatives}|{'9' * 46})"
        self.assertEqual(len(text.encode("ascii")), 2048)
        digit_map = DigitMap.parse(text)
        self.assertEqual(digit_map.match("1234567"), COMPLETE)
        self.assertEqual(digit_map.match("9" * 46), COMPLETE)
        self.assertEqual(digit_map.match("99"), LONG)
        DigitMap.parse("(" + "x" * 4094 + ")")
        error = self.assertRaises(DigitMapError, DigitMap.parse, " " * 4096 + "1")
        self.assertEqual(error.code, 510)


class MatchResultTests(SynchronousTestCase):
    """
    L{MatchResult} keeps its timer consistent with its status.
    """

    def test_consistency(self) -> None:
        """
        A timer runs exactly when the status is PARTIAL; every other pairing
        is refused at construction.
        """
        for status in MatchStatus:
            for timer in InterDigitTimer:
                consistent = (status is MatchStatus.PARTIAL) != (timer is InterDigitTimer.NONE)
                if consistent:
                    self.assertEqual(MatchResult(status, timer).timer, timer)
                else:
                    self.assertRaises(ValueError, MatchResult, status, timer)


class PurityTests(SynchronousTestCase):
    """
    The digit map module belongs to the pure protocol core.
    """

    def test_imports(self) -> None:
        """
        The module imports nothing from Twisted and nothing that does I/O
        or reads a clock.
        """
        tree = ast.parse(Path(_digitmap.__file__).read_text(encoding="utf-8"))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                imported.add(node.module)
        roots = {name.split(".")[0] for name in imported}
        self.assertEqual(roots & {"twisted", "time", "os", "socket", "io", "asyncio"}, set())


# ---------------------------------------------------------------------------
# Property tests: a small generator of maps, and an oracle built without the
# module under test.


@dataclass(frozen=True)
class Element:
    """One generated position: its canonical spelling and symbol set."""

    text: str
    symbols: frozenset[str]
    repeat: bool


@dataclass(frozen=True)
class Alternative:
    """One generated alternative, with its oracles."""

    elements: tuple[Element, ...]

    def regex(self) -> re.Pattern[str]:
        """The alternative as a regular expression: C{.} becomes C{*}."""
        return re.compile(
            "".join(
                "[" + "".join(map(re.escape, sorted(e.symbols))) + "]" + "*" * e.repeat
                for e in self.elements
            )
        )

    def viable(self, dial: str) -> bool:
        """
        Whether C{dial} is a prefix of some string this alternative matches,
        by plain backtracking (every element has a symbol, so anything left
        over can always be completed).
        """
        elements = self.elements

        @lru_cache(maxsize=None)
        def viable_from(i: int, j: int) -> bool:
            if j == len(dial):
                return True
            if i == len(elements):
                return False
            element = elements[i]
            if element.repeat and viable_from(i + 1, j):
                return True
            if dial[j] not in element.symbols:
                return False
            return viable_from(i if element.repeat else i + 1, j + 1)

        return viable_from(0, 0)


@dataclass(frozen=True)
class GeneratedMap:
    """A generated map: canonical text plus its alternatives."""

    text: str
    alternatives: tuple[Alternative, ...]

    def expected(self, dial: str) -> MatchResult:
        """What the RFC says C{match} must answer, from the oracles."""
        dial = "".join(c.upper() if c.isascii() else c for c in dial)
        if any(a.regex().fullmatch(dial) for a in self.alternatives):
            return COMPLETE
        if not any(a.viable(dial) for a in self.alternatives):
            return NO_MATCH
        if any(a.regex().fullmatch(dial + "T") for a in self.alternatives):
            return SHORT
        return LONG


DIGITS = "0123456789"
SYMBOLS = DIGITS + "#*ABCDT" + "EFGHIJKLMNOPQRSUVWYZ"

#: A literal symbol, or the wildcard C{x}.
single_letters = st.one_of(
    st.sampled_from(SYMBOLS).map(lambda s: (s, frozenset(s))),
    st.just(("x", frozenset(DIGITS))),
)


@st.composite
def digit_ranges(draw: st.DrawFn) -> tuple[str, frozenset[str]]:
    """A C{d-d} sub-range of a bracket expression."""
    low, high = sorted(draw(st.lists(st.sampled_from(DIGITS), min_size=2, max_size=2)))
    return f"{low}-{high}", frozenset(DIGITS[int(low) : int(high) + 1])


@st.composite
def positions(draw: st.DrawFn) -> tuple[str, frozenset[str]]:
    """A digit map position: a letter, or a bracket expression."""
    if draw(st.booleans()):
        return draw(single_letters)
    items = draw(st.lists(st.one_of(single_letters, digit_ranges()), min_size=1, max_size=3))
    text = "[" + "".join(t for t, _ in items) + "]"
    return text, frozenset().union(*(s for _, s in items))


@st.composite
def elements(draw: st.DrawFn) -> Element:
    """A position, repeated with C{.} one time in four."""
    text, symbols = draw(positions())
    repeat = draw(st.integers(0, 3)) == 0
    return Element(text + ("." if repeat else ""), symbols, repeat)


@st.composite
def digit_maps(draw: st.DrawFn) -> GeneratedMap:
    """A valid map of one to four alternatives of one to six elements."""
    alternatives = tuple(
        Alternative(tuple(draw(st.lists(elements(), min_size=1, max_size=6))))
        for _ in range(draw(st.integers(1, 4)))
    )
    body = "|".join("".join(e.text for e in a.elements) for a in alternatives)
    parenthesised = len(alternatives) > 1 or draw(st.booleans())
    return GeneratedMap(f"({body})" if parenthesised else body, alternatives)


@st.composite
def respellings(draw: st.DrawFn, text: str) -> str:
    """C{text} with each letter's case flipped at random and whitespace strewn."""
    out = []
    for char in text:
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(" \t")))
        out.append(char.swapcase() if draw(st.booleans()) else char)
    return "".join(out)


#: Dial strings: mostly symbols likely to match, in both cases, with a dash
#: of characters that are no symbol at all.
dial_strings = st.text(
    alphabet=st.sampled_from("0123456789#*ABCDTabcdtEzxX!ß"), max_size=12
)


class PropertyTests(SynchronousTestCase):
    """
    Properties over generated maps and dial strings.
    """

    @PROPERTY
    @given(digit_maps(), st.data())
    def test_round_trip(self, generated: GeneratedMap, data: st.DataObject) -> None:
        """
        A generated map parses to its canonical text; any respelling of it
        (case, whitespace) parses to an equal map; C{parse(str(m)) == m}.
        """
        digit_map = DigitMap.parse(generated.text)
        self.assertEqual(str(digit_map), generated.text)
        self.assertEqual(DigitMap.parse(str(digit_map)), digit_map)
        respelt = DigitMap.parse(data.draw(respellings(generated.text)))
        self.assertEqual(respelt, digit_map)
        self.assertEqual(hash(respelt), hash(digit_map))

    @PROPERTY
    @given(digit_maps(), st.lists(dial_strings, min_size=1, max_size=8))
    def test_against_oracle(self, generated: GeneratedMap, dials: list[str]) -> None:
        """
        C{match} agrees with the regex/backtracking oracle: COMPLETE exactly
        when some alternative's regex matches the whole dial string;
        otherwise NO_MATCH exactly when no alternative can still match; and
        the short timer exactly when appending C{T} would complete a match.
        """
        digit_map = DigitMap.parse(generated.text)
        for dial in dials:
            self.assertEqual(digit_map.match(dial), generated.expected(dial), dial)

    @PROPERTY
    @given(digit_maps(), dial_strings, dial_strings)
    def test_no_match_is_final(self, generated: GeneratedMap, dial: str, more: str) -> None:
        """
        Once a dial string is an impossible match, no continuation of it
        matches anything.
        """
        digit_map = DigitMap.parse(generated.text)
        if digit_map.match(dial) == NO_MATCH:
            self.assertEqual(digit_map.match(dial + more), NO_MATCH)

    @PROPERTY
    @given(
        st.text(alphabet=st.sampled_from("()[]|.-x19TaZ #%ß"), max_size=20),
        st.text(max_size=10),
    )
    def test_arbitrary_text(self, text: str, dial: str) -> None:
        """
        Arbitrary text either parses to a map that round-trips and matches
        any dial string without raising, or raises L{DigitMapError} with
        code 510 or 537 -- never anything else.
        """
        try:
            digit_map = DigitMap.parse(text)
        except DigitMapError as error:
            self.assertIn(error.code, (510, 537))
            return
        self.assertEqual(DigitMap.parse(str(digit_map)), digit_map)
        self.assertIsInstance(digit_map.match(dial), MatchResult)
