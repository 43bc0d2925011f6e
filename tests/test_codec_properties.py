"""
Property-based tests of the MGCP codec (L{mgcpswitch.mgcp.decode} and
L{mgcpswitch.mgcp.encode}).

Two kinds of property:

  - round trips: for every value type of the protocol core there is a
    strategy that builds valid values (through the public constructors:
    C{EventName.create}, C{LocalConnectionOptions.create},
    C{SessionDescription.create}, C{Command.create}, ...), and whole
    commands of every verb (obeying the presence and wildcard rules of
    RFC 3435 §2.3, §3.2.2) and whole responses; C{decode(encode(x)) == [x]}
    must hold for each, and for piggybacked lists of them (§3.5.5);
  - a bounded fuzz: real datagrams mutated by the engine of
    C{scripts/fuzz-codec} (byte flips, truncation, insertion, line
    shuffles, splices) and plain random bytes never make C{decode} raise,
    never trip the codec's "internal:" safety net, always give a non-empty
    list of messages, and each call returns quickly.

Hypothesis runs without an example database and with a fixed number of
examples per test, so the module stays deterministic enough for CI and
under about 20 seconds.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import string
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.mgcp import (
    EMPTY_NOTIFIED_ENTITY,
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
    LoopControl,
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
    RtpMap,
    SessionDescription,
    SignalRequest,
    Verb,
    decode,
    encode,
)

#: Round-trip properties: enough examples to reach every branch of the
#: strategies, few enough for the whole module to stay well under 20 s.
ROUND_TRIP = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Whole messages are bigger; fewer examples each.
MESSAGES = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: The bounded fuzz.
FUZZ = settings(
    max_examples=1200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: A generous per-call bound that only catches pathological backtracking;
#: typical calls take a few microseconds.
SLOW_DECODE_SECONDS = 0.050


def _load_fuzz_engine() -> Any:
    """
    Import C{scripts/fuzz-codec} (an executable script without a C{.py}
    suffix) as a module, so the tests and the long-running harness share
    one mutation engine and one seed corpus.
    """
    path = Path(__file__).resolve().parent.parent / "scripts" / "fuzz-codec"
    loader = importlib.machinery.SourceFileLoader("_mgcpswitch_fuzz_codec", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


fuzz_engine = _load_fuzz_engine()


# ---------------------------------------------------------------------------
# Strategies for the value types


def _text(alphabet: str, min_size: int = 1, max_size: int = 8) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
HEX = "0123456789abcdefABCDEF"
#: RFC 3435 App. A NameString: VCHAR without "$", "*", "/", "@".
NAME_STRING = "".join(
    chr(c) for c in range(0x21, 0x7F) if chr(c) not in "$*/@"
)

hex_ids = _text(HEX, 1, 32)
transaction_ids = st.integers(min_value=1, max_value=999_999_999)
ports = st.integers(min_value=1, max_value=65535)


@st.composite
def domains(draw: st.DrawFn) -> str:
    """A host name, or an IPv4 literal in brackets (RFC 3435 §2.1.2)."""
    if draw(st.booleans()):
        labels = draw(st.lists(_text(LOWER_ALNUM, 1, 6), min_size=1, max_size=3))
        return ".".join(labels)
    octets = draw(st.lists(st.integers(0, 255), min_size=4, max_size=4))
    return "[" + ".".join(map(str, octets)) + "]"


@st.composite
def endpoint_names(draw: st.DrawFn, wildcards: str = "*$") -> EndpointName:
    """
    C{local@domain} with a hierarchical local part; C{wildcards} are the
    wildcard characters the name may use (terms of C{*} or C{$}).
    """
    term = _text(NAME_STRING, 1, 6)
    choices = [term] + [st.just(w) for w in wildcards]
    terms = draw(st.lists(st.one_of(choices), min_size=1, max_size=4))
    return EndpointName.parse("/".join(terms) + "@" + draw(domains()))


@st.composite
def notified_entities(draw: st.DrawFn) -> NotifiedEntity:
    """C{[local@]domain[:port]}, or the empty notified entity."""
    if draw(st.integers(0, 9)) == 0:
        return EMPTY_NOTIFIED_ENTITY
    local = draw(st.none() | _text(LOWER_ALNUM + "-_.", 1, 8))
    return NotifiedEntity(local, draw(domains()), draw(st.none() | ports))


def _ranges(low: int, high: int) -> st.SearchStrategy[Any]:
    single = st.integers(low, high)
    pair = st.tuples(single, single).map(lambda p: (min(p), max(p)))
    return single | pair


LCO_EXTENSIONS = st.sampled_from(
    [
        ("x-foo", "bar"),
        ("x+crit", ""),
        ("x-list", '"a,b,c"'),
        ("fmtp", '"telephone-event 0-15,16"'),
        ("o-fmtp", '"AMR mode-set=0,2,4"'),
        ("fm/fmtp", '"x=1"'),
        ("mylco", "on"),
    ]
)
CODECS = st.sampled_from(["PCMU", "PCMA", "G729", "G.726-32", "telephone-event", "image/t38", "AMR"])


@st.composite
def local_connection_options(draw: st.DrawFn) -> LocalConnectionOptions:
    """Every standard option (each maybe absent) plus unique extensions."""
    maybe = lambda s: draw(st.none() | s)  # noqa: E731
    extensions = draw(st.lists(LCO_EXTENSIONS, max_size=3, unique_by=lambda kv: kv[0]))
    return LocalConnectionOptions.create(
        packetization=maybe(_ranges(0, 9999)),
        codecs=draw(st.lists(CODECS, max_size=3, unique=True)),
        bandwidth=maybe(_ranges(0, 9999)),
        type_of_service=maybe(st.integers(0, 255)),
        echo_cancellation=maybe(st.booleans()),
        gain_control=maybe(st.integers(-9999, 9999) | st.just("auto")),
        silence_suppression=maybe(st.booleans()),
        reservation=maybe(st.sampled_from(ReservationService)),
        key=maybe(st.sampled_from(["clear:abc123", "base64:QUJD", "uri:http://k.example/1"])),
        network_type=maybe(st.sampled_from(["IN", "ATM", "LOCAL"])),
        extensions=extensions,
    )


PACKAGES = st.sampled_from(["L", "D", "G", "T", "R", "A", "H", "B", "x-acme", "sl", "script"])


@st.composite
def event_names(draw: st.DrawFn, ranges: bool = True, connections: bool = True) -> EventName:
    """
    C{[package/]event[@connection]} in canonical spelling, including digit
    strings, DTMF letters, C{all}, C{*}, ranges and connection suffixes.
    """
    package = draw(st.none() | PACKAGES | st.just("*"))
    kinds = [
        _text(string.ascii_lowercase, 1, 1).flatmap(
            lambda first: _text(LOWER_ALNUM + "-", 0, 5).map(lambda rest: first + rest)
        ),
        st.sampled_from(["hd", "hu", "hf", "oc", "of", "rg", "dl", "rt", "ci", "all", "T", "X"]),
        _text("0123456789#*ABCD", 1, 4),
    ]
    if ranges:
        kinds.append(st.sampled_from(["[0-9#*T]", "[0-9]", "[1-3T]", "[#*]", "[0-9#*A-D]"]))
    name = draw(st.one_of(kinds))
    connection = None
    if connections and draw(st.booleans()):
        connection = draw(hex_ids | st.sampled_from(["$", "*"]))
    return EventName.create(package, name, connection)


#: Event and signal parameters: bare words, name=value, nested
#: parentheses and quoted strings (with commas and doubled quotes).
_PARAM_WORD = _text(ALNUM + "-./:;#*!+<>?@^_`{|}~&'", 1, 8)
_QUOTED_CHARS = ALNUM + " ,()=/-.'!?"


@st.composite
def quoted_strings(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(_text(_QUOTED_CHARS, 0, 6) | st.just('""'), max_size=3))
    return '"' + "".join(pieces) + '"'


@st.composite
def event_params(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(_PARAM_WORD)
    if kind == 1:
        return draw(_text(string.ascii_lowercase, 1, 3)) + "=" + draw(_PARAM_WORD | quoted_strings())
    if kind == 2:
        return draw(_text(string.ascii_lowercase, 1, 3)) + "(" + draw(_PARAM_WORD) + ")"
    return draw(quoted_strings())


param_lists = st.lists(event_params(), max_size=3).map(tuple)

# The pairs of actions RFC 3435 §2.3.3 allows together (written down here,
# independently of the codec's own table).
_RFC_COMPATIBLE = {
    frozenset(p) for p in ("NS", "NK", "NE", "SA", "SI", "AK", "AE", "DK", "KE", "KI")
}
_ACTION_SETS = sorted(
    {
        "".join(sorted(combo))
        for combo in (
            [a] for a in "NADSIKE"
        )
    }
    | {
        "".join(sorted((a, b)))
        for a in "NADSIKE"
        for b in "NADSIKE"
        if a < b and frozenset((a, b)) in _RFC_COMPATIBLE
    }
    | {
        "".join(sorted((a, b, c)))
        for a in "NADSIKE"
        for b in "NADSIKE"
        for c in "NADSIKE"
        if a < b < c
        and all(frozenset(p) in _RFC_COMPATIBLE for p in ((a, b), (a, c), (b, c)))
    }
)
_BASIC = {a.value: a for a in Action}


@st.composite
def digit_maps(draw: st.DrawFn) -> DigitMap:
    """Small maps: alternatives of letters, ranges and C{.} repetitions."""
    position = st.sampled_from(
        list("0123456789#*ABCDTx") + ["[0-9]", "[1-3T]", "[#*]", "[2-9x]"]
    )
    alternative = st.lists(
        st.tuples(position, st.booleans()).map(lambda p: p[0] + ("." if p[1] else "")),
        min_size=1,
        max_size=6,
    ).map("".join)
    alternatives = draw(st.lists(alternative, min_size=1, max_size=4))
    text = alternatives[0] if len(alternatives) == 1 and draw(st.booleans()) else (
        "(" + "|".join(alternatives) + ")"
    )
    return DigitMap.parse(text)


def _requested_event(name: EventName, actions: tuple[Any, ...], params: tuple[str, ...]) -> RequestedEvent:
    return RequestedEvent(name, actions, params)


@st.composite
def requested_events(draw: st.DrawFn, embedded: bool = True) -> tuple[RequestedEvent, ...]:
    """
    A C{R:} list: distinct events, each with a legal combination of
    actions (an embedded request when allowed), extension actions and
    parameters.
    """
    names = draw(st.lists(event_names(), max_size=3, unique=True))
    out = []
    for name in names:
        letters = draw(st.sampled_from(_ACTION_SETS if embedded else [s for s in _ACTION_SETS if "E" not in s]))
        if draw(st.integers(0, 4)) == 0:
            letters = ""
        actions: list[Any] = []
        for letter in draw(st.permutations(letters)):
            if letter == "E":
                actions.append(draw(embedded_requests()))
            else:
                actions.append(_BASIC[letter])
        if draw(st.integers(0, 5)) == 0:
            actions.append(ExtensionAction(draw(st.sampled_from(["X-acme/Foo", "ext/act", "pkg/do(1,2)"]))))
        params = draw(param_lists) if draw(st.booleans()) else ()
        out.append(_requested_event(name, tuple(actions), params))
    return tuple(out)


@st.composite
def signal_requests(draw: st.DrawFn) -> tuple[SignalRequest, ...]:
    names = draw(st.lists(event_names(ranges=False), max_size=3, unique=True))
    return tuple(SignalRequest(n, draw(param_lists)) for n in names)


@st.composite
def embedded_requests(draw: st.DrawFn) -> EmbeddedRequest:
    return EmbeddedRequest(
        draw(requested_events(embedded=False)),
        draw(signal_requests()),
        draw(st.none() | digit_maps()),
    )


@st.composite
def events(draw: st.DrawFn) -> tuple[Event, ...]:
    names = draw(st.lists(event_names(), max_size=4))
    return tuple(Event(n, draw(param_lists)) for n in names)


@st.composite
def connection_parameters(draw: st.DrawFn) -> ConnectionParameters:
    names = draw(
        st.lists(
            st.sampled_from(["PS", "OS", "PR", "OR", "PL", "JI", "LA", "X-AB", "X-RTT", "PC/RPS"]),
            max_size=8,
            unique=True,
        )
    )
    values = draw(st.lists(st.integers(0, 999_999_999), min_size=len(names), max_size=len(names)))
    return ConnectionParameters(tuple(zip(names, values)))


_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


def _free_text(max_size: int = 20) -> st.SearchStrategy[str]:
    """Printable ASCII, no surrounding blanks, not starting with "/"."""
    return _text(_PRINTABLE, 0, max_size).map(str.strip).filter(lambda t: not t.startswith("/"))


@st.composite
def reason_codes(draw: st.DrawFn) -> ReasonCode:
    code = draw(st.sampled_from([0, 900, 901, 902, 903, 904, 905]) | st.integers(800, 899))
    package = draw(st.sampled_from(["L", "T", "x-acme"])) if 800 <= code < 900 else None
    return ReasonCode(code, draw(_free_text()), package)


restart_methods = st.sampled_from(list(RestartMethod)) | st.sampled_from(
    [ExtensionName("pkg/reboot"), ExtensionName("X-acme/warm")]
)


@st.composite
def quarantine_handlings(draw: st.DrawFn) -> QuarantineHandling:
    loop = draw(st.none() | st.sampled_from(LoopControl))
    processing = draw(st.sampled_from(QuarantineProcessing)) if loop is None else draw(
        st.none() | st.sampled_from(QuarantineProcessing)
    )
    return QuarantineHandling(loop, processing)


@st.composite
def response_acks(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    pairs = draw(st.lists(st.tuples(transaction_ids, transaction_ids), max_size=4))
    return tuple((min(p), max(p)) for p in pairs)


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    if draw(st.integers(0, 9)) == 0:
        return SessionDescription.parse("v=0")
    address = draw(
        st.sampled_from(["127.0.0.1", "192.168.5.7", "10.0.0.1", "2001:db8::1", "::1"])
    )
    pts = draw(st.lists(st.sampled_from([0, 8, 18, 96, 97, 101]), min_size=1, max_size=4, unique=True))
    rtpmaps = [
        RtpMap(pt, {96: "AMR", 97: "iLBC", 101: "telephone-event"}.get(pt, "PCMU"), 8000,
               draw(st.none() | st.just(1)))
        for pt in pts
        if draw(st.booleans())
    ]
    fmtp = {101: "0-15"} if 101 in pts and draw(st.booleans()) else None
    return SessionDescription.create(
        address,
        draw(st.integers(0, 65535)),
        pts,
        rtpmaps=rtpmaps,
        fmtp=fmtp,
        ptime=draw(st.none() | st.sampled_from([10, 20, 30])),
        direction=draw(st.none() | st.sampled_from(["sendrecv", "recvonly", "sendonly", "inactive"])),
        session_id=str(draw(st.integers(0, 2**32))),
        session_version=str(draw(st.integers(0, 2**32))),
        extra_attributes=draw(st.lists(st.sampled_from(["silenceSupp:off - - - -", "X-foo", "maxptime:40"]), max_size=2)),
    )


modes = st.sampled_from(list(ConnectionMode)) | st.just(ExtensionName("acme/mix"))
capabilities = st.lists(
    st.sampled_from(
        [("a", "PCMU;G728"), ("p", "10-100"), ("e", "on"), ("s", "off"), ("t", "1"),
         ("v", "L;G;D"), ("m", "sendonly;recvonly;sendrecv;inactive"), ("nt", "IN"), ("x-acme", "")]
    ),
    max_size=5,
    unique_by=lambda kv: kv[0],
).map(lambda options: Capabilities(tuple(options)))
bearer_information = st.lists(
    st.sampled_from([("e", "A"), ("e", "mu"), ("x-acme", "1")]), max_size=2, unique_by=lambda kv: kv[0]
).map(tuple)
requested_info = st.lists(
    st.sampled_from(
        [ParamCode(c) for c in ("B", "C", "I", "N", "X", "L", "M", "R", "S", "D", "O", "P", "E",
                                "Z", "Q", "T", "RC", "LC", "A", "ES", "RM", "RD", "PL", "MD",
                                "B/PR", "B/NS")]
        + ["X-Acme", "foo/bar"]
    ),
    max_size=6,
).map(tuple)
package_lists = st.lists(
    st.tuples(st.sampled_from(["L", "G", "D", "T", "B", "x-acme"]), st.integers(0, 9)), min_size=1, max_size=4
).map(tuple)

#: Every parameter attribute and a strategy for its typed value.
PARAMETER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "response_ack": response_acks(),
    "restart_method": restart_methods,
    "restart_delay": st.integers(0, 999_999),
    "reason_code": reason_codes(),
    "bearer_information": bearer_information,
    "call_id": hex_ids,
    "connection_id": st.lists(hex_ids, min_size=1, max_size=3).map(tuple),
    "second_connection_id": hex_ids,
    "specific_endpoint_id": st.lists(endpoint_names(wildcards=""), min_size=1, max_size=3).map(tuple),
    "second_endpoint_id": endpoint_names(wildcards="$"),
    "notified_entity": notified_entities(),
    "request_id": hex_ids,
    "local_options": local_connection_options(),
    "mode": modes,
    "requested_events": requested_events(),
    "signal_requests": signal_requests(),
    "quarantine_handling": quarantine_handlings(),
    "detect_events": events(),
    "digit_map": digit_maps(),
    "observed_events": events(),
    "event_states": events(),
    "connection_parameters": connection_parameters(),
    "requested_info": requested_info,
    "capabilities": st.lists(capabilities, min_size=1, max_size=3).map(tuple),
    "max_datagram": st.integers(0, 999_999_999),
    "package_list": package_lists,
    "persistent_events": requested_events(),
    "notification_state": st.sampled_from(list(NotificationState)),
}

extension_parameters = st.dictionaries(
    st.one_of(
        _text(ALNUM, 1, 6).map(lambda s: "X-" + s),
        st.sampled_from(["acme/Foo", "fm/x", "R/stats"]),
    ),
    _free_text(15),
    max_size=2,
)

# Presence rules of RFC 3435 §3.2.2 (request table), by attribute name.
_OPTIONAL = {
    Verb.EPCF: ["bearer_information", "response_ack"],
    Verb.CRCX: ["bearer_information", "notified_entity", "local_options", "requested_events",
                "signal_requests", "digit_map", "detect_events", "quarantine_handling",
                "second_endpoint_id", "persistent_events", "response_ack"],
    Verb.MDCX: ["bearer_information", "notified_entity", "local_options", "mode", "requested_events",
                "signal_requests", "digit_map", "detect_events", "quarantine_handling",
                "persistent_events", "response_ack"],
    Verb.DLCX: ["bearer_information", "call_id", "connection_id", "notified_entity", "reason_code",
                "connection_parameters", "requested_events", "signal_requests", "digit_map",
                "detect_events", "quarantine_handling", "persistent_events", "response_ack"],
    Verb.RQNT: ["bearer_information", "notified_entity", "requested_events", "signal_requests",
                "digit_map", "detect_events", "quarantine_handling", "persistent_events",
                "response_ack"],
    Verb.NTFY: ["notified_entity", "response_ack"],
    Verb.AUEP: ["requested_info", "response_ack"],
    Verb.AUCX: ["response_ack"],
    Verb.RSIP: ["restart_delay", "reason_code", "response_ack"],
    Verb.MESG: ["response_ack"],
}
_REQUIRED = {
    Verb.CRCX: ["call_id", "mode"],
    Verb.MDCX: ["call_id", "connection_id"],
    Verb.RQNT: ["request_id"],
    Verb.NTFY: ["request_id", "observed_events"],
    Verb.AUCX: ["connection_id", "requested_info"],
    Verb.RSIP: ["restart_method"],
}
_ENCAPSULATED = {"requested_events", "signal_requests", "digit_map", "detect_events", "quarantine_handling"}
_WILDCARDS = {
    Verb.EPCF: "*", Verb.CRCX: "$", Verb.MDCX: "", Verb.DLCX: "*", Verb.RQNT: "*",
    Verb.NTFY: "", Verb.AUEP: "*", Verb.AUCX: "", Verb.RSIP: "*", Verb.MESG: "*",
}
versions = st.sampled_from(["MGCP 1.0", "MGCP 1.0 NCS 1.0", "MGCP 1.0 TGCP 1.0", "MGCP 1.0 acme"])


@st.composite
def commands(draw: st.DrawFn, verb: Verb | str | None = None) -> Command:
    """
    A command of C{verb} (any verb, or an experimental X-verb, when None)
    that obeys the presence and wildcard rules, so the decoder accepts it.
    """
    if verb is None:
        verb = draw(st.sampled_from(list(Verb) + ["XPER", "XAB1"]))
    params: dict[str, Any] = {}
    if isinstance(verb, Verb):
        for attr in _REQUIRED.get(verb, []):
            params[attr] = draw(PARAMETER_VALUES[attr])
        for attr in draw(st.lists(st.sampled_from(_OPTIONAL[verb]), unique=True, max_size=5)):
            params[attr] = draw(PARAMETER_VALUES[attr])
        if verb in (Verb.CRCX, Verb.MDCX, Verb.DLCX) and (
            _ENCAPSULATED & params.keys() or draw(st.booleans())
        ):
            params["request_id"] = draw(hex_ids)
        wildcards = _WILDCARDS[verb]
        if verb is Verb.DLCX and "connection_id" in params:
            wildcards = ""
        # AUCX needs exactly one connection; MDCX/DLCX name one too.
        if verb in (Verb.MDCX, Verb.AUCX, Verb.DLCX) and "connection_id" in params:
            params["connection_id"] = params["connection_id"][:1]
        sdp = draw(st.none() | session_descriptions()) if verb in (Verb.CRCX, Verb.MDCX) else None
    else:
        for attr in draw(st.lists(st.sampled_from(sorted(PARAMETER_VALUES)), unique=True, max_size=4)):
            params[attr] = draw(PARAMETER_VALUES[attr])
        # In a command every parameter line appears once (§3.2.2): the
        # several-lines form of Z: and A: belongs to audit responses.
        for attr in ("capabilities", "specific_endpoint_id"):
            if attr in params:
                params[attr] = params[attr][:1]
        wildcards = "*$"
        sdp = draw(st.none() | session_descriptions())
    return Command.create(
        verb,
        draw(transaction_ids),
        draw(endpoint_names(wildcards=wildcards)),
        sdp=sdp,
        version=draw(versions),
        extensions=draw(extension_parameters),
        **params,
    )


RESPONSE_CODES = st.sampled_from(
    [0, 100, 101, 200, 250, 400, 401, 402, 403, 404, 405, 406, 407, 409, 410]
    + list(range(500, 542))
    + [299, 399, 499, 599, 999]
) | st.integers(800, 899)


@st.composite
def responses(draw: st.DrawFn) -> Response:
    """
    Any response: every return code class, 8xx with a package, any
    parameters (responses may carry any, several I/Z/A lines included) and
    up to two session descriptions.
    """
    code = draw(RESPONSE_CODES)
    package = draw(st.sampled_from(["L", "x-acme", "T"])) if 800 <= code < 900 else None
    params = {
        attr: draw(PARAMETER_VALUES[attr])
        for attr in draw(st.lists(st.sampled_from(sorted(PARAMETER_VALUES)), unique=True, max_size=5))
    }
    sdp = draw(st.none() | session_descriptions())
    second = draw(st.none() | session_descriptions()) if sdp is not None else None
    return Response.create(
        code,
        draw(st.integers(0, 999_999_999)),
        draw(_free_text()),
        sdp=sdp,
        second_sdp=second,
        package=package,
        extensions=draw(extension_parameters),
        **params,
    )


messages = commands() | responses()


# ---------------------------------------------------------------------------
# Round trips


def _round_trip(message: Command | Response) -> list[Any]:
    return decode(encode(message))


class ValueRoundTripTests(SynchronousTestCase):
    """
    Each value type, carried by the parameter that holds it in a message
    that allows it, survives C{decode(encode(x)) == [x]}.
    """

    def _check(self, attr: str, value: Any) -> None:
        message = Response.create(200, 1, "OK", **{attr: value})
        self.assertEqual([message], _round_trip(message), encode(message))

    @ROUND_TRIP
    @given(st.sampled_from(sorted(PARAMETER_VALUES)).flatmap(
        lambda attr: st.tuples(st.just(attr), PARAMETER_VALUES[attr])
    ))
    def test_every_parameter_value(self, item: tuple[str, Any]) -> None:
        """
        Every parameter's typed value round-trips inside a response (which
        may carry any parameter).
        """
        self._check(*item)

    @ROUND_TRIP
    @given(endpoint_names())
    def test_endpoint_names(self, name: EndpointName) -> None:
        """Endpoint names, wildcards included, round-trip as the C{Z2:} parameter."""
        self._check("second_endpoint_id", name)

    @ROUND_TRIP
    @given(notified_entities())
    def test_notified_entities(self, entity: NotifiedEntity) -> None:
        """Notified entities (with and without local part and port, and empty)."""
        self._check("notified_entity", entity)

    @ROUND_TRIP
    @given(local_connection_options())
    def test_local_connection_options(self, options: LocalConnectionOptions) -> None:
        """LCO built with C{LocalConnectionOptions.create}, extensions included."""
        self._check("local_options", options)

    @ROUND_TRIP
    @given(requested_events())
    def test_requested_events(self, value: tuple[RequestedEvent, ...]) -> None:
        """Requested events with every legal action set, embedded requests included."""
        self._check("requested_events", value)

    @ROUND_TRIP
    @given(signal_requests())
    def test_signal_requests(self, value: tuple[SignalRequest, ...]) -> None:
        """Signal requests with parameters and quoted strings."""
        self._check("signal_requests", value)

    @ROUND_TRIP
    @given(events())
    def test_events(self, value: tuple[Event, ...]) -> None:
        """Observed events with parameters."""
        self._check("observed_events", value)

    @ROUND_TRIP
    @given(digit_maps())
    def test_digit_maps(self, value: DigitMap) -> None:
        """Digit maps from the small generator."""
        self._check("digit_map", value)

    @ROUND_TRIP
    @given(connection_parameters())
    def test_connection_parameters(self, value: ConnectionParameters) -> None:
        """C{P:} statistics, extensions included."""
        self._check("connection_parameters", value)

    @ROUND_TRIP
    @given(reason_codes())
    def test_reason_codes(self, value: ReasonCode) -> None:
        """Reason codes with text, 8xx with a package."""
        self._check("reason_code", value)

    @ROUND_TRIP
    @given(restart_methods)
    def test_restart_methods(self, value: Any) -> None:
        """Every restart method and package extension methods."""
        self._check("restart_method", value)

    @ROUND_TRIP
    @given(quarantine_handlings())
    def test_quarantine_handling(self, value: QuarantineHandling) -> None:
        """Quarantine handling with one or both keywords."""
        self._check("quarantine_handling", value)

    @ROUND_TRIP
    @given(response_acks())
    def test_response_acks(self, value: tuple[tuple[int, int], ...]) -> None:
        """C{K:} ranges, the empty list included."""
        self._check("response_ack", value)

    @ROUND_TRIP
    @given(session_descriptions(), st.none() | session_descriptions())
    def test_session_descriptions(self, sdp: SessionDescription, second: SessionDescription | None) -> None:
        """SDP built with C{SessionDescription.create}, one or two bodies."""
        message = Response.create(200, 7, "OK", connection_id="A1", sdp=sdp, second_sdp=second)
        self.assertEqual([message], _round_trip(message))


class MessageRoundTripTests(SynchronousTestCase):
    """Whole commands of every verb, whole responses, and piggybacked lists."""

    def _verb_test(self, verb: Verb | str) -> None:
        @MESSAGES
        @given(commands(verb))
        def check(command: Command) -> None:
            self.assertEqual([command], _round_trip(command), encode(command))

        check()

    def test_epcf(self) -> None:
        """EPCF commands round-trip."""
        self._verb_test(Verb.EPCF)

    def test_crcx(self) -> None:
        """CRCX commands (with encapsulated RQNT, SDP, Z2) round-trip."""
        self._verb_test(Verb.CRCX)

    def test_mdcx(self) -> None:
        """MDCX commands round-trip."""
        self._verb_test(Verb.MDCX)

    def test_dlcx(self) -> None:
        """DLCX commands (by connection, by call, whole endpoint) round-trip."""
        self._verb_test(Verb.DLCX)

    def test_rqnt(self) -> None:
        """RQNT commands round-trip."""
        self._verb_test(Verb.RQNT)

    def test_ntfy(self) -> None:
        """NTFY commands round-trip."""
        self._verb_test(Verb.NTFY)

    def test_auep(self) -> None:
        """AUEP commands round-trip."""
        self._verb_test(Verb.AUEP)

    def test_aucx(self) -> None:
        """AUCX commands round-trip."""
        self._verb_test(Verb.AUCX)

    def test_rsip(self) -> None:
        """RSIP commands round-trip."""
        self._verb_test(Verb.RSIP)

    def test_mesg(self) -> None:
        """MESG commands (extension parameters only) round-trip."""
        self._verb_test(Verb.MESG)

    def test_extension_verb(self) -> None:
        """Experimental X-verbs carry any parameter and round-trip."""
        self._verb_test("XPER")

    @MESSAGES
    @given(responses())
    def test_responses(self, response: Response) -> None:
        """Responses of every code class, any parameters, 0-2 SDP bodies."""
        self.assertEqual([response], _round_trip(response), encode(response))

    @MESSAGES
    @given(st.lists(messages, min_size=1, max_size=4))
    def test_piggybacked(self, batch: list[Command | Response]) -> None:
        """A datagram of piggybacked messages decodes to the same list, in order."""
        self.assertEqual(batch, decode(encode(batch)))


# ---------------------------------------------------------------------------
# Fuzzing


class FuzzTests(SynchronousTestCase):
    """
    Mutated real datagrams and random bytes: C{decode} never raises, never
    trips its safety net, always answers something, and answers fast; and
    every message it does accept survives a re-encoding.
    """

    def _check(self, data: bytes) -> None:
        start = time.perf_counter()
        result = decode(data)
        elapsed = time.perf_counter() - start
        if elapsed >= SLOW_DECODE_SECONDS:
            # A garbage collection or a busy machine can stall one call;
            # pathological backtracking is slow every time.
            for _ in range(2):
                start = time.perf_counter()
                decode(data)
                elapsed = min(elapsed, time.perf_counter() - start)
        self.assertIsInstance(result, list)
        self.assertTrue(result, f"decode({data!r}) returned nothing")
        for item in result:
            self.assertIsInstance(item, (Command, Response, MalformedMessage))
            if isinstance(item, MalformedMessage):
                self.assertFalse(
                    item.reason.startswith("internal:"), f"codec bug on {data!r}: {item.reason}"
                )
            else:
                # Whatever the decoder accepts, the encoder can write back.
                self.assertEqual([item], decode(encode(item)), data)
        self.assertLess(elapsed, SLOW_DECODE_SECONDS, f"decode({data!r}) took {elapsed:.4f} s")

    def test_corpus_is_clean(self) -> None:
        """
        Every seed datagram of the fuzz engine decodes to messages only: the
        mutations start from valid input.
        """
        for data in fuzz_engine.CORPUS:
            for item in decode(data):
                self.assertFalse(isinstance(item, MalformedMessage), (data, item))

    @FUZZ
    @given(st.sampled_from(fuzz_engine.CORPUS), st.randoms(use_true_random=False))
    def test_mutated_datagrams(self, data: bytes, rng: Any) -> None:
        """Mutations of real datagrams (the engine of C{scripts/fuzz-codec})."""
        self._check(fuzz_engine.mutate(data, rng, fuzz_engine.CORPUS))

    @ROUND_TRIP
    @given(st.binary(max_size=600))
    def test_random_bytes(self, data: bytes) -> None:
        """Plain random bytes."""
        self._check(data)

    @ROUND_TRIP
    @given(st.text(alphabet=string.printable, max_size=300))
    def test_random_text(self, text: str) -> None:
        """Random printable text (more likely to reach past the first line)."""
        self._check(text.encode())
