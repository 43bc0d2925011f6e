"""
Table-driven tests of the MGCP codec (L{mgcpswitch.mgcp.decode},
L{mgcpswitch.mgcp.encode}) against RFC 3435.

Every table row is checked in both directions where that makes sense: the
wire text decodes to the expected typed value, and the value built with the
public constructors encodes to the canonical text (CRLF line ends, one
space after each colon, parameters in the fixed order of
L{mgcpswitch.mgcp._params.PARAMETERS}).  Every built message also survives
C{decode(encode(x)) == [x]}.

Each test collects all the rows that disagree before failing, so one run
shows every wrong row.  Malformed input lives in C{test_codec_malformed},
generated values in C{test_codec_properties}.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.mgcp import (
    EMPTY_NOTIFIED_ENTITY,
    EMPTY_SDP,
    Action,
    Capabilities,
    Command,
    ConnectionMode,
    ConnectionParameters,
    DigitMap,
    EmbeddedRequest,
    EndpointName,
    Event,
    EventName,
    ExtensionAction,
    ExtensionName,
    LocalConnectionOptions,
    LocalProtocolError,
    LoopControl,
    PARAMETER_NAMES,
    MalformedMessage,
    NotificationState,
    NotifiedEntity,
    ParamCode,
    QuarantineHandling,
    QuarantineProcessing,
    ReasonCode,
    RequestedEvent,
    ReservationService,
    Response,
    RestartMethod,
    ReturnCode,
    RtpMap,
    SessionDescription,
    SignalRequest,
    Verb,
    code_class,
    decode,
    encode,
    know_endpoint,
    parse_events,
    trusted_command,
    trusted_response,
    parse_requested_events,
    parse_signal_requests,
)

N, A, D, S, I, K = (
    Action.NOTIFY,
    Action.ACCUMULATE,
    Action.ACCUMULATE_DIGIT_MAP,
    Action.SWAP,
    Action.IGNORE,
    Action.KEEP_SIGNALS,
)


def ev(text: str) -> EventName:
    return EventName.parse(text)


def crlf(*lines: str) -> bytes:
    """A datagram of C{lines}, each ended by CRLF."""
    return "".join(line + "\r\n" for line in lines).encode()


def one(data: bytes) -> Command | Response:
    """Decode a datagram holding exactly one well-formed message."""
    items = decode(data)
    if len(items) != 1 or isinstance(items[0], MalformedMessage):
        raise AssertionError(f"{data!r} decoded to {items!r}")
    return items[0]


def disagreements(rows: Iterable[tuple[Any, Any, Any]]) -> list[tuple[Any, Any, Any]]:
    """The C{(label, expected, actual)} rows whose expected and actual differ."""
    return [row for row in rows if row[1] != row[2]]


SDP_A = (
    "v=0",
    "o=- 25678 753849 IN IP4 128.96.41.1",
    "s=-",
    "c=IN IP4 128.96.41.1",
    "t=0 0",
    "m=audio 3456 RTP/AVP 0",
)
SDP_B = (
    "v=0",
    "o=- 4723891 7428910 IN IP4 128.96.63.25",
    "s=-",
    "c=IN IP4 128.96.63.25",
    "t=0 0",
    "m=audio 1296 RTP/AVP 0 101",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
)


# ---------------------------------------------------------------------------
# Verbs


#: (label, wire text, the message it means).  The wire text is canonical,
#: so it is also what encoding the message gives.
VERBS: list[tuple[str, bytes, Command]] = [
    (
        "EPCF",
        crlf("EPCF 2001 aaln/*@rgw.example.net MGCP 1.0", "B: e:mu"),
        Command.create(Verb.EPCF, 2001, "aaln/*@rgw.example.net", bearer_information="e:mu"),
    ),
    (
        "CRCX with SDP",
        crlf("CRCX 1204 aaln/1@rgw-2567.whatever.net MGCP 1.0", "C: A3C47F21456789F0",
             "L: p:10, a:PCMU", "M: sendrecv", "", *SDP_A),
        Command.create(Verb.CRCX, 1204, "aaln/1@rgw-2567.whatever.net", call_id="A3C47F21456789F0",
                       local_options="p:10, a:PCMU", mode="sendrecv", sdp="\n".join(SDP_A)),
    ),
    (
        "CRCX any-of with encapsulated RQNT",
        crlf("CRCX 1205 aaln/$@rgw MGCP 1.0", "C: A3C4", "X: 1F", "M: recvonly",
             "R: L/hd(N)", "S: L/rg"),
        Command.create(Verb.CRCX, 1205, "aaln/$@rgw", call_id="A3C4", request_id="1F",
                       mode="recvonly", requested_events="L/hd(N)", signal_requests="L/rg"),
    ),
    (
        "MDCX",
        crlf("MDCX 1209 aaln/1@rgw MGCP 1.0", "C: A3C47F21456789F0", "I: FDE234C8",
             "M: recvonly", "", *SDP_B),
        Command.create(Verb.MDCX, 1209, "aaln/1@rgw", call_id="A3C47F21456789F0",
                       connection_id="FDE234C8", mode="recvonly", sdp="\n".join(SDP_B)),
    ),
    (
        "DLCX one connection",
        crlf("DLCX 1210 aaln/1@rgw MGCP 1.0", "C: A3C47F21456789F0", "I: FDE234C8"),
        Command.create(Verb.DLCX, 1210, "aaln/1@rgw", call_id="A3C47F21456789F0",
                       connection_id="FDE234C8"),
    ),
    (
        "DLCX from the gateway",
        crlf("DLCX 1211 aaln/1@rgw MGCP 1.0", "E: 900 - Hardware error", "C: A3C4", "I: 1F",
             "P: PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48"),
        Command.create(Verb.DLCX, 1211, "aaln/1@rgw", reason_code="900 - Hardware error",
                       call_id="A3C4", connection_id="1F",
                       connection_parameters="PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48"),
    ),
    (
        "DLCX all-of by call",
        crlf("DLCX 1212 aaln/*@rgw MGCP 1.0", "C: A3C4"),
        Command.create(Verb.DLCX, 1212, "aaln/*@rgw", call_id="A3C4"),
    ),
    (
        "RQNT",
        crlf("RQNT 1057 aaln/1@rgw MGCP 1.0", "N: ca@ca1.whatever.net:5678", "X: 445678945",
             "R: L/hu(N), D/[0-9#*T](D)", "S: L/dl", "Q: loop,process", "T: L/hf",
             "D: (0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)"),
        Command.create(Verb.RQNT, 1057, "aaln/1@rgw", notified_entity="ca@ca1.whatever.net:5678",
                       request_id="445678945", requested_events="L/hu(N), D/[0-9#*T](D)",
                       signal_requests="L/dl", quarantine_handling="loop,process",
                       detect_events="L/hf",
                       digit_map="(0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)"),
    ),
    (
        "NTFY",
        crlf("NTFY 2002 aaln/1@rgw MGCP 1.0", "N: ca@ca1.whatever.net:5678", "X: 3456789AC",
             "O: L/hd, D/9, D/1, D/2, L/hu"),
        Command.create(Verb.NTFY, 2002, "aaln/1@rgw", notified_entity="ca@ca1.whatever.net:5678",
                       request_id="3456789AC", observed_events="L/hd, D/9, D/1, D/2, L/hu"),
    ),
    (
        "AUEP",
        crlf("AUEP 1201 aaln/1@rgw MGCP 1.0", "F: A,R,D,S,X,N,I,T,O,ES,B/PR,B/NS"),
        Command.create(Verb.AUEP, 1201, "aaln/1@rgw", requested_info="A,R,D,S,X,N,I,T,O,ES,B/PR,B/NS"),
    ),
    (
        "AUEP all-of",
        crlf("AUEP 1200 *@rgw MGCP 1.0"),
        Command.create(Verb.AUEP, 1200, "*@rgw"),
    ),
    (
        "AUCX",
        crlf("AUCX 1203 aaln/1@rgw MGCP 1.0", "I: 32F345E2", "F: C,N,L,M,LC,RC,P"),
        Command.create(Verb.AUCX, 1203, "aaln/1@rgw", connection_id="32F345E2",
                       requested_info="C,N,L,M,LC,RC,P"),
    ),
    (
        "RSIP",
        crlf("RSIP 1200 *@rgw-2567.whatever.net MGCP 1.0", "RM: restart", "RD: 0"),
        Command.create(Verb.RSIP, 1200, "*@rgw-2567.whatever.net", restart_method="restart",
                       restart_delay=0),
    ),
    (
        "RSIP with reason",
        crlf("RSIP 1201 aaln/1@rgw MGCP 1.0", "RM: graceful", "RD: 300", "E: 904 Manual intervention"),
        Command.create(Verb.RSIP, 1201, "aaln/1@rgw", restart_method=RestartMethod.GRACEFUL,
                       restart_delay=300, reason_code=ReasonCode(904, "Manual intervention")),
    ),
    (
        "MESG",
        crlf("MESG 1200 aaln/1@rgw.whatever.net MGCP 1.0", "X-Note: hello world"),
        Command.create(Verb.MESG, 1200, "aaln/1@rgw.whatever.net", extensions={"X-Note": "hello world"}),
    ),
    (
        "experimental X-verb",
        crlf("XPER 1300 aaln/1@rgw MGCP 1.0", "C: 1", "X-Foo: bar"),
        Command.create("XPER", 1300, "aaln/1@rgw", call_id="1", extensions={"X-Foo": "bar"}),
    ),
]


class VerbTests(SynchronousTestCase):
    """Every verb of RFC 3435 §2.3, MESG (App. B.3) and an experimental verb."""

    def test_decode(self) -> None:
        """The wire text of each verb decodes to the expected command."""
        self.assertEqual([], disagreements((label, [msg], decode(wire)) for label, wire, msg in VERBS))

    def test_encode(self) -> None:
        """Each command encodes to its canonical wire text."""
        self.assertEqual([], disagreements((label, wire, encode(msg)) for label, wire, msg in VERBS))

    def test_verb_values(self) -> None:
        """Known verbs decode to L{Verb} members, experimental ones to an upper-case name."""
        verbs = [one(wire).verb for _, wire, _ in VERBS]  # type: ignore[union-attr]
        self.assertEqual(
            [Verb.EPCF, Verb.CRCX, Verb.CRCX, Verb.MDCX, Verb.DLCX, Verb.DLCX, Verb.DLCX, Verb.RQNT,
             Verb.NTFY, Verb.AUEP, Verb.AUEP, Verb.AUCX, Verb.RSIP, Verb.RSIP, Verb.MESG, "XPER"],
            verbs,
        )
        self.assertIsInstance(verbs[-1], ExtensionName)

    def test_accessors(self) -> None:
        """The convenience properties read the common parameters."""
        crcx = one(VERBS[2][1])
        self.assertEqual(("A3C4", "1F", "aaln/$@rgw"), (crcx.call_id, crcx.request_id, crcx.endpoint))
        mdcx = one(VERBS[3][1])
        self.assertEqual(("FDE234C8", ("FDE234C8",)), (mdcx.connection_id, mdcx.connection_ids))
        self.assertEqual(SDP_B, mdcx.sdp.lines)  # type: ignore[union-attr]


# ---------------------------------------------------------------------------
# Parameters


def _lco(**kw: Any) -> LocalConnectionOptions:
    return LocalConnectionOptions.create(**kw)


#: (parameter name, wire value, typed value, canonical value).  A canonical
#: value of None means the wire value is already canonical.
PARAMETERS: list[tuple[str, str, Any, str | None]] = [
    ("B", "e:mu", (("e", "mu"),), None),
    ("B", "e:A, x-acme:1", (("e", "A"), ("x-acme", "1")), "e:A,x-acme:1"),
    ("C", "A3C47F21456789F0", "A3C47F21456789F0", None),
    ("A", "a:PCMU;G728, p:10-100, e:on, s:off, t:1, v:L, m:sendonly;recvonly;sendrecv;inactive",
     (Capabilities((("a", "PCMU;G728"), ("p", "10-100"), ("e", "on"), ("s", "off"), ("t", "1"),
                    ("v", "L"), ("m", "sendonly;recvonly;sendrecv;inactive"))),), None),
    ("I", "FDE234C8", ("FDE234C8",), None),
    ("I", "1,2 ,  3", ("1", "2", "3"), "1, 2, 3"),
    ("M", "recvonly", ConnectionMode.RECVONLY, None),
    ("M", "SendRecv", ConnectionMode.SENDRECV, "sendrecv"),
    ("M", "confrnce", ConnectionMode.CONFRNCE, None),
    ("M", "netwtest", ConnectionMode.NETWTEST, None),
    ("M", "acme/mix", ExtensionName("acme/mix"), None),
    ("P", "PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48",
     ConnectionParameters.create(PS=1245, OS=62345, PR=780, OR=45123, PL=10, JI=27, LA=48), None),
    ("P", "ps=5,X-AB=3, acme/rtt=7", ConnectionParameters((("PS", 5), ("X-AB", 3), ("ACME/RTT", 7))),
     "PS=5, X-AB=3, ACME/RTT=7"),
    ("T", "L/hu,L/hd,L/hf,D/[0-9#*]",
     (Event(ev("L/hu")), Event(ev("L/hd")), Event(ev("L/hf")), Event(ev("D/[0-9#*]"))),
     "L/hu, L/hd, L/hf, D/[0-9#*]"),
    ("D", "(0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)",
     DigitMap.parse("(0T|00T|[1-7]xxx|8xxxxxxx|#xxxxxxx|*xx|91xxxxxxxxxx|9011x.T)"), None),
    ("D", "5xxx", DigitMap.parse("5XXX"), None),
    ("D", "", None, None),
    ("ES", "L/hd", (Event(ev("L/hd")),), None),
    ("L", "p:10, a:PCMU", _lco(packetization=10, codecs=["PCMU"]), None),
    ("L", "P:10-20,A:PCMU;G729, E:OFF", LocalConnectionOptions((("p", "10-20"), ("a", "PCMU;G729"), ("e", "OFF"))),
     "p:10-20, a:PCMU;G729, e:OFF"),
    ("MD", "4000", 4000, None),
    ("N", "ca@ca1.whatever.net:5678", NotifiedEntity("ca", "ca1.whatever.net", 5678), None),
    ("N", "ca1.whatever.net", NotifiedEntity(None, "ca1.whatever.net", None), None),
    ("N", "ca@[128.96.41.12]:2727", NotifiedEntity("ca", "[128.96.41.12]", 2727), None),
    ("N", "", EMPTY_NOTIFIED_ENTITY, None),
    ("O", "L/hd, D/8, D/2, L/oc(L/rg), R/uc@A1(15), D/8295555T",
     (Event(ev("L/hd")), Event(ev("D/8")), Event(ev("D/2")), Event(ev("L/oc"), ("L/rg",)),
      Event(ev("R/uc@A1"), ("15",)), Event(ev("D/8295555T"))), None),
    ("PL", "L:1,G:0,D", (("L", 1), ("G", 0), ("D", 0)), "L:1,G:0,D:0"),
    ("Q", "loop,discard", QuarantineHandling(LoopControl.LOOP, QuarantineProcessing.DISCARD), None),
    ("Q", "process, step", QuarantineHandling(LoopControl.STEP, QuarantineProcessing.PROCESS), "step,process"),
    ("Q", "DISCARD", QuarantineHandling(None, QuarantineProcessing.DISCARD), "discard"),
    ("E", "900 Endpoint malfunctioning", ReasonCode(900, "Endpoint malfunctioning"), None),
    ("E", "000", ReasonCode(0), None),
    ("E", "801  /L   failed  here", ReasonCode(801, "failed  here", "L"), "801 /L failed  here"),
    ("R", "L/hu(N), D/[0-9#*T](D)",
     (RequestedEvent(ev("L/hu"), (N,)), RequestedEvent(ev("D/[0-9#*T]"), (D,))), None),
    ("F", "N,X,R,S,D,Q,T,RC,LC,B/NS,X-Acme",
     (ParamCode.NOTIFIED_ENTITY, ParamCode.REQUEST_ID, ParamCode.REQUESTED_EVENTS,
      ParamCode.SIGNAL_REQUESTS, ParamCode.DIGIT_MAP, ParamCode.QUARANTINE_HANDLING,
      ParamCode.DETECT_EVENTS, ParamCode.REMOTE_DESCRIPTOR, ParamCode.LOCAL_DESCRIPTOR,
      ParamCode.NOTIFICATION_STATE, "X-Acme"), None),
    ("F", "c, m", (ParamCode.CALL_ID, ParamCode.CONNECTION_MODE), "C,M"),
    ("F", "", (), None),
    ("X", "445678945", "445678945", None),
    ("K", "6234-6255, 6257, 19030-19044", ((6234, 6255), (6257, 6257), (19030, 19044)), None),
    ("K", "", (), None),
    ("RD", "300", 300, None),
    ("RM", "graceful", RestartMethod.GRACEFUL, None),
    ("RM", "Forced", RestartMethod.FORCED, "forced"),
    ("RM", "restart", RestartMethod.RESTART, None),
    ("RM", "disconnected", RestartMethod.DISCONNECTED, None),
    ("RM", "cancel-graceful", RestartMethod.CANCEL_GRACEFUL, None),
    ("RM", "acme/warm", ExtensionName("acme/warm"), None),
    ("I2", "67890af54c9", "67890af54c9", None),
    ("Z2", "aaln/2@rgw.whatever.net", EndpointName("aaln/2@rgw.whatever.net"), None),
    ("S", 'L/ci(09/14/17/26,"555 1212","John Doe"), L/rg(to=6000)',
     (SignalRequest(ev("L/ci"), ("09/14/17/26", '"555 1212"', '"John Doe"')),
      SignalRequest(ev("L/rg"), ("to=6000",))), None),
    ("S", "", (), None),
    ("Z", "aaln/1@rgw.whatever.net", (EndpointName("aaln/1@rgw.whatever.net"),), None),
    ("B/PR", "L/hd(N), L/hf(N), L/hu(N), B/enf, B/oef, B/qbo",
     (RequestedEvent(ev("L/hd"), (N,)), RequestedEvent(ev("L/hf"), (N,)),
      RequestedEvent(ev("L/hu"), (N,)), RequestedEvent(ev("B/enf")), RequestedEvent(ev("B/oef")),
      RequestedEvent(ev("B/qbo"))), None),
    ("B/NS", "ns", NotificationState.NOTIFICATION, None),
    ("B/NS", "LS", NotificationState.LOCKSTEP, "ls"),
    ("B/NS", "o", NotificationState.OTHER, None),
]

#: Where each parameter may appear in a command: (verb, the other lines the
#: command needs).  Parameters absent here are response-only.
COMMAND_CARRIERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "B": ("EPCF", ()),
    "C": ("CRCX", ("M: recvonly",)),
    "I": ("AUCX", ("F: M",)),
    "M": ("CRCX", ("C: 1",)),
    "P": ("DLCX", ()),
    "T": ("RQNT", ("X: 1",)),
    "D": ("RQNT", ("X: 1",)),
    "L": ("CRCX", ("C: 1", "M: recvonly")),
    "N": ("RQNT", ("X: 1",)),
    "O": ("NTFY", ("X: 1",)),
    "Q": ("RQNT", ("X: 1",)),
    "E": ("RSIP", ("RM: restart",)),
    "R": ("RQNT", ("X: 1",)),
    "F": ("AUEP", ()),
    "X": ("RQNT", ()),
    "K": ("AUEP", ()),
    "RD": ("RSIP", ("RM: restart",)),
    "RM": ("RSIP", ()),
    "Z2": ("CRCX", ("C: 1", "M: recvonly")),
    "S": ("RQNT", ("X: 1",)),
    "B/PR": ("RQNT", ("X: 1",)),
}
_CODE_OF = {code.value: code for code in ParamCode}
#: The Command.create / Response.create keyword for each parameter name.
_ATTR_OF = {
    code.value: attr
    for attr, code in PARAMETER_NAMES.items()
    if attr not in ("connection_ids", "specific_endpoint_ids")
}


def _line(name: str, value: str) -> str:
    return f"{name}: {value}" if value else f"{name}:"


class ParameterTests(SynchronousTestCase):
    """
    Every parameter code of RFC 3435 §3.2.2 and App. B.2 in both directions,
    plus unknown and extension parameters.
    """

    def test_table_covers_every_parameter(self) -> None:
        """The table has a row for every parameter code except the C{F:}-only RC and LC."""
        covered = {name for name, _, _, _ in PARAMETERS}
        expected = {code.value for code in ParamCode} - {"RC", "LC"}
        self.assertEqual(expected, covered)

    def test_decode_in_response(self) -> None:
        """Each wire value, as a response parameter, decodes to the typed value."""
        rows = []
        for name, wire, typed, _ in PARAMETERS:
            response = one(crlf("200 1 OK", _line(name, wire)))
            rows.append((f"{name}: {wire}", {_CODE_OF[name]: typed}, dict(response.params)))
        self.assertEqual([], disagreements(rows))

    def test_decode_in_command(self) -> None:
        """Each wire value decodes the same in a command that allows the parameter."""
        rows = []
        for name, wire, typed, _ in PARAMETERS:
            if name not in COMMAND_CARRIERS:
                continue
            verb, others = COMMAND_CARRIERS[name]
            command = one(crlf(f"{verb} 1 aaln/1@gw MGCP 1.0", *others, _line(name, wire)))
            rows.append((f"{name}: {wire}", typed, command.params[_CODE_OF[name]]))
        self.assertEqual([], disagreements(rows))

    def test_encode(self) -> None:
        """Each typed value encodes to the canonical parameter line."""
        rows = []
        for name, wire, typed, canonical in PARAMETERS:
            expected = crlf("200 1 OK", _line(name, wire if canonical is None else canonical))
            if typed is None:  # an empty D: is the absence of a map, not a value to build
                continue
            response = Response.create(200, 1, **{_ATTR_OF[name]: typed})
            rows.append((name, expected, encode(response)))
        self.assertEqual([], disagreements(rows))

    def test_canonical_text_is_stable(self) -> None:
        """Decoding the canonical text gives the typed value again."""
        rows = []
        for name, wire, typed, canonical in PARAMETERS:
            text = wire if canonical is None else canonical
            rows.append((name, typed, one(crlf("200 1 OK", _line(name, text))).params[_CODE_OF[name]]))
        self.assertEqual([], disagreements(rows))

    def test_unknown_and_extension_parameters_in_responses(self) -> None:
        """
        Responses keep unknown, vendor (C{X-}, C{X+}) and package parameters
        verbatim under their name (RFC 3435 §3.3: a receiver ignores them,
        it does not reject the response).
        """
        wire = crlf("200 1 OK", "ZZ: 1", "X-Acme: a b", "X+Crit: 2", "acme/Foo: bar")
        response = one(wire)
        self.assertEqual(
            {"ZZ": "1", "X-Acme": "a b", "X+Crit": "2", "acme/Foo": "bar"}, dict(response.params)
        )
        self.assertEqual(wire, encode(response))

    def test_extension_parameters_in_commands(self) -> None:
        """
        Commands keep C{X-} vendor and C{pkg/name} package parameters (the
        role decides about packages, 518); both encode back verbatim, after
        the standard parameters.
        """
        wire = crlf("RQNT 1 aaln/1@gw MGCP 1.0", "X: 1", "X-Acme: a b", "x-lower: 1", "acme/Foo: bar")
        command = one(wire)
        self.assertEqual(
            {ParamCode.REQUEST_ID: "1", "X-Acme": "a b", "x-lower": "1", "acme/Foo": "bar"},
            dict(command.params),
        )
        self.assertEqual(wire, encode(command))

    def test_parameter_order(self) -> None:
        """Parameters encode in the fixed canonical order whatever order they were given in."""
        command = one(crlf("CRCX 1 aaln/1@gw MGCP 1.0", "X-Z: 1", "M: recvonly", "S: L/rg", "R: L/hd",
                           "X: 1", "L: p:20", "N: ca@h", "C: 1", "K: 5", "B/PR: L/hu"))
        self.assertEqual(
            crlf("CRCX 1 aaln/1@gw MGCP 1.0", "K: 5", "C: 1", "N: ca@h", "X: 1", "L: p:20",
                 "M: recvonly", "R: L/hd", "S: L/rg", "B/PR: L/hu", "X-Z: 1"),
            encode(command),
        )




class MultiValuedParameterTests(SynchronousTestCase):
    """C{I}, C{Z} and C{A} may repeat in audit responses (RFC 3435 §3.3)."""

    def test_several_lines_combine(self) -> None:
        """Several Z:, A: and I: lines become one tuple each, in order."""
        response = one(crlf("200 1203 OK", "Z: aaln/1@rgw", "Z: aaln/2@rgw", "I: 1", "I: 2, 3",
                            "A: a:PCMU;G728, p:10-100", "A: a:G729, p:30-90"))
        self.assertEqual(
            (EndpointName("aaln/1@rgw"), EndpointName("aaln/2@rgw")),
            response.params[ParamCode.SPECIFIC_ENDPOINT_ID],
        )
        self.assertEqual(("1", "2", "3"), response.connection_ids)
        self.assertEqual(
            (("PCMU", "G728"), ("G729",)),
            tuple(c.codecs for c in response.params[ParamCode.CAPABILITIES]),
        )
        self.assertEqual(EndpointName("aaln/1@rgw"), response.specific_endpoint)

    def test_encoding(self) -> None:
        """Z: and A: encode one line per value; I: as one comma list."""
        response = Response.create(
            200, 1203,
            specific_endpoint_ids=[EndpointName("aaln/1@rgw"), EndpointName("aaln/2@rgw")],
            connection_ids=["1", "2"],
            capabilities=(Capabilities((("a", "PCMU"),)), Capabilities((("a", "G729"), ("e", "on")))),
        )
        self.assertEqual(
            crlf("200 1203 OK", "I: 1, 2", "Z: aaln/1@rgw", "Z: aaln/2@rgw", "A: a:PCMU",
                 "A: a:G729, e:on"),
            encode(response),
        )
        self.assertEqual([response], decode(encode(response)))

    def test_capability_accessors(self) -> None:
        """C{A:} exposes codecs, packages and modes as lists."""
        caps = one(crlf("200 1 OK", "A: a:PCMU;G728, v:L;G;D, m:sendonly;recvonly, x-new:1")).params[
            ParamCode.CAPABILITIES
        ][0]
        self.assertEqual(
            (("PCMU", "G728"), ("L", "G", "D"), ("sendonly", "recvonly"), "1"),
            (caps.codecs, caps.packages, caps.modes, caps.get("x-new")),
        )


# ---------------------------------------------------------------------------
# Requested events, signals, events


EMBEDDED = EmbeddedRequest(
    (RequestedEvent(ev("L/hu"), (N,)), RequestedEvent(ev("D/[0-9#*T]"), (D,))),
    (SignalRequest(ev("L/dl")),),
    DigitMap.parse("5xxx"),
)

#: (wire value of R:, decoded value, canonical text or None).
REQUESTED_EVENTS: list[tuple[str, tuple[RequestedEvent, ...], str | None]] = [
    ("L/hd", (RequestedEvent(ev("L/hd")),), None),
    ("L/hd(N)", (RequestedEvent(ev("L/hd"), (N,)),), None),
    ("L/hd(A)", (RequestedEvent(ev("L/hd"), (A,)),), None),
    ("D/[0-9#*T](D)", (RequestedEvent(ev("D/[0-9#*T]"), (D,)),), None),
    ("L/hf(S)", (RequestedEvent(ev("L/hf"), (S,)),), None),
    ("L/hf(I)", (RequestedEvent(ev("L/hf"), (I,)),), None),
    ("L/hu(K)", (RequestedEvent(ev("L/hu"), (K,)),), None),
    ("L/hu(n, k)", (RequestedEvent(ev("L/hu"), (N, K)),), "L/hu(N,K)"),
    ("L/hu(N,S)", (RequestedEvent(ev("L/hu"), (N, S)),), None),
    ("L/hu(S,A)", (RequestedEvent(ev("L/hu"), (S, A)),), None),
    ("L/hu(S,I)", (RequestedEvent(ev("L/hu"), (S, I)),), None),
    ("L/hu(A,K)", (RequestedEvent(ev("L/hu"), (A, K)),), None),
    ("D/[0-9](D,K)", (RequestedEvent(ev("D/[0-9]"), (D, K)),), None),
    ("L/hu(K,I)", (RequestedEvent(ev("L/hu"), (K, I)),), None),
    # RFC 3435 §2.3.3 / the digest's call flow: embedded R, S and D in grammar order.
    ("L/hd(A,E(R(L/hu(N),D/[0-9#*T](D)),S(L/dl),D(5xxx)))",
     (RequestedEvent(ev("L/hd"), (A, EMBEDDED)),),
     "L/hd(A,E(R(L/hu(N), D/[0-9#*T](D)),S(L/dl),D(5xxx)))"),
    # Other group orders are accepted (§3.2.2.16 "e.g. for NCS") and written R, S, D.
    ("L/hd(A,E(S(L/dl),D(5xxx),R(L/hu(N),D/[0-9#*T](D))))",
     (RequestedEvent(ev("L/hd"), (A, EMBEDDED)),),
     "L/hd(A,E(R(L/hu(N), D/[0-9#*T](D)),S(L/dl),D(5xxx)))"),
    ("L/hd(A,E(D(5xxx),R(L/hu(N), D/[0-9#*T](D)),S(L/dl)))",
     (RequestedEvent(ev("L/hd"), (A, EMBEDDED)),),
     "L/hd(A,E(R(L/hu(N), D/[0-9#*T](D)),S(L/dl),D(5xxx)))"),
    ("L/hd(E(S(L/dl)))",
     (RequestedEvent(ev("L/hd"), (EmbeddedRequest((), (SignalRequest(ev("L/dl")),)),)),),
     "L/hd(E(R(),S(L/dl)))"),
    ("L/hd(K,E(D([0-9].[#T])))",
     (RequestedEvent(ev("L/hd"), (K, EmbeddedRequest(digit_map=DigitMap.parse("[0-9].[#T]")))),),
     "L/hd(K,E(R(),D([0-9].[#T])))"),
    ("L/hd(N,E(R(L/hu(N))))",
     (RequestedEvent(ev("L/hd"), (N, EmbeddedRequest((RequestedEvent(ev("L/hu"), (N,)),)))),), None),
    ("L/hd(acme/Foo)", (RequestedEvent(ev("L/hd"), (ExtensionAction("acme/Foo"),)),), None),
    ("L/hd(N,acme/act(1,2))",
     (RequestedEvent(ev("L/hd"), (N, ExtensionAction("acme/act(1,2)"))),), None),
    ("X/foobar(N)(epar=2)", (RequestedEvent(ev("X/foobar"), (N,), ("epar=2",)),), None),
    ("R/rto@A1(N)(100, st=1)", (RequestedEvent(ev("R/rto@A1"), (N,), ("100", "st=1")),),
     "R/rto@A1(N)(100,st=1)"),
    ("h/rg()(rep=3)", (RequestedEvent(ev("H/rg"), (), ("rep=3",)),), "H/rg()(rep=3)"),
    ("l/HD(n), D/[0-9#*T](d),  L/hu", (
        RequestedEvent(ev("L/hd"), (N,)), RequestedEvent(ev("D/[0-9#*T]"), (D,)),
        RequestedEvent(ev("L/hu"))), "L/hd(N), D/[0-9#*T](D), L/hu"),
    ("G/rt@*, R/ma@$(N), */all(N), L/all(I)", (
        RequestedEvent(ev("G/rt@*")), RequestedEvent(ev("R/ma@$"), (N,)),
        RequestedEvent(ev("*/all"), (N,)), RequestedEvent(ev("L/all"), (I,))), None),
    ("", (), None),
]

#: (wire value of S:, decoded value, canonical text or None).
SIGNAL_REQUESTS: list[tuple[str, tuple[SignalRequest, ...], str | None]] = [
    ("L/rg", (SignalRequest(ev("L/rg")),), None),
    ("L/rg(to=6000)", (SignalRequest(ev("L/rg"), ("to=6000",)),), None),
    ("L/rg(to(6000))", (SignalRequest(ev("L/rg"), ("to(6000)",)),), None),
    ('L/ci(09/14/17/26, "555 1212", "John Doe")',
     (SignalRequest(ev("L/ci"), ("09/14/17/26", '"555 1212"', '"John Doe"')),),
     'L/ci(09/14/17/26,"555 1212","John Doe")'),
    ('L/ci(10/14/17/26,"","Doe, ""JD"" (John)")',
     (SignalRequest(ev("L/ci"), ("10/14/17/26", '""', '"Doe, ""JD"" (John)"')),), None),
    ("A/ann(http://ann.example/a.au,1234567)",
     (SignalRequest(ev("A/ann"), ("http://ann.example/a.au", "1234567")),), None),
    ("G/rt@A1, L/vmwi(+), sl/s(d/5,d/6,d/7)", (
        SignalRequest(ev("G/rt@A1")), SignalRequest(ev("L/vmwi"), ("+",)),
        SignalRequest(ev("SL/s"), ("d/5", "d/6", "d/7"))), "G/rt@A1, L/vmwi(+), SL/S(d/5,d/6,d/7)"),
    ("D/DO(dg=5,-)", (SignalRequest(ev("D/DO"), ("dg=5", "-")),), "D/do(dg=5,-)"),
    ("", (), None),
]


class RequestedEventTests(SynchronousTestCase):
    """C{R:} with every action of RFC 3435 §2.3.3, embedded requests and parameters."""

    def test_decode(self) -> None:
        """Each R: value decodes to the expected requested events."""
        rows = [
            (wire, value, one(crlf("RQNT 1 aaln/1@gw MGCP 1.0", "X: 1", _line("R", wire))).params[
                ParamCode.REQUESTED_EVENTS])
            for wire, value, _ in REQUESTED_EVENTS
        ]
        self.assertEqual([], disagreements(rows))

    def test_encode(self) -> None:
        """Each value encodes to the canonical R: text."""
        rows = []
        for wire, value, canonical in REQUESTED_EVENTS:
            command = Command.create(Verb.RQNT, 1, "aaln/1@gw", request_id="1", requested_events=value)
            rows.append((wire, crlf("RQNT 1 aaln/1@gw MGCP 1.0", "X: 1", _line("R", canonical or wire)),
                         encode(command)))
        self.assertEqual([], disagreements(rows))

    def test_effective_actions(self) -> None:
        """No action means notify; the embedded request is found among the actions."""
        plain, embedded = parse_requested_events("L/hu, L/hd(A,E(S(L/dl)))")
        self.assertEqual((N,), plain.effective_actions)
        self.assertIsNone(plain.embedded)
        self.assertEqual((SignalRequest(ev("L/dl")),), embedded.embedded.signal_requests)  # type: ignore[union-attr]
        self.assertIsNone(embedded.embedded.digit_map)  # type: ignore[union-attr]

    def test_event_names_are_case_insensitive(self) -> None:
        """Package and event names compare equal whatever case the peer used (§2.1.6)."""
        self.assertEqual(parse_requested_events("l/HD(n)"), parse_requested_events("L/hd(N)"))
        self.assertEqual(
            (ev("L/hd").package, ev("L/hd").name, ev("R/uc@a1").connection), ("L", "hd", "a1")
        )


class SignalRequestTests(SynchronousTestCase):
    """C{S:} with parameters, nested parentheses and quoted strings (§3.2.2.21)."""

    def test_decode(self) -> None:
        """Each S: value decodes to the expected signals."""
        rows = [(wire, value, parse_signal_requests(wire)) for wire, value, _ in SIGNAL_REQUESTS]
        rows += [
            (wire, value, one(crlf("RQNT 1 aaln/1@gw MGCP 1.0", "X: 1", _line("S", wire))).params[
                ParamCode.SIGNAL_REQUESTS])
            for wire, value, _ in SIGNAL_REQUESTS
        ]
        self.assertEqual([], disagreements(rows))

    def test_encode(self) -> None:
        """Each value encodes to the canonical S: text."""
        rows = []
        for wire, value, canonical in SIGNAL_REQUESTS:
            command = Command.create(Verb.RQNT, 1, "aaln/1@gw", request_id="1", signal_requests=value)
            rows.append((wire, crlf("RQNT 1 aaln/1@gw MGCP 1.0", "X: 1", _line("S", canonical or wire)),
                         encode(command)))
        self.assertEqual([], disagreements(rows))


# ---------------------------------------------------------------------------
# Local connection options


LCO_ROWS: list[tuple[str, LocalConnectionOptions, str | None]] = [
    ("p:20", _lco(packetization=20), None),
    ("p:10-20", _lco(packetization=(10, 20)), None),
    ("a:PCMU;G729;telephone-event", _lco(codecs=["PCMU", "G729", "telephone-event"]), None),
    ("a:image/t38", _lco(codecs=["image/t38"]), None),
    ("b:32-64", _lco(bandwidth=(32, 64)), None),
    ("t:a0", _lco(type_of_service=0xA0), None),
    ("t:5", _lco(type_of_service=5), None),
    ("e:on", _lco(echo_cancellation=True), None),
    ("e:off", _lco(echo_cancellation=False), None),
    ("gc:auto", _lco(gain_control="auto"), None),
    ("gc:-6", _lco(gain_control=-6), None),
    ("s:on", _lco(silence_suppression=True), None),
    ("r:g", _lco(reservation=ReservationService.GUARANTEED), None),
    ("r:cl", _lco(reservation=ReservationService.CONTROLLED_LOAD), None),
    ("r:be", _lco(reservation=ReservationService.BEST_EFFORT), None),
    ("k:clear:0123456789abcdef", _lco(key="clear:0123456789abcdef"), None),
    ("k:base64:QUJDREVG", _lco(key="base64:QUJDREVG"), None),
    ("nt:IN", _lco(network_type="IN"), None),
    ("nt:ATM", _lco(network_type="ATM"), None),
    ("x-acme:1", _lco(extensions=[("x-acme", "1")]), None),
    ("x+acme:2", _lco(extensions=[("x+acme", "2")]), None),
    ("x-flag", _lco(extensions=[("x-flag", "")]), None),
    ("fm/fmtp:\"0-15\"", _lco(extensions=[("fm/fmtp", '"0-15"')]), None),
    ('a:PCMU;telephone-event, fmtp:"telephone-event 0-15,16"',
     _lco(codecs=["PCMU", "telephone-event"], extensions=[("fmtp", '"telephone-event 0-15,16"')]), None),
    ("p:10, a:PCMU, b:64, t:b8, e:on, gc:3, s:off, r:be, k:clear:abc, nt:IN, x-a:1",
     _lco(packetization=10, codecs=["PCMU"], bandwidth=64, type_of_service=0xB8,
          echo_cancellation=True, gain_control=3, silence_suppression=False,
          reservation=ReservationService.BEST_EFFORT, key="clear:abc", network_type="IN",
          extensions=[("x-a", "1")]), None),
    # Case and spacing are free on the wire; keys are canonicalised to lower case.
    ("  A:PCMU ,P: 20", LocalConnectionOptions((("a", "PCMU"), ("p", "20"))), "a:PCMU, p:20"),
]


class LocalConnectionOptionTests(SynchronousTestCase):
    """C{L:} (RFC 3435 §2.3.5, §3.2.2.10; RFC 3660 FM package C{fmtp})."""

    def test_decode(self) -> None:
        """Each L: value decodes to the options C{create} builds."""
        rows = [
            (wire, value, one(crlf("CRCX 1 aaln/1@gw MGCP 1.0", "C: 1", "M: recvonly", f"L: {wire}")).params[
                ParamCode.LOCAL_CONNECTION_OPTIONS])
            for wire, value, _ in LCO_ROWS
        ]
        self.assertEqual([], disagreements(rows))

    def test_encode(self) -> None:
        """Each value encodes to the canonical text."""
        rows = [(wire, canonical or wire.strip(), str(value)) for wire, value, canonical in LCO_ROWS]
        self.assertEqual([], disagreements(rows))

    def test_typed_accessors(self) -> None:
        """The standard options are read as typed values."""
        lco = LocalConnectionOptions.parse(
            "p:10-20, a:PCMU;G729, b:64, t:b8, e:ON, gc:-3, s:off, r:cl, k:clear:a:b, nt:IN, "
            'x-a:1, fmtp:"x,y"'
        )
        self.assertEqual(
            ((10, 20), ("PCMU", "G729"), (64, 64), 0xB8, True, -3, False,
             ReservationService.CONTROLLED_LOAD, "clear:a:b", "IN",
             (("x-a", "1"), ("fmtp", '"x,y"'))),
            (lco.packetization, lco.codecs, lco.bandwidth, lco.type_of_service,
             lco.echo_cancellation, lco.gain_control, lco.silence_suppression, lco.reservation,
             lco.get("k"), lco.network_type, lco.extensions),
        )
        self.assertEqual("auto", LocalConnectionOptions.parse("gc:Auto").gain_control)
        empty = LocalConnectionOptions.parse("")
        self.assertEqual((None, (), None, None), (empty.packetization, empty.codecs, empty.reservation,
                                                  empty.echo_cancellation))

    def test_create_orders_options(self) -> None:
        """C{create} writes the standard keys in the order p, a, b, t, e, gc, s, r, k, nt."""
        lco = _lco(network_type="IN", codecs=["PCMU"], packetization=20, silence_suppression=True)
        self.assertEqual("p:20, a:PCMU, s:on, nt:IN", str(lco))


# ---------------------------------------------------------------------------
# Other value parameters


class ConnectionParameterTests(SynchronousTestCase):
    """C{P:} (RFC 3435 §2.3.7, §3.2.2.7)."""

    def test_values(self) -> None:
        """Statistics read by name; extensions kept; unknown names give None."""
        value = one(crlf("250 1 OK", "P: PS=1245, OS=62345, PR=780, OR=45123, PL=-3, JI=27, LA=48, X-AB=9")).params[
            ParamCode.CONNECTION_PARAMETERS
        ]
        self.assertEqual(
            {"PS": 1245, "OS": 62345, "PR": 780, "OR": 45123, "PL": -3, "JI": 27, "LA": 48, "X-AB": 9},
            value.as_dict(),
        )
        self.assertEqual((1245, 9, None), (value.get("ps"), value.get("x-ab"), value.get("XX")))

    def test_create(self) -> None:
        """C{create} keeps the order given and upper-cases names."""
        self.assertEqual(
            "PS=5, OS=860, PR=5, OR=860, PL=0, JI=0",
            str(ConnectionParameters.create(PS=5, OS=860, pr=5, OR=860, PL=0, JI=0)),
        )


class QuarantineAndRestartTests(SynchronousTestCase):
    """C{Q:} in both orders, C{RM:}, C{RD:}, C{E:}."""

    def test_quarantine_orders(self) -> None:
        """Both keyword orders are read; loop-control is written first (App. A)."""
        rows = []
        for wire in ("loop,discard", "discard,loop", "discard, loop", "LOOP,DISCARD"):
            value = one(crlf("RQNT 1 a@b MGCP 1.0", "X: 1", f"Q: {wire}")).params[ParamCode.QUARANTINE_HANDLING]
            rows.append((wire, "loop,discard", str(value)))
        value = QuarantineHandling.parse("discard")
        rows.append(("defaults", (LoopControl.STEP, QuarantineProcessing.DISCARD),
                     (value.effective_loop, value.effective_processing)))
        self.assertEqual([], disagreements(rows))

    def test_restart(self) -> None:
        """RSIP's method, delay and reason."""
        rsip = one(crlf("RSIP 5 aaln/1@gw MGCP 1.0", "RM: disconnected", "RD: 120", "E: 902 Loss of sync"))
        self.assertEqual(
            (RestartMethod.DISCONNECTED, 120, ReasonCode(902, "Loss of sync")),
            (rsip.params[ParamCode.RESTART_METHOD], rsip.params[ParamCode.RESTART_DELAY],
             rsip.params[ParamCode.REASON_CODE]),
        )

    def test_requested_info_codes(self) -> None:
        """F: names RC and LC (descriptors) and B/NS (base package), as parameter codes."""
        aucx = one(crlf("AUCX 1 aaln/1@gw MGCP 1.0", "I: 1", "F: RC,LC"))
        auep = one(crlf("AUEP 1 aaln/1@gw MGCP 1.0", "F: B/NS, b/pr"))
        self.assertEqual(
            ((ParamCode.REMOTE_DESCRIPTOR, ParamCode.LOCAL_DESCRIPTOR),
             (ParamCode.NOTIFICATION_STATE, ParamCode.PERSISTENT_EVENTS)),
            (aucx.params[ParamCode.REQUESTED_INFO], auep.params[ParamCode.REQUESTED_INFO]),
        )

    def test_response_ack(self) -> None:
        """K: ranges, a single id, and the empty K: that asks for a 000 (§3.5.6)."""
        rqnt = one(crlf("RQNT 1 a@b MGCP 1.0", "X: 1", "K: 6234-6255, 6257, 19030-19044"))
        final = one(crlf("200 1 OK", "K:"))
        self.assertEqual(((6234, 6255), (6257, 6257), (19030, 19044)), rqnt.response_ack)
        self.assertEqual((), final.response_ack)
        self.assertIsNone(one(crlf("200 1 OK")).response_ack)


# ---------------------------------------------------------------------------
# Responses


#: (label, wire text, the response it means); wire text canonical.
RESPONSES: list[tuple[str, bytes, Response]] = [
    ("000 acknowledgement", crlf("000 1206"), Response.create(0, 1206)),
    ("100 provisional", crlf("100 1207 Transaction executing"), Response.create(100, 1207)),
    ("101 queued", crlf("101 1207 Queued"), Response.create(101, 1207, "Queued")),
    ("200 ok", crlf("200 1203 OK"), Response.create(200, 1203)),
    ("250 with stats", crlf("250 1210 OK", "P: PS=5, OS=860, PR=5, OR=860, PL=0, JI=0"),
     Response.create(250, 1210, "OK", connection_parameters=ConnectionParameters.create(
         PS=5, OS=860, PR=5, OR=860, PL=0, JI=0))),
    ("401 transient", crlf("401 1208 Phone off hook"), Response.create(401, 1208, "Phone off hook")),
    ("510 no commentary", crlf("510 1209"), Response.create(510, 1209, "")),
    ("518 with PL", crlf("518 1209 Unsupported package", "PL: L:1,G:0"),
     Response.create(518, 1209, "Unsupported package", package_list=(("L", 1), ("G", 0)))),
    ("521 with N", crlf("521 1204 Redirect", "N: CA-1@whatever.net"),
     Response.create(521, 1204, "Redirect", notified_entity="CA-1@whatever.net")),
    ("800 package code", crlf("801 1234 /XYZ Package specific"),
     Response.create(801, 1234, "Package specific", package="XYZ")),
    ("8xx package only", crlf("899 1235 /acme"), Response.create(899, 1235, "", package="acme")),
    ("final after provisional", crlf("200 1207 OK", "K:"), Response.create(200, 1207, response_ack=())),
    ("CRCX 200", crlf("200 1204 OK", "I: FDE234C8", "", *SDP_A),
     Response.create(200, 1204, connection_id="FDE234C8", sdp="\n".join(SDP_A))),
    ("AUCX two descriptors", crlf("200 1206 OK", "C: A3C4", "M: sendrecv", "", *SDP_A, "", *SDP_B),
     Response.create(200, 1206, call_id="A3C4", mode="sendrecv", sdp="\n".join(SDP_A),
                     second_sdp="\n".join(SDP_B))),
    ("AUCX empty local descriptor", crlf("200 1206 OK", "", "v=0", "", *SDP_B),
     Response.create(200, 1206, sdp=EMPTY_SDP, second_sdp="\n".join(SDP_B))),
    ("unknown code", crlf("299 1 Odd"), Response.create(299, 1, "Odd")),
]


class TrustedBuildersTests(SynchronousTestCase):
    """trusted_command / trusted_response: no checks, but values like any other."""

    def test_frozen_values_equal_to_created_ones(self) -> None:
        """They build the frozen classes themselves, every field where C{create} puts it."""
        sdp = SessionDescription.create("10.0.0.1", 4000, [0])
        command = trusted_command(
            Verb.CRCX, 7, EndpointName("aaln/1@gw"), Command.create(Verb.CRCX, 7, "aaln/1@gw", call_id="A1").params,
            sdp, "MGCP 1.0 NCS 1.0",
        )
        self.assertIs(type(command), Command)
        self.assertEqual(
            command, Command.create(Verb.CRCX, 7, "aaln/1@gw", call_id="A1", sdp=sdp, version="MGCP 1.0 NCS 1.0")
        )
        created = Response.create(250, 9, "Gone", connection_id="C1")
        response = trusted_response(created.code, 9, "Gone", created.params, None, sdp, "pkg")
        self.assertIs(type(response), Response)
        self.assertEqual(
            (response.code, response.transaction_id, response.comment, response.params, response.sdp,
             response.second_sdp, response.package),
            (250, 9, "Gone", created.params, None, sdp, "pkg"),
        )
        self.assertEqual(hash(response), hash(trusted_response(created.code, 9, "Gone", created.params, None, sdp, "pkg")))
        with self.assertRaises(AttributeError):  # FrozenInstanceError
            response.code = ReturnCode.OK  # type: ignore[misc]


class ResponseTests(SynchronousTestCase):
    """Responses of every code class (RFC 3435 §2.4, §3.3)."""

    def test_decode(self) -> None:
        """Each wire text decodes to the expected response."""
        self.assertEqual([], disagreements((label, [r], decode(wire)) for label, wire, r in RESPONSES))

    def test_encode(self) -> None:
        """Each response encodes to its canonical wire text."""
        self.assertEqual([], disagreements((label, wire, encode(r)) for label, wire, r in RESPONSES))

    def test_classes(self) -> None:
        """Code classes, known codes as L{ReturnCode}, unknown ones as plain ints."""
        ack, prov, _, ok = (one(RESPONSES[i][1]) for i in range(4))
        self.assertEqual(
            (True, False, True, False, True, True),
            (ack.is_ack, ack.is_final, prov.is_provisional, prov.is_final, ok.is_final, ok.is_success),
        )
        self.assertIs(ReturnCode.OK, ok.code)
        odd = one(crlf("299 1 Odd"))
        self.assertEqual((299, False, 200), (odd.code, isinstance(odd.code, ReturnCode), code_class(odd.code)))
        self.assertEqual([0, 100, 200, 521, 400, 510, 510], [code_class(c) for c in (1, 199, 299, 300, 499, 599, 801)])

    def test_commentary(self) -> None:
        """The commentary is the rest of the line, runs of blanks between words kept."""
        response = one(b"200   1203 \t Connection  was\tdeleted  \r\n")
        self.assertEqual((1203, "Connection  was\tdeleted"), (response.transaction_id, response.comment))

    def test_package_needs_a_name(self) -> None:
        """
        C{/name} after the txid is an 8xx package; a tab may follow it; a
        lone "/" is commentary.
        """
        rows = [
            (wire, expected, (r.package, r.comment))
            for wire, expected in (
                (b"801 1 /L\tbusy line\r\n", ("L", "busy line")),
                (b"801 1 /\r\n", (None, "/")),
                (b"801 1 / x\r\n", (None, "/ x")),
            )
            for r in [one(wire)]
        ]
        self.assertEqual([], disagreements(rows))

    def test_txid_zero_and_leading_zeros(self) -> None:
        """A response txid is read numerically (osmo-mgw answers parse errors with 000000)."""
        self.assertEqual([0, 42], [one(b"510 000000 FAIL\r\n").transaction_id, one(b"200 0042 OK\r\n").transaction_id])

    def test_unreadable_response_parameters_are_ignored(self) -> None:
        """
        A response parameter whose value cannot be read is left out, like an
        unknown one; a line without a colon is skipped (§3.3).
        """
        response = one(crlf("200 1 OK", "M: bogus", "I: 1", "garbage line", "K: x-y"))
        self.assertEqual({ParamCode.CONNECTION_ID: ("1",)}, dict(response.params))


    def test_line_break_in_commentary_refused(self) -> None:
        """
        A commentary holding a line break would inject lines: encoding
        refuses it, however often it is tried, while a clean commentary
        encodes the same each time (the encoder remembers clean ones).
        """
        for _ in range(2):
            for comment in ("OK\r\nI: 1", "OK\n", "\r"):
                self.assertRaises(LocalProtocolError, encode, Response(200, 1, comment))
            self.assertEqual(b"200 1 Fine\r\n", encode(Response(200, 1, "Fine")))
            self.assertEqual(b"200 2\r\n", encode(Response(200, 2, "")))

    def test_recurring_response_only_its_id_new(self) -> None:
        """
        A response whose bytes after the id were read before decodes the
        same as the first time, with its own id (the decoder keeps what it
        read by those bytes); each wire text twice, the second time under
        another id.
        """
        rows = []
        for label, wire, expected in RESPONSES:
            for r in decode(wire):
                if type(r) is Response and wire[:1].isdigit():
                    again = wire.replace(b" %d" % r.transaction_id, b" 987654321", 1)
                    rows.append((label, [expected.with_transaction_id(987654321)], decode(again)))
                    rows.append((label + " (first id)", [expected], decode(wire)))
        self.assertEqual([], disagreements(rows))

    def test_recurring_response_not_mistaken(self) -> None:
        """
        Only "<3 digits> <1-9 digits> <rest>" takes the short way: a tab
        or a second space before the id, a piggybacked datagram and an
        unreadable id are read afresh each time.
        """
        for _ in range(2):
            tab = one(b"200\t5 77 OK\r\n")
            self.assertEqual((5, "77 OK"), (tab.transaction_id, tab.comment))
            spaced = one(b"200  6 OK\r\n")
            self.assertEqual((6, "OK"), (spaced.transaction_id, spaced.comment))
            piggy = decode(b"200 7 OK\r\n.\r\n200 8 OK\r\n")
            self.assertEqual([7, 8], [r.transaction_id for r in piggy])
            self.assertIsInstance(decode(b"200 1234567890 OK\r\n")[0], MalformedMessage)
            self.assertIsInstance(decode(b"2000 12 OK\r\n")[0], MalformedMessage)


# ---------------------------------------------------------------------------
# SDP


class SessionDescriptionTests(SynchronousTestCase):
    """Session descriptions after the empty line (RFC 3435 §3.3, §3.4)."""

    def test_command_sdp(self) -> None:
        """A CRCX carries one description; its views read the address and port."""
        crcx = one(VERBS[1][1])
        self.assertEqual((("128.96.41.1", 3456), ("PCMU",)), (crcx.sdp.rtp_address, crcx.sdp.audio.codecs))  # type: ignore[union-attr]

    def test_two_descriptions(self) -> None:
        """A response carries up to two descriptions, local first."""
        response = one(RESPONSES[13][1])
        self.assertEqual((SDP_A, SDP_B), tuple(d.lines for d in response.descriptors))
        self.assertEqual(
            ({101: "0-15"}, (0, 101)), (response.second_sdp.audio.fmtp, response.second_sdp.audio.payload_types)  # type: ignore[union-attr]
        )

    def test_empty_descriptor(self) -> None:
        """The single line C{v=0} is the descriptor that does not exist."""
        response = one(crlf("200 1 OK", "", "v=0", "", "v=0"))
        self.assertEqual((EMPTY_SDP, EMPTY_SDP, True), (response.sdp, response.second_sdp, response.sdp.is_empty))  # type: ignore[union-attr]
        self.assertEqual(crlf("200 1 OK", "", "v=0", "", "v=0"), encode(response))

    def test_lf_sdp(self) -> None:
        """An LF-only body reads the same as CRLF, and is written back with CRLF."""
        lf = ("\n".join(["CRCX 1204 aaln/1@rgw-2567.whatever.net MGCP 1.0", "C: A3C47F21456789F0",
                         "L: p:10, a:PCMU", "M: sendrecv", "", *SDP_A]) + "\n").encode()
        self.assertEqual(one(VERBS[1][1]), one(lf))

    def test_replaced_description_is_written_from_its_lines(self) -> None:
        """
        A decoded description keeps its wire text to encode faster; a copy
        with other lines (C{dataclasses.replace}) must not inherit it.
        """
        import dataclasses

        crcx = one(VERBS[1][1])
        sdp = dataclasses.replace(crcx.sdp, lines=("v=0", "c=IN IP4 10.0.0.9"))  # type: ignore[type-var]
        moved = dataclasses.replace(crcx, sdp=sdp)
        self.assertIn(b"\r\n\r\nv=0\r\nc=IN IP4 10.0.0.9\r\n", encode(moved))
        self.assertEqual([moved], decode(encode(moved)))

    def test_create(self) -> None:
        """C{SessionDescription.create} writes the canonical line order."""
        sdp = SessionDescription.create(
            "192.168.5.7", 6058, [0, 101], rtpmaps=[RtpMap(101, "telephone-event", 8000)],
            fmtp={101: "0-15"}, ptime=20, direction="sendrecv", session_id="1", session_version="2",
        )
        self.assertEqual(
            ("v=0", "o=- 1 2 IN IP4 192.168.5.7", "s=-", "c=IN IP4 192.168.5.7", "t=0 0",
             "m=audio 6058 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
             "a=ptime:20", "a=sendrecv"),
            sdp.lines,
        )
        response = Response.create(200, 1, connection_id="1", sdp=sdp)
        self.assertEqual([response], decode(encode(response)))


# ---------------------------------------------------------------------------
# Framing: piggybacking, line ends, whitespace, case, version


class PiggybackTests(SynchronousTestCase):
    """Several messages in one datagram, separated by a "." line (§3.5.5)."""

    def test_decode(self) -> None:
        """Each message decodes in order; responses and commands may mix."""
        data = crlf("200 1203 OK", ".", "AUEP 1060 rtpbridge/1@mgw MGCP 1.0", ".",
                    "RQNT 1061 aaln/1@gw MGCP 1.0", "X: 1", "R: L/hd")
        self.assertEqual(
            [Response.create(200, 1203), Command.create(Verb.AUEP, 1060, "rtpbridge/1@mgw"),
             Command.create(Verb.RQNT, 1061, "aaln/1@gw", request_id="1", requested_events="L/hd")],
            decode(data),
        )

    def test_with_sdp(self) -> None:
        """A message with a body can be followed by another one."""
        data = VERBS[1][1] + b".\r\n" + VERBS[4][1]
        self.assertEqual([one(VERBS[1][1]), one(VERBS[4][1])], decode(data))

    def test_bad_message_between_good_ones(self) -> None:
        """A malformed message does not affect its neighbours."""
        data = crlf("AUEP 1 aaln/1@gw MGCP 1.0", ".", "AUEP 2 aaln/1@gw MGCP 1.0", "C: 1", ".",
                    "200 3 OK")
        first, bad, last = decode(data)
        self.assertEqual(Command.create(Verb.AUEP, 1, "aaln/1@gw"), first)
        self.assertEqual((539, 2), (bad.code, bad.transaction_id))  # type: ignore[union-attr]
        self.assertEqual(Response.create(200, 3), last)

    def test_trailing_separator_and_lf(self) -> None:
        """LF-only separators work; a trailing "." line adds no message."""
        self.assertEqual(
            [Command.create(Verb.AUEP, 1, "a@b"), Command.create(Verb.AUEP, 2, "a@b")],
            decode(b"AUEP 1 a@b MGCP 1.0\n.\nAUEP 2 a@b MGCP 1.0\n.\n"),
        )

    def test_encode(self) -> None:
        """A list of messages encodes with "." lines between them."""
        batch = [Response.create(200, 1), Command.create(Verb.AUEP, 2, "a@b")]
        self.assertEqual(b"200 1 OK\r\n.\r\nAUEP 2 a@b MGCP 1.0\r\n", encode(batch))
        self.assertEqual(batch, decode(encode(batch)))


class LineEndingTests(SynchronousTestCase):
    """EOL is CRLF or LF on receipt; CRLF is generated (§3.1, App. A)."""

    def test_lf_equals_crlf(self) -> None:
        """Every verb's message reads the same with LF-only line ends."""
        rows = [(label, decode(wire), decode(wire.replace(b"\r\n", b"\n"))) for label, wire, _ in VERBS]
        rows += [(label, decode(wire), decode(wire.replace(b"\r\n", b"\n"))) for label, wire, _ in RESPONSES]
        self.assertEqual([], disagreements(rows))

    def test_mixed_and_missing_final_eol(self) -> None:
        """Mixed line ends, and a last line without an EOL, are read."""
        expected = Command.create(Verb.RQNT, 1, "a@b", request_id="1", signal_requests="L/dl")
        self.assertEqual(
            [[expected]] * 3,
            [decode(b"RQNT 1 a@b MGCP 1.0\nX: 1\r\nS: L/dl\r\n"),
             decode(b"RQNT 1 a@b MGCP 1.0\r\nX: 1\r\nS: L/dl"),
             decode(b"RQNT 1 a@b MGCP 1.0\nX: 1\nS: L/dl\n\n")],
        )

    def test_generates_crlf(self) -> None:
        """The encoder ends every line with CRLF, SDP lines included."""
        data = encode(one(VERBS[1][1].replace(b"\r\n", b"\n")))
        self.assertEqual(data.count(b"\n"), data.count(b"\r\n"))


class WhitespaceAndCaseTests(SynchronousTestCase):
    """Runs of SP/HTAB in the header; case-insensitive names (§3.1, §3.2.1)."""

    def test_whitespace_in_command_line(self) -> None:
        """Runs of spaces and tabs separate the four fields."""
        self.assertEqual(
            Command.create(Verb.AUEP, 1042, "rtpbridge/1@mgw"),
            one(b"AUEP  1042\trtpbridge/1@mgw \t MGCP   1.0 \r\n"),
        )

    def test_whitespace_in_parameter_lines(self) -> None:
        """Blanks around values are not part of them; no space after the colon is fine."""
        rqnt = one(b"RQNT 1 a@b MGCP 1.0\r\nX:1\r\nS:\t L/dl \t\r\nR :  L/hd(N)  \r\n")
        self.assertEqual(
            Command.create(Verb.RQNT, 1, "a@b", request_id="1", signal_requests="L/dl", requested_events="L/hd(N)"),
            rqnt,
        )

    def test_case_insensitive(self) -> None:
        """Verbs, the protocol name, parameter names and keywords ignore case."""
        rows = [
            ("verb", one(b"AUEP 1 a@b MGCP 1.0\r\n"), one(b"auep 1 a@b MGCP 1.0\r\n")),
            ("mixed verb", one(b"AUEP 1 a@b MGCP 1.0\r\n"), one(b"AuEp 1 a@b mgcp 1.0\r\n")),
            ("x-verb", one(b"XPER 1 a@b MGCP 1.0\r\n"), one(b"xPer 1 a@b MGCP 1.0\r\n")),
            ("names", one(crlf("CRCX 1 a@b MGCP 1.0", "C: 8", "L: p:20, a:PCMU", "M: recvonly", "B/PR: L/hu")),
             one(crlf("crcx 1 a@b MGCP 1.0", "c: 8", "l: P:20, A:PCMU", "m: RecvOnly", "b/pr: l/HU"))),
            ("rsip", one(crlf("RSIP 1 a@b MGCP 1.0", "RM: restart")), one(crlf("RSIP 1 a@b MGCP 1.0", "rm: RESTART"))),
        ]
        self.assertEqual([], disagreements(rows))

    def test_endpoint_spelling_is_kept(self) -> None:
        """Endpoint names keep the peer's spelling (§2.1.2); their key ignores case."""
        name = one(b"AUEP 1 AALN/1@RGW MGCP 1.0\r\n").endpoint  # type: ignore[union-attr]
        self.assertEqual(("AALN/1@RGW", "aaln/1@rgw"), (name, name.key))


class VersionTests(SynchronousTestCase):
    """The version field, optionally followed by a profile (§3.2.1.4)."""

    def test_profile(self) -> None:
        """C{MGCP 1.0 NCS 1.0} is read with its profile and written back."""
        wire = crlf("RSIP 2046 aaln/1@[192.168.2.1] MGCP 1.0 NCS 1.0", "RM: restart")
        command = one(wire)
        self.assertEqual(("MGCP 1.0 NCS 1.0", "NCS 1.0"), (command.version, command.profile))
        self.assertEqual(wire, encode(command))

    def test_no_profile(self) -> None:
        """Without a profile the version is plain C{MGCP 1.0}."""
        command = one(b"AUEP 1 a@b mgcp 1.0\r\n")
        self.assertEqual(("MGCP 1.0", None), (command.version, command.profile))

    def test_profile_whitespace(self) -> None:
        """Runs of blanks inside the profile collapse to single spaces."""
        self.assertEqual("MGCP 1.0 NCS 1.0", one(b"AUEP 1 a@b MGCP 1.0  NCS\t1.0\r\n").version)


# ---------------------------------------------------------------------------
# Round trips of every built value above


class RoundTripTests(SynchronousTestCase):
    """C{decode(encode(x)) == [x]} for every message built in this module."""

    def test_tables(self) -> None:
        """Every command and response of the tables round-trips."""
        messages: list[Command | Response] = [m for _, _, m in VERBS] + [r for _, _, r in RESPONSES]
        for name, _, value, _ in PARAMETERS:
            if value is not None:
                messages.append(Response.create(200, 1, **{_ATTR_OF[name]: value}))
        for _, value, _ in REQUESTED_EVENTS:
            messages.append(Command.create(Verb.RQNT, 1, "a@b", request_id="1", requested_events=value))
            messages.append(Command.create(Verb.CRCX, 1, "a@b", call_id="1", mode="recvonly",
                                           request_id="1", persistent_events=value))
        for _, value, _ in SIGNAL_REQUESTS:
            messages.append(Command.create(Verb.RQNT, 1, "a@b", request_id="1", signal_requests=value))
        for _, value, _ in LCO_ROWS:
            messages.append(Command.create(Verb.MDCX, 1, "a@b", call_id="1", connection_id="2", local_options=value))
        rows = [(encode(m), [m], decode(encode(m))) for m in messages]
        self.assertEqual([], disagreements(rows))
        self.assertEqual([], disagreements([("batch", messages, decode(encode(messages)))]))



class SharedValueTests(SynchronousTestCase):
    """
    Values that recur on the wire decode to shared objects, so that a call
    makes no new ones for them (each object that outlives a few of the
    collector's young passes ends in its oldest generation and brings a
    full collection closer).
    """

    def test_known_endpoint_decodes_to_itself(self) -> None:
        """
        A declared name is what its commands carry, also after more unknown
        names than the decoder keeps (8,192) went through it.
        """
        mine = EndpointName("aaln/7@shared-gw")
        know_endpoint(mine)
        for n in range(9000):
            [other] = decode(b"NTFY %d aaln/%d@elsewhere MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n" % (n + 1, n))
            self.assertEqual(f"aaln/{n}@elsewhere", other.endpoint)  # type: ignore[union-attr]
        [command] = decode(b"NTFY 99 aaln/7@shared-gw MGCP 1.0\r\nX: 1\r\nO: L/hd\r\n")
        self.assertIs(mine, command.endpoint)  # type: ignore[union-attr]

    def test_events_without_parameters_are_shared(self) -> None:
        """The digits of two numbers are the same Event objects; events with parameters are not memoised singly."""
        first = parse_events("D/2,D/0,D/1,L/oc(L/rg)")
        second = parse_events("D/1, D/2")
        self.assertIs(first[0], second[1])
        self.assertIs(first[2], second[0])
        self.assertEqual(Event(EventName("L/oc"), ("L/rg",)), first[3])

    def test_many_distinct_events(self) -> None:
        """
        A gateway reporting every number as one event (more than the 1,024
        kept) gets each read right, and the digits are shared again after.
        """
        for n in range(3000):
            self.assertEqual((Event(EventName(f"D/555{n:04d}")),), parse_events(f"D/555{n:04d}"))
        self.assertIs(parse_events("D/7")[0], parse_events("D/7,D/8")[0])
