"""
Malformed input: what L{mgcpswitch.mgcp.decode} answers for every kind of
broken message.

Each row gives the datagram, the return code the receiver must answer with
and the transaction id it answers to (None when the txid cannot be read:
then the message cannot be answered and is dropped and counted).  The code
is the one RFC 3435 §2.4 / RFC 3661 §2.2 name for the situation; where they
name none, the choice documented in the C{_codec} module docstring.  The
RFC reference is next to each row.

C{decode} never raises; each row is also checked not to have tripped the
codec's "internal:" safety net, and a bad message piggybacked between two
good ones leaves them intact (§3.5.5).
"""

from __future__ import annotations

from typing import Optional

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.mgcp import Command, MalformedMessage, Response, ReturnCode, Verb, decode

Row = tuple[str, bytes, int, Optional[int]]


def crlf(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


#: (label, datagram, return code, transaction id or None).
COMMANDS: list[Row] = [
    # -- the command line (§3.2.1, App. A) ---------------------------------
    ("no version", crlf("CRCX 1020 rtpbridge/1@mgw", "C: 1", "M: recvonly"), 510, 1020),
    ("MGCP 2.0 (§3.2.1.4: 528 RECOMMENDED)", crlf("AUEP 1021 rtpbridge/1@mgw MGCP 2.0"), 528, 1021),
    ("NCS-style MGCP 0.1 with profile", crlf("RSIP 2046 aaln/1@[192.168.2.1] MGCP 0.1 NCS 1.0", "RM: restart"), 528, 2046),
    ("version that is not a number", crlf("AUEP 1022 a@b MGCP one"), 510, 1022),
    ("protocol name not MGCP", crlf("AUEP 1023 a@b SIP 2.0"), 510, 1023),
    ("unknown verb (504)", crlf("FOOO 1024 a@b MGCP 1.0"), 504, 1024),
    ("verb of five letters", crlf("AUDIT 1025 a@b MGCP 1.0"), 510, 1025),
    ("txid 0 (range is 1..999999999)", crlf("AUEP 0 a@b MGCP 1.0"), 510, None),
    ("txid 000", crlf("AUEP 000 a@b MGCP 1.0"), 510, None),
    ("txid of 10 digits", crlf("AUEP 1234567890 a@b MGCP 1.0"), 510, None),
    ("txid with letters", crlf("AUEP abc a@b MGCP 1.0"), 510, None),
    ("txid with a superscript digit", "AUEP 1² a@b MGCP 1.0\r\n".encode(), 510, None),
    ("txid of Arabic-Indic digits", "AUEP ١٢٣ a@b MGCP 1.0\r\n".encode(), 510, None),
    ("endpoint without @ (500)", crlf("AUEP 1026 rtpbridge/1 MGCP 1.0"), 500, 1026),
    ("endpoint with empty local part", crlf("AUEP 1027 @mgw MGCP 1.0"), 500, 1027),
    ("endpoint with empty term", crlf("AUEP 1028 aaln//1@mgw MGCP 1.0"), 500, 1028),
    ("endpoint with invalid UTF-8", b"AUEP 1029 aaln/\xff@mgw MGCP 1.0\r\n", 500, 1029),
    # -- wildcards the verb forbids (§2.1.2, §2.3) -------------------------
    ("all-of in CRCX", crlf("CRCX 1030 aaln/*@gw MGCP 1.0", "C: 1", "M: recvonly"), 500, 1030),
    ("any-of in RQNT", crlf("RQNT 1031 aaln/$@gw MGCP 1.0", "X: 1"), 500, 1031),
    ("any-of in AUEP", crlf("AUEP 1032 rtpbridge/$@mgw MGCP 1.0"), 500, 1032),
    ("wildcard in NTFY", crlf("NTFY 1033 aaln/*@gw MGCP 1.0", "X: 1", "O: L/hd"), 500, 1033),
    ("wildcard in MDCX", crlf("MDCX 1034 aaln/*@gw MGCP 1.0", "C: 1", "I: 1"), 500, 1034),
    ("all-of in DLCX of one connection", crlf("DLCX 1035 aaln/*@gw MGCP 1.0", "I: 1"), 500, 1035),
    ("any-of in MESG", crlf("MESG 1036 aaln/$@gw MGCP 1.0"), 500, 1036),
    # -- parameter lines (§3.2.2) ------------------------------------------
    ("parameter line without a colon", crlf("AUEP 1037 a@b MGCP 1.0", "F A"), 510, 1037),
    ("parameter given twice", crlf("AUEP 1038 a@b MGCP 1.0", "F: A", "f: R"), 510, 1038),
    ("extension parameter given twice", crlf("MESG 1039 a@b MGCP 1.0", "X-A: 1", "X-A: 2"), 510, 1039),
    ("unknown parameter (539)", crlf("CRCX 1040 a@b MGCP 1.0", "C: 1", "M: recvonly", "ZZ: 1"), 539, 1040),
    ("critical vendor parameter X+ (511)", crlf("AUEP 1041 a@b MGCP 1.0", "X+Acme: 1"), 511, 1041),
    ("forbidden parameter: C in AUEP", crlf("AUEP 1042 a@b MGCP 1.0", "C: 1"), 539, 1042),
    ("forbidden parameter: I in CRCX", crlf("CRCX 1043 a@b MGCP 1.0", "C: 1", "I: 1", "M: recvonly"), 539, 1043),
    ("forbidden parameter: N in AUEP", crlf("AUEP 1044 a@b MGCP 1.0", "N: ca@h"), 539, 1044),
    ("B/PR where T is not allowed (App. B.2.1)", crlf("NTFY 1045 a@b MGCP 1.0", "X: 1", "O: L/hd", "B/PR: L/hu"), 539, 1045),
    ("B/NS in a command (App. B.2.2)", crlf("AUEP 1046 a@b MGCP 1.0", "B/NS: ns"), 539, 1046),
    # -- mandatory parameters ----------------------------------------------
    ("CRCX without C (516)", crlf("CRCX 1047 a@b MGCP 1.0", "M: recvonly"), 516, 1047),
    ("CRCX without M (517)", crlf("CRCX 1048 a@b MGCP 1.0", "C: 5"), 517, 1048),
    ("MDCX without I (515)", crlf("MDCX 1049 a@b MGCP 1.0", "C: 7", "M: sendrecv"), 515, 1049),
    ("RQNT without X", crlf("RQNT 1050 a@b MGCP 1.0", "R: L/hd"), 510, 1050),
    ("NTFY without O", crlf("NTFY 1051 a@b MGCP 1.0", "X: 1"), 510, 1051),
    ("NTFY without X", crlf("NTFY 1052 a@b MGCP 1.0", "O: L/hd"), 510, 1052),
    ("AUCX without F", crlf("AUCX 1053 a@b MGCP 1.0", "I: 1"), 510, 1053),
    ("RSIP without RM", crlf("RSIP 1054 a@b MGCP 1.0", "RD: 0"), 510, 1054),
    ("encapsulated RQNT without X in CRCX", crlf("CRCX 1055 a@b MGCP 1.0", "C: 1", "M: recvonly", "R: L/hu(N)"), 510, 1055),
    ("encapsulated RQNT without X in DLCX", crlf("DLCX 1056 a@b MGCP 1.0", "S: L/ro"), 510, 1056),
    # -- parameter values ---------------------------------------------------
    ("bad call id", crlf("MDCX 1057 a@b MGCP 1.0", "C: xyz", "I: 1"), 516, 1057),
    ("call id of 33 hex digits", crlf("CRCX 1058 a@b MGCP 1.0", "C: " + "A" * 33, "M: recvonly"), 516, 1058),
    ("bad connection id", crlf("DLCX 1059 a@b MGCP 1.0", "I: 12G"), 515, 1059),
    ("bad request identifier", crlf("RQNT 1060 a@b MGCP 1.0", "X: zz"), 510, 1060),
    ("bad mode (517)", crlf("CRCX 1061 a@b MGCP 1.0", "C: 5", "M: bogus"), 517, 1061),
    ("no data mode in MGCP 1.0 (App. A)", crlf("CRCX 1062 a@b MGCP 1.0", "C: 5", "M: data"), 517, 1062),
    ("empty mode", crlf("CRCX 1063 a@b MGCP 1.0", "C: 5", "M:"), 517, 1063),
    ("bad LCO value (541)", crlf("CRCX 1064 a@b MGCP 1.0", "C: 1", "M: recvonly", "L: e:maybe"), 541, 1064),
    ("bad packetization (541)", crlf("CRCX 1065 a@b MGCP 1.0", "C: 1", "M: recvonly", "L: p:20ms"), 541, 1065),
    ("empty codec list (541)", crlf("CRCX 1066 a@b MGCP 1.0", "C: 1", "M: recvonly", "L: a:"), 541, 1066),
    ("inverted LCO range (524)", crlf("CRCX 1067 a@b MGCP 1.0", "C: 1", "M: recvonly", "L: p:30-10"), 524, 1067),
    ("LCO option twice (524)", crlf("MDCX 1068 a@b MGCP 1.0", "C: 1", "I: 1", "L: p:10, P:20"), 524, 1068),
    ("bad quarantine handling (508)", crlf("RQNT 1069 a@b MGCP 1.0", "X: 1", "Q: sometimes"), 508, 1069),
    ("quarantine keyword twice (508)", crlf("RQNT 1070 a@b MGCP 1.0", "X: 1", "Q: loop,step"), 508, 1070),
    ("unknown restart method (536)", crlf("RSIP 1071 a@b MGCP 1.0", "RM: explode"), 536, 1071),
    ("bad restart delay", crlf("RSIP 1072 a@b MGCP 1.0", "RM: restart", "RD: soon"), 510, 1072),
    ("bad reason code", crlf("RSIP 1073 a@b MGCP 1.0", "RM: forced", "E: oops"), 510, 1073),
    ("bad response ack", crlf("AUEP 1074 a@b MGCP 1.0", "K: 12-"), 510, 1074),
    ("inverted response ack range", crlf("AUEP 1075 a@b MGCP 1.0", "K: 9-3"), 510, 1075),
    ("bad notified entity port", crlf("RQNT 1076 a@b MGCP 1.0", "X: 1", "N: ca@h:99999"), 510, 1076),
    ("bad connection parameters", crlf("DLCX 1077 a@b MGCP 1.0", "P: PS"), 510, 1077),
    ("empty item in F", crlf("AUEP 1078 a@b MGCP 1.0", "F: A,,R"), 510, 1078),
    ("bad second endpoint", crlf("CRCX 1079 a@b MGCP 1.0", "C: 1", "M: recvonly", "Z2: nodomain"), 500, 1079),
    # -- requested events, signals, digit maps (§2.3.3, §3.2.2.16) ----------
    ("unknown action (523)", crlf("RQNT 1080 a@b MGCP 1.0", "X: 1", "R: L/hd(Z)"), 523, 1080),
    ("illegal action combination N+A (523)", crlf("RQNT 1081 a@b MGCP 1.0", "X: 1", "R: L/hd(N,A)"), 523, 1081),
    ("illegal action combination D+N (523)", crlf("RQNT 1082 a@b MGCP 1.0", "X: 1", "R: D/x(D,N)"), 523, 1082),
    ("action twice (523)", crlf("RQNT 1083 a@b MGCP 1.0", "X: 1", "R: L/hd(K,K)"), 523, 1083),
    ("nested embedded request (523)", crlf("RQNT 1084 a@b MGCP 1.0", "X: 1", "R: L/hd(E(R(L/hu(E(S(L/dl))))))"), 523, 1084),
    ("embedded request with an unknown group", crlf("RQNT 1085 a@b MGCP 1.0", "X: 1", "R: L/hd(E(X(L/hu)))"), 523, 1085),
    ("empty embedded request", crlf("RQNT 1086 a@b MGCP 1.0", "X: 1", "R: L/hd(E())"), 523, 1086),
    ("bad event name (522)", crlf("RQNT 1087 a@b MGCP 1.0", "X: 1", "R: L/h!d"), 522, 1087),
    ("bad signal name (522)", crlf("RQNT 1088 a@b MGCP 1.0", "X: 1", "S: L/r g"), 522, 1088),
    ("bad observed event name (522)", crlf("NTFY 1089 a@b MGCP 1.0", "X: 1", "O: L/hd@"), 522, 1089),
    ("two parameter groups on a signal (538)", crlf("RQNT 1090 a@b MGCP 1.0", "X: 1", "S: L/rg(to=6000)(x)"), 538, 1090),
    ("two parameter groups on an observed event (538)", crlf("NTFY 1091 a@b MGCP 1.0", "X: 1", "O: L/oc(L/rg)(x)"), 538, 1091),
    ("unbalanced parenthesis in R", crlf("RQNT 1092 a@b MGCP 1.0", "X: 1", "R: L/hd(N"), 510, 1092),
    ("text after the parameters of R", crlf("RQNT 1093 a@b MGCP 1.0", "X: 1", "R: L/hd(N)x"), 510, 1093),
    ("event requested twice", crlf("RQNT 1094 a@b MGCP 1.0", "X: 1", "R: L/hd(N), l/HD"), 510, 1094),
    ("signal requested twice", crlf("RQNT 1095 a@b MGCP 1.0", "X: 1", "S: L/rg, L/rg"), 510, 1095),
    ("bad digit map letter (537)", crlf("RQNT 1096 a@b MGCP 1.0", "X: 1", "D: (xx%)"), 537, 1096),
    ("bad digit map letter in E (537)", crlf("RQNT 1097 a@b MGCP 1.0", "X: 1", "R: L/hd(E(D(x!)))"), 537, 1097),
    ("digit map with an empty alternative", crlf("RQNT 1098 a@b MGCP 1.0", "X: 1", "D: (xx|)"), 510, 1098),
    # -- bodies (§3.1, §3.4) -----------------------------------------------
    ("bad SDP in CRCX (509)", crlf("CRCX 1099 a@b MGCP 1.0", "C: 7", "M: sendrecv", "", "this is not sdp"), 509, 1099),
    ("SDP without v=0 first (509)", crlf("MDCX 1100 a@b MGCP 1.0", "C: 7", "I: 1", "", "c=IN IP4 1.2.3.4", "v=0"), 509, 1100),
    ("bad c= line (509)", crlf("CRCX 1101 a@b MGCP 1.0", "C: 7", "M: sendrecv", "", "v=0", "c=IN IP4"), 509, 1101),
    ("two SDP bodies in a command", crlf("CRCX 1102 a@b MGCP 1.0", "C: 1", "M: sendrecv", "", "v=0", "", "v=0"), 510, 1102),
    ("SDP in RQNT", crlf("RQNT 1103 a@b MGCP 1.0", "X: 1", "", "v=0"), 510, 1103),
    ("non-SDP body in AUEP (not 509: no descriptor there)", crlf("AUEP 1104 a@b MGCP 1.0", "", "F: A"), 510, 1104),
    # -- not MGCP at all -----------------------------------------------------
    ("garbage text", crlf("hello world, this is not MGCP"), 510, None),
    ("garbage bytes", bytes(range(256)), 510, None),
    ("empty datagram", b"", 510, None),
    ("only blank lines", b"\r\n\r\n  \t\r\n", 510, None),
    ("a lone separator", b".\r\n", 510, None),
    ("3-byte datagram", b"AB\n", 510, None),
    ("invalid UTF-8 everywhere", b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc", 510, None),
]

#: Responses whose first line cannot be read: code 510, never answered.
RESPONSES: list[Row] = [
    ("response code of two digits", crlf("20 1 OK"), 510, None),
    ("response code with a letter", crlf("2x0 1 OK"), 510, None),
    ("response without txid", crlf("200"), 510, None),
    ("response txid with letters (osmo-mgw echoes them)", crlf("200 abc OK"), 510, None),
    ("response txid of 10 digits", crlf("200 1234567890 OK"), 510, None),
    ("response code with a superscript digit", "20² 1 OK\r\n".encode(), 510, None),
]


def _describe(item: object) -> tuple[object, ...]:
    if isinstance(item, MalformedMessage):
        return (item.code, item.transaction_id)
    return (type(item).__name__,)


class MalformedCommandTests(SynchronousTestCase):
    """Every malformed command gets the return code and txid of its row."""

    def test_enough_cases(self) -> None:
        """The table keeps at least 40 distinct malformed inputs."""
        self.assertGreaterEqual(len({data for _, data, _, _ in COMMANDS + RESPONSES}), 40)

    def test_codes(self) -> None:
        """Each row decodes to exactly one MalformedMessage with its code and txid."""
        wrong = []
        for label, data, code, txid in COMMANDS:
            got = [_describe(item) for item in decode(data)]
            if got != [(code, txid)]:
                wrong.append((label, [(code, txid)], got))
        self.assertEqual([], wrong)

    def test_not_a_codec_bug(self) -> None:
        """No row reaches the codec's "internal:" safety net; every reason says what is wrong."""
        reasons = [(label, decode(data)[0].reason) for label, data, _, _ in COMMANDS + RESPONSES]  # type: ignore[union-attr]
        self.assertEqual([], [(label, r) for label, r in reasons if r.startswith("internal:") or not r])

    def test_answerable(self) -> None:
        """
        A malformed command with a readable txid is answered with its code
        and the reason as commentary; one without is not answerable.
        """
        bad_mode = decode(crlf("CRCX 1061 a@b MGCP 1.0", "C: 5", "M: bogus"))[0]
        garbage = decode(b"hello world\r\n")[0]
        self.assertEqual((True, False), (bad_mode.answerable, garbage.answerable))  # type: ignore[union-attr]
        response = bad_mode.error_response()  # type: ignore[union-attr]
        self.assertEqual(
            (ReturnCode.UNSUPPORTED_MODE, 1061, "unknown connection mode 'bogus'"),
            (response.code, response.transaction_id, response.comment),
        )

    def test_raw_text_is_kept(self) -> None:
        """The malformed message keeps its text (LF line ends) for the log."""
        item = decode(crlf("CRCX 1061 a@b MGCP 1.0", "C: 5", "M: bogus"))[0]
        self.assertEqual("CRCX 1061 a@b MGCP 1.0\nC: 5\nM: bogus\n", item.raw)  # type: ignore[union-attr]


class MalformedResponseTests(SynchronousTestCase):
    """A response whose first line cannot be read is dropped, never answered."""

    def test_codes(self) -> None:
        """Each row decodes to a MalformedMessage marked as a response, with no txid."""
        wrong = []
        for label, data, code, txid in RESPONSES:
            item = decode(data)[0]
            got = (_describe(item), getattr(item, "is_response", None), getattr(item, "answerable", None))
            if got != ((code, txid), True, False):
                wrong.append((label, got))
        self.assertEqual([], wrong)


class PiggybackIsolationTests(SynchronousTestCase):
    """An error in one piggybacked message must not affect the others (§3.5.5)."""

    def test_every_bad_command_between_good_ones(self) -> None:
        """Each malformed row, put between two good messages, spoils only itself."""
        first = Command.create(Verb.AUEP, 1, "aaln/1@gw")
        last = Response.create(200, 2)
        wrong = []
        for label, data, code, txid in COMMANDS:
            if not data.strip(b"\r\n \t.") or b"\n.\n" in data.replace(b"\r\n", b"\n"):
                continue  # nothing to put between, or a separator of its own
            datagram = b"AUEP 1 aaln/1@gw MGCP 1.0\r\n.\r\n" + data.rstrip(b"\r\n") + b"\r\n.\r\n200 2 OK\r\n"
            items = decode(datagram)
            if len(items) != 3 or items[0] != first or items[2] != last or _describe(items[1]) != (code, txid):
                wrong.append((label, [_describe(i) for i in items]))
        self.assertEqual([], wrong)

    def test_bad_response_between_commands(self) -> None:
        """A broken response between two commands is dropped alone."""
        items = decode(crlf("AUEP 1 a@b MGCP 1.0", ".", "2x0 9 OK", ".", "AUEP 2 a@b MGCP 1.0"))
        self.assertEqual(
            [("Command",), (510, None), ("Command",)], [_describe(i) for i in items]
        )
        self.assertTrue(items[1].is_response)  # type: ignore[union-attr]
