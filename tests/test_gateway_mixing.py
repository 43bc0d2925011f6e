"""
The simulated gateway's mixing table (L{mgcpswitch.gateway.mixing}),
checked cell by cell against RFC 3435 Appendix D ("Mode Interactions"),
then the rules Appendix D leaves to §2.3.1: more than two connections
(streams unioned), loopback and continuity test.
"""

from __future__ import annotations

import itertools

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.gateway.mixing import HANDSET, Mix, mix
from mgcpswitch.mgcp import ConnectionMode

M = ConnectionMode
_NAMES = {
    "sendonly": [M.SENDONLY], "recvonly": [M.RECVONLY], "sendrecv": [M.SENDRECV],
    "confrnce": [M.CONFRNCE], "inactive": [M.INACTIVE], "netw": [M.NETWLOOP, M.NETWTEST],
}

#: RFC 3435 Appendix D, as printed: (mode of A, mode of B) -> what goes to
#: A, B and the handset.  Ai/Bi: received on A/B; Hi: the handset's
#: microphone; NA: nothing.  The RFC prints the upper half (B's row, A's
#: column); each cell is checked with A and B in both orders.
APPENDIX_D = {
    ("sendonly", "sendonly"): "Ao=Hi Bo=Hi Ho=NA",
    ("recvonly", "sendonly"): "Ao=NA Bo=Hi Ho=Ai",
    ("sendrecv", "sendonly"): "Ao=Hi Bo=Hi Ho=Ai",
    ("confrnce", "sendonly"): "Ao=Hi Bo=Hi Ho=Ai",
    ("inactive", "sendonly"): "Ao=NA Bo=Hi Ho=NA",
    ("netw", "sendonly"): "Ao=Ai Bo=Hi Ho=NA",
    ("recvonly", "recvonly"): "Ao=NA Bo=NA Ho=Ai+Bi",
    ("sendrecv", "recvonly"): "Ao=Hi Bo=NA Ho=Ai+Bi",
    ("confrnce", "recvonly"): "Ao=Hi Bo=NA Ho=Ai+Bi",
    ("inactive", "recvonly"): "Ao=NA Bo=NA Ho=Bi",
    ("netw", "recvonly"): "Ao=Ai Bo=NA Ho=Bi",
    ("sendrecv", "sendrecv"): "Ao=Hi Bo=Hi Ho=Ai+Bi",
    ("confrnce", "sendrecv"): "Ao=Hi Bo=Hi Ho=Ai+Bi",
    ("inactive", "sendrecv"): "Ao=NA Bo=Hi Ho=Bi",
    ("netw", "sendrecv"): "Ao=Ai Bo=Hi Ho=Bi",
    ("confrnce", "confrnce"): "Ao=Hi+Bi Bo=Hi+Ai Ho=Ai+Bi",
    ("inactive", "confrnce"): "Ao=NA Bo=Hi Ho=Bi",
    ("netw", "confrnce"): "Ao=Ai Bo=Hi Ho=Bi",
    ("inactive", "inactive"): "Ao=NA Bo=NA Ho=NA",
    ("netw", "inactive"): "Ao=Ai Bo=NA Ho=NA",
    ("netw", "netw"): "Ao=Ai Bo=Bi Ho=NA",
}


def _sources(text: str) -> frozenset:
    names = {"Ai": "A", "Bi": "B", "Hi": HANDSET}
    return frozenset() if text == "NA" else frozenset(names[part] for part in text.split("+"))


def _parse(cell: str) -> tuple[frozenset, frozenset, frozenset]:
    outputs = dict(part.split("=") for part in cell.split())
    return _sources(outputs["Ao"]), _sources(outputs["Bo"]), _sources(outputs["Ho"])


def _read(result: Mix) -> tuple[frozenset, frozenset, frozenset]:
    return result.sent_on("A"), result.sent_on("B"), result.handset


class AppendixD(SynchronousTestCase):
    def test_the_table_is_complete(self) -> None:
        """The transcription has every pair of the six columns once: 21 cells."""
        pairs = {frozenset(pair) for pair in APPENDIX_D}
        self.assertEqual(len(APPENDIX_D), 21)
        self.assertEqual(pairs, {frozenset(p) for p in itertools.combinations_with_replacement(_NAMES, 2)})

    def test_every_cell(self) -> None:
        """
        Each cell of Appendix D, with A and B swapped as well (the table is
        symmetric) and both network modes in the C{netw} column: C{mix}
        gives exactly what the RFC prints.
        """
        checked = 0
        for (name_a, name_b), cell in APPENDIX_D.items():
            ao, bo, ho = _parse(cell)
            swap = {"A": "B", "B": "A", HANDSET: HANDSET}
            for mode_a, mode_b in itertools.product(_NAMES[name_a], _NAMES[name_b]):
                with self.subTest(a=mode_a, b=mode_b):
                    self.assertEqual(_read(mix({"A": mode_a, "B": mode_b})), (ao, bo, ho), cell)
                    swapped = mix({"A": mode_b, "B": mode_a})
                    self.assertEqual(
                        _read(swapped),
                        (frozenset(swap[s] for s in bo), frozenset(swap[s] for s in ao),
                         frozenset(swap[s] for s in ho)),
                        f"{cell} with A and B swapped",
                    )
                checked += 1
        self.assertEqual(checked, 15 + 5 * 2 + 4)  # netw: netwloop and netwtest, in both places of netw-netw

    def test_one_connection(self) -> None:
        """One connection: the handset to the network when sending, the network to the handset when receiving."""
        self.assertEqual(_read(mix({"A": M.SENDRECV}))[::2], (frozenset({HANDSET}), frozenset({"A"})))
        self.assertEqual(_read(mix({"A": M.SENDONLY}))[::2], (frozenset({HANDSET}), frozenset()))
        self.assertEqual(_read(mix({"A": M.RECVONLY}))[::2], (frozenset(), frozenset({"A"})))
        self.assertEqual(_read(mix({"A": M.NETWLOOP}))[::2], (frozenset({"A"}), frozenset()))
        self.assertEqual(mix({}), Mix({}, frozenset()))


class BeyondTheTable(SynchronousTestCase):
    def test_three_way_call(self) -> None:
        """
        Three conference connections (§2.3.1: streams unioned): each sends
        the handset and the other two, the handset hears all three; the
        endpoint of a three-way call (two confrnce) lets each far party
        hear the other and the handset.
        """
        three = mix({"A": M.CONFRNCE, "B": M.CONFRNCE, "C": M.CONFRNCE})
        self.assertEqual(three.sent_on("A"), {HANDSET, "B", "C"})
        self.assertEqual(three.sent_on("C"), {HANDSET, "A", "B"})
        self.assertEqual(three.handset, {"A", "B", "C"})
        self.assertEqual(three.receivers("B"), {"A", "C", HANDSET})
        self.assertEqual(three.receivers(HANDSET), {"A", "B", "C"})

    def test_held_party_beside_a_conference(self) -> None:
        """A held (inactive) connection beside two conference ones hears and is heard by nobody."""
        result = mix({"A": M.CONFRNCE, "B": M.CONFRNCE, "H": M.INACTIVE})
        self.assertEqual(result.sent_on("H"), frozenset())
        self.assertEqual(result.receivers("H"), frozenset())
        self.assertEqual(result.sent_on("A"), {HANDSET, "B"})

    def test_sendrecv_is_not_bridged(self) -> None:
        """Two conference connections and a sendrecv one: only the conference ones hear each other."""
        result = mix({"A": M.CONFRNCE, "B": M.CONFRNCE, "S": M.SENDRECV})
        self.assertEqual(result.sent_on("S"), {HANDSET})
        self.assertEqual(result.receivers("S"), {HANDSET})
        self.assertEqual(result.receivers("A"), {"B", HANDSET})

    def test_loopback_and_conttest_suppress_the_handset(self) -> None:
        """
        While a connection is in loopback or conttest (§2.3.1), the handset
        hears itself, its audio goes out nowhere and no connection reaches
        it; a network loop still echoes, conference connections still bridge.
        """
        for looping in (M.LOOPBACK, M.CONTTEST):
            with self.subTest(mode=looping):
                result = mix({"L": looping, "S": M.SENDRECV, "N": M.NETWLOOP, "A": M.CONFRNCE, "B": M.CONFRNCE})
                self.assertEqual(result.handset, {HANDSET})
                self.assertEqual(result.sent_on("S"), frozenset())
                self.assertEqual(result.sent_on("L"), frozenset())
                self.assertEqual(result.sent_on("N"), {"N"})
                self.assertEqual(result.sent_on("A"), {"B"})
                self.assertEqual(result.receivers(HANDSET), {HANDSET})
