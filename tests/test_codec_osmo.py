"""
The codec against real traffic: every datagram of the osmo-mgw probe
transcripts (C{tests/fixtures/osmo-mgw/transcript*.txt}, copied from
C{shared/peers/osmo-mgw/}) decodes, and re-encodes to the same values.

The transcript format (written by C{shared/peers/osmo-mgw/probe.py}): an
exchange starts with a C{--- title} line; C{  > } lines are one datagram
sent to osmo-mgw, C{  < } lines the datagram(s) it sent back (C{(another
datagram)} between two, C{(no reply ...)} for none); each line ends with a
literal C{\\r\\n} or C{\\n} marker showing its real line end.  Other lines
(headings, C{FACT:}, C{[vty ...]}) are notes.

The probe sends some malformed commands on purpose.  For those, and for
every command where osmo-mgw's answer is not what RFC 3435 asks for, the
table L{DIFFERENCES} writes down what our decoder makes of the command and
what osmo-mgw answered; both columns are checked against the transcript.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.mgcp import (
    Command,
    ConnectionMode,
    ConnectionParameters,
    EndpointName,
    MalformedMessage,
    ParamCode,
    Response,
    Verb,
    decode,
    encode,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "osmo-mgw"
TRANSCRIPTS = ("transcript.txt", "transcript-callagent.txt", "transcript-rsip-busy.txt")

_ENDING = re.compile(r"(\\r\\n|\\n|\\r)$")
_ENDINGS = {"\\r\\n": "\r\n", "\\n": "\n", "\\r": "\r"}


@dataclass
class Exchange:
    """One step of the probe: what was sent and every datagram received."""

    transcript: str
    title: str
    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)


def _unvisible(line: str) -> str:
    """A transcript line back to its text, with its real line end."""
    m = _ENDING.search(line)
    if m is None:
        return line
    return line[: m.start()] + _ENDINGS[m.group(1)]


def parse_transcript(name: str, text: str) -> list[Exchange]:
    """Split a probe transcript into exchanges of datagrams."""
    exchanges: list[Exchange] = []
    current: Exchange | None = None
    sending: list[str] | None = None
    receiving: list[str] | None = None

    def flush() -> None:
        nonlocal sending, receiving
        if current is not None and sending:
            current.sent.append("".join(sending).encode("latin-1"))
        if current is not None and receiving:
            current.received.append("".join(receiving).encode("latin-1"))
        sending = receiving = None

    for raw in text.split("\n"):
        if raw.startswith("--- "):
            flush()
            current = Exchange(name, raw[4:].strip())
            exchanges.append(current)
        elif raw.startswith("  > "):
            if receiving is not None:
                flush()
            sending = (sending or []) + [_unvisible(raw[4:])]
        elif raw.startswith("  < "):
            body = raw[4:]
            if sending is not None:
                current.sent.append("".join(sending).encode("latin-1"))  # type: ignore[union-attr]
                sending = None
            if body.startswith("(no reply"):
                continue
            if body == "(another datagram)":
                if receiving:
                    current.received.append("".join(receiving).encode("latin-1"))  # type: ignore[union-attr]
                receiving = None
                continue
            receiving = (receiving or []) + [_unvisible(body)]
        else:
            flush()
    flush()
    return [e for e in exchanges if e.sent]


def load_exchanges() -> list[Exchange]:
    out: list[Exchange] = []
    for name in TRANSCRIPTS:
        out += parse_transcript(name, (FIXTURES / name).read_text("latin-1"))
    return out


EXCHANGES = load_exchanges()

#: What we make of a datagram: "command"/"response" (decoded; for a command
#: the role then executes it and picks the code), or the (code, txid) of
#: the MalformedMessage we answer with (txid None: not answerable, dropped).
Outcome = Union[str, tuple[int, Optional[int]]]

#: Per probe step where we differ from osmo-mgw or the command is malformed
#: on purpose: (prefix of "title | first line sent", what our decoder
#: gives, osmo-mgw's reply as "code txid" or None for no reply, why).
DIFFERENCES: list[tuple[str, list[Outcome], Optional[str], str]] = [
    ("A4 ", [(500, 1004)], "500 1004",
     "same: '$' is forbidden in AUEP (RFC 3435 §2.3.10) - we say so in the codec"),
    # osmo-mgw's dialect: '*' in CRCX means "any free endpoint", where RFC 3435
    # has '$' ("any of"); §2.3.5 forbids the "all of" wildcard in CRCX, and
    # osmo-mgw refuses '$' (500, README §2).  A call agent driving osmo-mgw
    # must still *send* rtpbridge/*@mgw: encode() does not police wildcards.
    ("B1 ", [(500, 1005)], "200 1005", "osmo-mgw dialect: '*' in CRCX (RFC: '$'); we answer 500"),
    ("C4 ", [(500, 1014)], "200 1014", "as B1"),
    ("C5 ", [(500, 1014)], "200 1014", "as B1"),
    ("C8 ", [(500, 1018)], "200 1018", "as B1"),
    ("I1 CRCX wildcard until no endpoint is free | CRCX 1001 ", [(500, 1001)], "200 1001", "as B1"),
    ("I1 CRCX wildcard until no endpoint is free | CRCX 1002 ", [(500, 1002)], "403 1002", "as B1"),
    ("D1 ", [(510, 1020)], "510 000000",
     "same code, but osmo-mgw answers txid 000000: the CA cannot match it; we answer the txid"),
    ("D2 ", [(528, 1021)], "528 000000", "same code (528, §3.2.1.4); osmo-mgw loses the txid"),
    ("D3 ", [(510, None)], "510 000000",
     "no txid can be read, so we drop the datagram; osmo-mgw answers txid 000000"),
    ("D4 ", [(510, None)], None, "both drop it"),
    ("D5 ", [(510, None)], "200 abc",
     "a txid is 1*9DIGIT (App. A): unanswerable, dropped; osmo-mgw executes it and echoes 'abc'"),
    ("D6 ", [(510, None)], "200 1234567890",
     "10 digits is out of range (§3.2.1.2): dropped; osmo-mgw executes it"),
    ("D7 ", [(516, 1022)], "516 1022", "same"),
    ("D8 ", [(517, 1023)], "517 1023", "same"),
    ("D9 ", [(517, 1024)], "517 1024", "same"),
    ("D10 ", [(539, 1025)], "523 1025",
     "I is forbidden in CRCX (§3.2.2 table): 539 invalid parameter (RFC 3661); "
     "osmo-mgw's 523 means 'unknown action'"),
    ("D11 ", ["command"], "539 1026",
     "N is allowed in CRCX (§3.2.2); osmo-mgw does not implement it"),
    ("D11b ", ["command"], "539 1027",
     "K is allowed in every command (§3.2.2.19); osmo-mgw does not implement it"),
    ("D11c ", ["command"], "200 1028", "X alone is allowed in CRCX; both accept it"),
    ("D11e ", ["command"], "527 1030",
     "well-formed; the gateway role answers 527 (sendrecv needs a remote descriptor, §2.3.5)"),
    ("D12 ", [(509, 1032)], "527 1032",
     "the body is there but is not SDP: 509 error in RemoteConnectionDescriptor (RFC 3661); "
     "osmo-mgw says 527 'missing'"),
    ("D13 ", ["command"], "400 1033", "well-formed; the role answers 515 (unknown connection, RFC 3661)"),
    ("D14 ", [(515, 1034)], "400 1034",
     "I is mandatory in MDCX: 515 incorrect connection id; osmo-mgw: 400 transient"),
    ("D16 ", ["command"], "517 1036",
     "'C:77' and 'M:recvonly' are valid (optional whitespace after the colon, App. A); "
     "osmo-mgw reads values from a fixed column"),
    ("D17 ", ["command"], "200 1038", "both accept LF line ends"),
    ("D18 ", ["command"], None, "verbs are case-insensitive (§3.2.1.1); osmo-mgw ignores 'auep'"),
    ("D19 ", ["command"], "200 1040", "both accept lower-case parameter names"),
    ("D20 ", ["command"], "510 000000",
     "runs of SP/HTAB separate the fields (§3.2.1: MUST parse); osmo-mgw rejects them"),
    ("E4 ", [(500, 1046)], "500 1046", "same: an endpoint name needs '@domain'"),
    ("F NTFY", [(510, 1054)], None,
     "NTFY needs X and O (§3.2.2): 510 protocol error; osmo-mgw does not answer NTFY at all"),
    ("F AUCX", [(515, 1055)], None,
     "AUCX needs I (515) and F; osmo-mgw does not answer AUCX at all"),
    ("F EPCF", ["command"], None, "well-formed; osmo-mgw does not answer EPCF"),
    ("F MESG", ["command"], None, "well-formed; osmo-mgw does not answer MESG"),
    ("F XYZW", ["command"], None,
     "experimental X-verbs are read (§3.2.1.1); a role without it answers 504; osmo-mgw is silent"),
    ("F a response", ["response"], None, "a response with no pending transaction; nobody answers it"),
    ("F piggybacked", ["command", "command"], "200 1060",
     "we answer both (§3.5.5); osmo-mgw executes only the first"),
]


def outcome(item: object) -> Outcome:
    if isinstance(item, MalformedMessage):
        return (item.code, item.transaction_id)
    return "command" if isinstance(item, Command) else "response"


def _key(exchange: Exchange) -> str:
    """The title and the first line sent, which together name a probe step."""
    return exchange.title + " | " + exchange.sent[0].split(b"\n")[0].decode("latin-1")


def _all(prefix: str) -> list[Exchange]:
    matches = [e for e in EXCHANGES if _key(e).startswith(prefix)]
    if not matches:
        raise AssertionError(f"no exchange starts with {prefix!r}")
    return matches


def _find(prefix: str) -> Exchange:
    matches = _all(prefix)
    if len(matches) != 1:
        raise AssertionError(f"{len(matches)} exchanges start with {prefix!r}")
    return matches[0]


class TranscriptParsingTests(SynchronousTestCase):
    """The transcript reader itself."""

    def test_fixtures_are_copies(self) -> None:
        """The fixture files are there and hold the probe's exchanges."""
        counts = {name: sum(1 for e in EXCHANGES if e.transcript == name) for name in TRANSCRIPTS}
        self.assertEqual({"transcript.txt": 74, "transcript-callagent.txt": 2,
                          "transcript-rsip-busy.txt": 4}, counts)

    def test_line_ends_and_tabs(self) -> None:
        """Line ends come back from their markers; a tab in a line is kept."""
        self.assertEqual([b"AUEP 1038 rtpbridge/1@mgw MGCP 1.0\n"], _find("D17 ").sent)
        self.assertEqual([b"AUEP  1042\trtpbridge/1@mgw  MGCP 1.0\r\n"], _find("D20 ").sent)
        self.assertEqual([b"AB\n"], _find("D4 ").sent)
        self.assertEqual([], _find("D4 ").received)

    def test_multi_line_datagrams(self) -> None:
        """Consecutive lines form one datagram; the empty line before SDP is kept."""
        reply = _find("B1 ").received
        self.assertEqual(1, len(reply))
        self.assertTrue(reply[0].startswith(b"200 1005 OK\r\nZ: rtpbridge/1@mgw\r\nI: C1D601C4\r\n\r\nv=0\r\n"))
        self.assertTrue(reply[0].endswith(b"a=ptime:20\r\n"))


class TranscriptDecodingTests(SynchronousTestCase):
    """Every datagram osmo-mgw sent or received decodes, and round-trips."""

    def test_sent_commands(self) -> None:
        """
        Every datagram the probe sent decodes to commands (one response, sent
        on purpose), except the malformed ones listed in L{DIFFERENCES}, which
        decode to the listed return codes.
        """
        expected = {prefix: ours for prefix, ours, _, _ in DIFFERENCES}
        wrong = []
        for exchange in EXCHANGES:
            for data in exchange.sent:
                got = [outcome(item) for item in decode(data)]
                want = next(
                    (ours for prefix, ours in expected.items() if _key(exchange).startswith(prefix)),
                    ["command"],
                )
                if got != want:
                    wrong.append((exchange.title, want, got))
        self.assertEqual([], wrong)

    def test_received_responses(self) -> None:
        """
        Every datagram osmo-mgw sent back decodes to responses, except the
        two that echo a txid no RFC response may carry (C{abc}, 10 digits):
        those are unreadable responses, which a call agent drops.
        """
        wrong = []
        for exchange in EXCHANGES:
            for data in exchange.received:
                got = [outcome(item) for item in decode(data)]
                want: list[Outcome] = [(510, None)] if exchange.title.startswith(("D5 ", "D6 ")) else ["response"]
                if got != want:
                    wrong.append((exchange.title, want, got))
        self.assertEqual([], wrong)

    def test_round_trip(self) -> None:
        """Every decoded message re-encodes to the same value."""
        wrong = []
        for exchange in EXCHANGES:
            for data in exchange.sent + exchange.received:
                for item in decode(data):
                    if not isinstance(item, MalformedMessage) and decode(encode(item)) != [item]:
                        wrong.append((exchange.title, item, decode(encode(item))))
        self.assertEqual([], wrong)

    def test_osmo_column_matches_transcript(self) -> None:
        """The osmo-mgw column of L{DIFFERENCES} is what the transcript shows."""
        wrong = []
        for prefix, _, osmo, _ in DIFFERENCES:
            replies = _find(prefix).received
            shown = None
            if replies:
                shown = " ".join(replies[0].split(b"\r\n")[0].decode("latin-1").split()[:2])
            if shown != osmo:
                wrong.append((prefix, osmo, shown))
        self.assertEqual([], wrong)


class TranscriptFactTests(SynchronousTestCase):
    """The facts the probe recorded read back through our types."""

    def test_wildcard_crcx_reply(self) -> None:
        """B1: the wildcard CRCX reply names the endpoint (Z:), the connection and the SDP."""
        reply = decode(_find("B1 ").received[0])[0]
        self.assertEqual(
            (200, 1005, EndpointName("rtpbridge/1@mgw"), "C1D601C4", ("127.0.0.1", 16002), 20),
            (reply.code, reply.transaction_id, reply.specific_endpoint, reply.connection_id,  # type: ignore[union-attr]
             reply.sdp.rtp_address, reply.sdp.audio.ptime),  # type: ignore[union-attr]
        )

    def test_dlcx_statistics(self) -> None:
        """B5: DLCX answers 250 with connection statistics."""
        reply = decode(_find("B5 ").received[0])[0]
        self.assertEqual(
            (250, ConnectionParameters.create(PS=5, OS=860, PR=5, OR=860, PL=0, JI=0)),
            (reply.code, reply.params[ParamCode.CONNECTION_PARAMETERS]),  # type: ignore[union-attr]
        )

    def test_mdcx_command(self) -> None:
        """B2: the MDCX the probe sent reads as MDCX with mode and remote SDP."""
        command = decode(_find("B2 ").sent[0])[0]
        self.assertEqual(
            (Verb.MDCX, "c0ffee01", "C1D601C4", ConnectionMode.SENDRECV, ("127.0.0.1", 40000)),
            (command.verb, command.call_id, command.connection_id,  # type: ignore[union-attr]
             command.params[ParamCode.CONNECTION_MODE], command.sdp.rtp_address),  # type: ignore[union-attr]
        )

    def test_no_space_after_colon(self) -> None:
        """D16: C{C:77} is call id 77, not 7 as osmo-mgw reads it."""
        command = decode(_find("D16 ").sent[0])[0]
        self.assertEqual(("77", ConnectionMode.RECVONLY), (command.call_id, command.params[ParamCode.CONNECTION_MODE]))  # type: ignore[union-attr]

    def test_error_reply_txid(self) -> None:
        """D1: osmo-mgw's parse-error reply carries txid 000000, read as 0."""
        reply = decode(_find("D1 ").received[0])[0]
        self.assertEqual(Response.create(510, 0, "FAIL"), reply)
