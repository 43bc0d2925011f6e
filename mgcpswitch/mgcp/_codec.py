# -*- test-case-name: tests.test_codec -*-
"""
L{decode} a datagram into messages and L{encode} messages into a datagram
(RFC 3435 §3, App. A).

C{decode} never raises: every message it cannot accept becomes a
L{MalformedMessage} carrying the return code the receiver must answer
with, and a bad message does not spoil its piggybacked neighbours
(§3.5.5).  Where RFC 3435 and RFC 3661 name no code, the choice is made
here and written next to the check.  A summary:

  - 510: broken grammar: a bad header line, a parameter line without a
    colon, a parameter given twice, a missing mandatory C{X:}/C{O:}/C{F:}/
    C{RM:}, an encapsulated RQNT without C{X:}, a body in a command that
    allows none (any body but CRCX's and MDCX's, SDP or not), two bodies;
  - a transaction id that is not 1*9 ASCII digits, or is 0: 510 with no
    transaction id (the message cannot be answered; the receiver drops it);
  - 504: an unknown verb (experimental C{X...} verbs are accepted and left
    to the role); 528: a version other than MGCP 1.0 (a profile after
    C{MGCP 1.0} is accepted and left to the role);
  - 500: an endpoint name that is not C{local@domain}, or a wildcard the
    verb forbids (§2.1.2, §2.3);
  - 539: an unknown or forbidden parameter (C{B/PR} is allowed wherever
    C{T:} is, App. B.2.1; C{B/NS} in no command, App. B.2.2); 511: an
    unknown critical C{X+} parameter (RFC 3661: 511 is for exactly that);
  - missing mandatory parameters with a code of their own: C 516, M 517,
    I 515;
  - parameter values: C 516, I/I2 515, M 517, L 541/524, Q 508, RM 536,
    R/S/T/O 523/522/538, D 537/510, SDP of CRCX/MDCX 509 (see L{_params});
  - the role adds its own (518, 522 for events it lacks, 525 for an
    unknown C{x+} LCO, 527, ...).

Responses are read leniently (§3.3: unknown or forbidden response
parameters must be ignored): unknown parameters are kept verbatim under
their name, and a known parameter whose value cannot be read is left out,
so that a final response is never lost to a peer's formatting quirk.
Only a response whose first line cannot be read is malformed; it cannot
be answered and is dropped by the receiver.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, TypeVar, Union

from ._errors import LocalProtocolError, RemoteProtocolError
from ._codes import CODES, VERBS, ParamCode, ParamKey, Verb
from ._message import DEFAULT_VERSION, Command, MalformedMessage, Response, trusted_command, trusted_response
from ._params import (
    ALLOWED, BY_NAME, ENCAPSULATED_RQNT, FAST, MAX_MEMO, ORDER, REQUIRED, SPECS, WILDCARDS, Parameters,
)
from ._sdp import SessionDescription
from ._values import _ENDPOINT_RE, EndpointName, ExtensionName

__all__ = ["decode", "encode", "know_endpoint"]

DecodedItem = Union[Command, Response, MalformedMessage]

# Endpoint names repeat in every message of a line's life: keep the
# validated ones.  Names an application declared (L{know_endpoint}: the
# agent's lines) stay for good and decode to the declared object itself;
# names only seen on the wire are bounded (cleared past _MAX_INTERNED).
# Without the declared ones a switch of more lines than the bound cleared
# the table every few thousand NTFYs, and each pass re-made the names,
# which lived long enough to reach the collector's oldest generation and
# triggered its full collections (~8,000 of ~28,000 objects there at 400
# calls/s on 10,000 lines).
_ENDPOINTS: dict[str, EndpointName] = {}
_KNOWN: dict[str, EndpointName] = {}
_MAX_INTERNED = 8192
_K = TypeVar("_K")
_V = TypeVar("_V")


def _intern(table: dict[_K, _V], key: _K, value: _V) -> _V:
    if len(table) >= _MAX_INTERNED:
        table.clear()
    table[key] = value
    return value


def know_endpoint(name: EndpointName) -> None:
    """
    Decode C{name}'s exact text to C{name} itself from now on, and never
    forget it: for the endpoints an application holds for its lifetime
    (a call agent's configured and learnt lines), so that decoding their
    commands makes no new object.
    """
    _KNOWN[name] = name
    _ENDPOINTS[name] = name


_EXT_VERB_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{3}")
_MISSING = object()
_VERSION_RE = re.compile(r"\d+\.\d+")
_wrap = Parameters


# Responses read before, by their bytes after the transaction id (and
# their code): a peer answers most commands with the same few responses
# ("200 <txid> OK", a DLCX's 250 with its P: line), so everything but the
# id is decoded once.  The values are immutable, so responses share them.
# Bounded like the parsers' intern tables; responses with a session
# description are not kept (each one differs).
_RESPONSES: dict[tuple[bytes, bytes], tuple[Any, ...]] = {}


def decode(data: bytes) -> list[DecodedItem]:
    """
    Decode one datagram into its messages, in order.

    Each item is a L{Command}, a L{Response} or a L{MalformedMessage}.
    Never raises, whatever the bytes.
    """
    if data[:1].isdigit():
        fields = data.split(b" ", 2)
        if len(fields) == 3:
            code, txid, rest = fields
            # "<code> <txid> <rest>" with one space each side of the id:
            # when code and rest were read before, only the id is new.
            if len(code) == 3 and code.isdigit() and txid.isdigit() and len(txid) <= 9:
                key = (code, rest)
                hit = _RESPONSES.get(key)
                if hit is not None:
                    return [trusted_response(hit[0], int(txid), hit[1], hit[2], None, None, hit[3])]
                out = _decode(data)
                if len(out) == 1 and b"\n." not in rest:  # a piggybacked datagram takes the long way
                    r = out[0]
                    if type(r) is Response and r.sdp is None and r.second_sdp is None and r.transaction_id == int(txid):
                        if len(_RESPONSES) >= MAX_MEMO:
                            _RESPONSES.clear()
                        _RESPONSES[key] = (r.code, r.comment, r.params, r.package)
                return out
    return _decode(data)


def _decode(data: bytes) -> list[DecodedItem]:
    text = data.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            # A lone CR is no EOL in RFC 3435, but as part of a value it could
            # not be written back: read it as a line end, like old peers meant.
            text = text.replace("\r", "\n")
    if "\n.\n" not in text and not text.endswith("\n."):
        return [_decode_message(text)]
    if text.endswith("\n."):
        text += "\n"
    out = [_decode_message(part) for part in _PIGGYBACK_RE.split(text) if part.strip()]
    return out or [MalformedMessage(510, None, "empty datagram")]


_PIGGYBACK_RE = re.compile(r"\n\.\n")


def _decode_message(text: str) -> DecodedItem:
    if text[:1] in ("\n", " ", "\t", ""):  # "": an empty datagram
        text = text.lstrip()
        if not text:
            return MalformedMessage(510, None, "empty message")
    try:
        if text[0] in "0123456789":
            return _decode_response(text)
        return _decode_command(text)
    except RemoteProtocolError as e:  # raised before the txid was read
        return MalformedMessage(e.code, None, e.reason, text[0] in "0123456789", text)
    except Exception as e:  # a bug in the codec: answer 510, never raise
        return MalformedMessage(510, None, f"internal: {e!r}", False, text)


def _split(text: str) -> tuple[list[str], str]:
    """The header's lines and the body after the first empty line."""
    blank = text.find("\n\n")
    if blank < 0:
        lines = text.split("\n")
        if not lines[-1]:
            lines.pop()  # the EOL that ends the last line starts no line
        return lines, ""
    return text[:blank].split("\n"), text[blank + 2 :]


def _decode_command(text: str) -> DecodedItem:
    header, body = _split(text)
    parts = header[0].split()
    txid_text = parts[1] if len(parts) > 1 else ""
    # 1 to 9 ASCII digits, not all zeros (str.isdigit() alone would take
    # "²", which int() refuses).
    txid = int(txid_text) if txid_text.isdigit() and txid_text.isascii() and len(txid_text) <= 9 else 0
    if not txid:
        raise RemoteProtocolError(510, f"bad transaction id in {header[0][:60]!r}")
    try:
        return _decode_command_rest(parts, txid, header, body)
    except RemoteProtocolError as e:
        return MalformedMessage(e.code, txid, e.reason, False, text)
    except Exception as e:
        return MalformedMessage(510, txid, f"internal: {e!r}", False, text)


def _decode_command_rest(parts: list[str], txid: int, header: list[str], body: str) -> Command:
    verb_text = parts[0]
    verb: Verb | ExtensionName | None = VERBS.get(verb_text) or VERBS.get(verb_text.upper())
    if verb is None:
        if _EXT_VERB_RE.fullmatch(verb_text) and verb_text[0] in "Xx":
            verb = ExtensionName(verb_text.upper())
        elif _EXT_VERB_RE.fullmatch(verb_text):
            raise RemoteProtocolError(504, f"unknown command {verb_text!r}")
        else:
            raise RemoteProtocolError(510, f"bad verb {verb_text[:20]!r}")
    if len(parts) < 5:
        raise RemoteProtocolError(510, "command line needs verb, transaction id, endpoint and version")
    if parts[4] != "1.0" or (parts[3] != "MGCP" and parts[3].upper() != "MGCP"):
        if parts[3].upper() != "MGCP" or _VERSION_RE.fullmatch(parts[4]) is None:
            raise RemoteProtocolError(510, f"bad protocol version {' '.join(parts[3:])[:40]!r}")
        raise RemoteProtocolError(528, f"unsupported version MGCP {parts[4]}")
    version = DEFAULT_VERSION if len(parts) == 5 else "MGCP 1.0 " + " ".join(parts[5:])
    endpoint_text = parts[2]
    endpoint = _ENDPOINTS.get(endpoint_text)
    if endpoint is None:
        if _ENDPOINT_RE.fullmatch(endpoint_text) is None:
            raise RemoteProtocolError(500, f"bad endpoint name {endpoint_text[:60]!r}")
        if len(_ENDPOINTS) >= _MAX_INTERNED + len(_KNOWN):
            _ENDPOINTS.clear()
            _ENDPOINTS.update(_KNOWN)
        endpoint = _ENDPOINTS[endpoint_text] = EndpointName(endpoint_text)

    items: dict[ParamKey, Any] = {}
    for line in header[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise RemoteProtocolError(510, f"parameter line without a colon: {line[:60]!r}")
        fast = FAST.get(name) or FAST.get(name.strip().upper())
        if fast is not None:
            code, parse, table = fast
            if code in items:
                raise RemoteProtocolError(510, f"parameter {code._value_} given twice")
            value = value.strip()
            typed = _MISSING if table is None else table.get(value, _MISSING)
            items[code] = parse(value) if typed is _MISSING else typed
            continue
        name = name.strip()
        if name[:2] in ("X-", "x-") or "/" in name:
            if name in items:
                raise RemoteProtocolError(510, f"parameter {name} given twice")
            items[name] = value.strip()
        elif name[:2] in ("X+", "x+"):
            raise RemoteProtocolError(511, f"unsupported critical extension parameter {name}")
        else:
            raise RemoteProtocolError(539, f"unknown parameter {name[:20]!r}")

    sdp = None
    if body:
        body = body.strip("\n")
        if body:
            if "\n\n" in body:
                raise RemoteProtocolError(510, "a command carries at most one session description")
            try:
                sdp = SessionDescription.from_text(body + "\n")
            except RemoteProtocolError:
                # 509 is for the RemoteConnectionDescriptor of CRCX/MDCX (RFC
                # 3661); any body in another command is a protocol error.
                if type(verb) is Verb and verb is not Verb.CRCX and verb is not Verb.MDCX:
                    raise RemoteProtocolError(
                        510, f"{verb._value_} carries no session description"
                    ) from None
                raise

    if type(verb) is Verb:
        # The presence rules depend on the verb and the parameter names only:
        # their verdict is cached per (verb, names, body) -- a few dozen
        # combinations occur in real traffic.
        signature = (verb, tuple(items), sdp is not None)
        verdict = _VERDICTS.get(signature)
        if verdict is None:
            verdict = _intern(_VERDICTS, signature, _presence_verdict(verb, items, sdp))
        if verdict is not _PRESENT_OK:
            raise RemoteProtocolError(*verdict)
        if "*" in endpoint_text or "$" in endpoint_text:
            allowed_wild = WILDCARDS[verb]
            if verb is Verb.DLCX and ParamCode.CONNECTION_ID in items:
                allowed_wild = ""
            local = endpoint_text.rpartition("@")[0]
            for ch in "*$":
                if ch in local and ch not in allowed_wild:
                    raise RemoteProtocolError(500, f"wildcard {ch!r} not allowed in {verb._value_}")
    return trusted_command(verb, txid, endpoint, _wrap(items), sdp, version)


_PRESENT_OK = (0, "")
_VERDICTS: dict[Any, tuple[int, str]] = {}


def _presence_verdict(verb: Verb, items: dict[ParamKey, Any], sdp: Any) -> tuple[int, str]:
    """The RFC 3435 §3.2.2 presence rules for a verb and these parameters."""
    try:
        _check_presence(verb, items, sdp)
    except RemoteProtocolError as e:
        return (e.code, e.reason)
    return _PRESENT_OK


def _check_presence(verb: Verb, items: dict[ParamKey, Any], sdp: Any) -> None:
    if not items.keys() <= ALLOWED[verb]:
        for key in items:
            # B/PR is in ALLOWED wherever T: is (RFC 3435 App. B.2.1).
            if type(key) is ParamCode and key not in ALLOWED[verb]:
                raise RemoteProtocolError(
                    539, f"parameter {key._value_} not allowed in {verb._value_}"
                )
    required = REQUIRED.get(verb)
    if required is not None and not items.keys() >= required.keys():
        for code, error in required.items():
            if code not in items:
                raise RemoteProtocolError(
                    error, f"{verb._value_} needs parameter {code._value_}"
                )
    if verb in _ENCAPSULATING and ParamCode.REQUEST_ID not in items:
        if not ENCAPSULATED_RQNT.isdisjoint(items):
            raise RemoteProtocolError(510, "an encapsulated notification request needs X:")
    if sdp is not None and verb not in _ENCAPSULATING[:2]:
        raise RemoteProtocolError(510, f"{verb._value_} carries no session description")


_ENCAPSULATING = (Verb.CRCX, Verb.MDCX, Verb.DLCX)


def _decode_response(text: str) -> DecodedItem:
    header, body = _split(text)
    parts = header[0].split(None, 2)
    code_text = parts[0]
    if len(code_text) != 3 or not code_text.isdigit() or not code_text.isascii():
        raise RemoteProtocolError(510, f"bad response code in {header[0][:60]!r}")
    if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) > 9 or not parts[1].isascii():
        raise RemoteProtocolError(510, f"bad transaction id in response {header[0][:60]!r}")
    code = int(code_text)
    txid = int(parts[1])
    comment = parts[2].strip() if len(parts) > 2 else ""
    package = None
    if comment[:1] == "/" and comment[1:2].strip():  # "/pkg" (App. A); a lone "/" is commentary
        fields = comment[1:].split(None, 1)  # WSP: a tab may follow the package name too
        package = fields[0]
        comment = fields[1] if len(fields) > 1 else ""

    items: dict[ParamKey, Any] = {}
    for line in header[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue  # must be ignored, not rejected (§3.3)
        spec = BY_NAME.get(name) or BY_NAME.get(name.strip().upper())
        if spec is None:
            items.setdefault(name.strip(), value.strip())
            continue
        try:
            typed = spec.parse(value.strip())
        except RemoteProtocolError:
            continue  # an unreadable response parameter is ignored, like an unknown one
        code_key = spec.code
        if spec.multi and code_key in items:
            items[code_key] = items[code_key] + typed
        else:
            items.setdefault(code_key, typed)

    sdp = second = None
    if body:
        bodies = [b for b in body.split("\n\n") if b.strip("\n")]
        try:
            if bodies:
                sdp = SessionDescription.from_text(bodies[0].strip("\n") + "\n")
            if len(bodies) > 1:
                second = SessionDescription.from_text(bodies[1].strip("\n") + "\n")
        except RemoteProtocolError:
            pass  # an unreadable descriptor is left out; the response still counts
    return trusted_response(CODES.get(code, code), txid, comment, _wrap(items), sdp, second, package)


# ---------------------------------------------------------------------------
# Encoding


_NAMES: dict[ParamKey, str] = {code: code._value_ for code in ParamCode}


def _rank(key: ParamKey) -> int:
    return ORDER.get(key, 1000)


# The canonical order of a set of keys with each key's line prefix (see
# _layout), cached by the keys as given: the same few parameter sets recur
# in every message of a kind.
_ORDERS: dict[tuple[ParamKey, ...], list[tuple[ParamKey, str, str, bool]]] = {}

# Formatted text of values by identity.  Values are immutable and the ones
# that recur (an agent's constant R:/S:/L:, values interned by the parser)
# are the same objects, so identity is a sound and cheap key; the entry
# holds the value, so its id cannot be reused while the entry exists.
# Bounded by MAX_MEMO like the parsers' intern tables (see there why small).
_FORMATTED: dict[int, tuple[Any, str]] = {}


def _format_slow(key: ParamKey, value: Any) -> str:
    spec = SPECS[key]
    if spec.multi and key is not ParamCode.CONNECTION_ID:
        text = f"\r\n{_NAMES[key]}: ".join(str(item) for item in value)
    else:
        text = spec.format(value)
    if len(_FORMATTED) >= MAX_MEMO:
        _FORMATTED.clear()
    _FORMATTED[id(value)] = (value, text)
    return text


def _param_lines(params: Parameters, out: list[str]) -> int:
    """Append the parameter lines; return how many extra lines multi-line values hold."""
    extra = 0
    keys = tuple(params)
    order = _ORDERS.get(keys)
    if order is None:
        order = _intern(_ORDERS, keys, _layout(keys))
    for key, prefix, bare, multi in order:
        value = params[key]
        kind = type(value)
        if kind is str:  # C:, X:, I2:, extension parameters
            text = value
        elif kind is tuple and len(value) == 1 and type(value[0]) is str:  # I:
            text = value[0]
        else:
            hit = _FORMATTED.get(id(value))
            text = hit[1] if hit is not None and hit[0] is value else _format_slow(key, value)
            if multi:
                extra += len(value) - 1  # one line per item
        out.append(prefix + text if text else bare)
    return extra


def _layout(keys: tuple[ParamKey, ...]) -> list[tuple[ParamKey, str, str, bool]]:
    """For a set of keys: each in canonical order with its line prefix."""
    layout = []
    for key in sorted(keys, key=_rank):
        name = _NAMES.get(key, key)
        multi = key is ParamCode.SPECIFIC_ENDPOINT_ID or key is ParamCode.CAPABILITIES
        layout.append((key, f"{name}: ", f"{name}:", multi))
    return layout


def _checked(header: list[str], extra: int = 0) -> str:
    """
    Join header lines, refusing a field that holds a line break: a comment,
    version, extension value or any value built by hand could otherwise
    inject parameter lines or a whole piggybacked message.  Counting the
    line ends of the joined text is one C-level pass.
    """
    text = "\r\n".join(header)
    breaks = len(header) - 1 + extra
    if text.count("\n") != breaks or text.count("\r") != breaks:
        raise LocalProtocolError(510, "a line break inside a field would inject lines")
    return text


def _sdp_text(sdp: SessionDescription) -> str:
    wire = sdp._wire
    if wire is not None:
        return wire
    text = str(sdp)
    if text.count("\n") != len(sdp.lines) or text.count("\r") != len(sdp.lines):
        raise LocalProtocolError(509, "a line break inside an SDP line would inject lines")
    return text


# Response commentaries known to hold no line break (bounded; a comment
# left out is checked each time, as any other field).
_CLEAN_COMMENTS: set[str] = set()


def _encode_text(message: Command | Response) -> str:
    if type(message) is Command:
        out = [
            f"{message.verb._value_ if type(message.verb) is Verb else message.verb} "
            f"{message.transaction_id} {message.endpoint} {message.version}"
        ]
        extra = _param_lines(message.params, out) if message.params else 0
        if message.sdp is not None:
            return _checked(out, extra) + "\r\n\r\n" + _sdp_text(message.sdp)
        return _checked(out, extra) + "\r\n"
    if not message.params and message.sdp is None and message.second_sdp is None and message.package is None:
        # The common answer ("200 1203 OK"): one line, its commentary
        # checked once (see _checked) and remembered.
        comment = message.comment
        if comment in _CLEAN_COMMENTS:
            if comment:
                return f"{message.code:03d} {message.transaction_id} {comment}\r\n"
            return f"{message.code:03d} {message.transaction_id}\r\n"
        if "\n" not in comment and "\r" not in comment and len(_CLEAN_COMMENTS) < MAX_MEMO:
            _CLEAN_COMMENTS.add(comment)
    head = f"{message.code:03d} {message.transaction_id}"
    if message.package:
        head += f" /{message.package}"
    if message.comment:
        head += f" {message.comment}"
    out = [head]
    extra = _param_lines(message.params, out) if message.params else 0
    text = _checked(out, extra) + "\r\n"
    if message.sdp is not None:
        text += "\r\n" + _sdp_text(message.sdp)
    if message.second_sdp is not None:
        text += "\r\n" + _sdp_text(message.second_sdp)
    return text


def encode(messages: Command | Response | Iterable[Command | Response]) -> bytes:
    """
    Encode one message, or several piggybacked in one datagram (separated
    by a line holding only C{.}), in canonical form: CRLF line ends, one
    space after each colon, parameters in a fixed order.
    """
    if isinstance(messages, (Command, Response)):
        return _encode_text(messages).encode("utf-8", "surrogateescape")
    return ".\r\n".join(_encode_text(m) for m in messages).encode("utf-8", "surrogateescape")
