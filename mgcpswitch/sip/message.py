# -*- test-case-name: tests.test_sip_message -*-
"""
SIP messages (RFC 3261 §7, §20) as frozen values: L{decode} a datagram,
L{encode} a message.

C{decode} never raises.  What it cannot accept becomes a L{Malformed}
carrying the status to answer with (or None when it must be dropped) and
the raw Via, From, To, Call-ID and CSeq lines a response has to copy
(§8.2.6.2), so that even a request whose other headers are broken gets
its 400.  A malformed response is dropped (§18.1.2).  The choices:

  - 400: a header line with no colon, a header the user agent reads
    (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route,
    Record-Route, Content-Length) that does not parse or is missing, a
    single-valued header given twice, a CSeq method other than the
    request's, a Content-Length beyond the datagram (§18.3), a header
    block that is not UTF-8;
  - 505: a request whose version is not SIP/2.0;
  - 416: a Request-URI that is not a sip/sips URI is I{not} malformed:
    the user agent answers it (the decoder keeps it as an L{OtherUri}).

Header names are case-insensitive; the compact forms (C{v}, C{f}, C{t},
C{i}, C{m}, C{l}, C{c}, ...) are read as their long names and written
long.  Continuation lines (folding, §7.3.1) are joined.  Several values
of Via, Contact, Route and Record-Route, on one line (comma-separated)
or several, become tuples in order; every other header is kept as
written under its name.  Content-Length is computed on encoding.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Callable, TypedDict, TypeVar, Union

from .headers import (
    TOKEN_RE,
    CSeq,
    NameAddress,
    Via,
    parse_cseq,
    parse_name_address,
    parse_via,
    split_commas,
)
from .uri import SipUri, Uri, parse_uri

__all__ = [
    "Method",
    "Request",
    "Response",
    "Malformed",
    "Message",
    "decode",
    "encode",
    "response_to",
    "reply_to_malformed",
    "REASONS",
    "COMPACT_FORMS",
    "Headers",
]

Headers = tuple[tuple[str, str], ...]


class Method(StrEnum):
    """The methods this user agent knows (RFC 3261 and its extensions)."""

    INVITE = "INVITE"
    ACK = "ACK"
    BYE = "BYE"
    CANCEL = "CANCEL"
    OPTIONS = "OPTIONS"
    REGISTER = "REGISTER"
    PRACK = "PRACK"
    UPDATE = "UPDATE"
    INFO = "INFO"
    SUBSCRIBE = "SUBSCRIBE"
    NOTIFY = "NOTIFY"
    REFER = "REFER"
    MESSAGE = "MESSAGE"
    PUBLISH = "PUBLISH"


_METHODS = {m.value: m for m in Method}

#: Reason phrases (RFC 3261 §21 and the codes a trunk meets).
REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

#: RFC 3261 §7.3.3 and the registry's later compact forms.
COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By",
    "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact", "d": "Request-Disposition",
    "y": "Identity", "n": "Identity-Info",
}
_CANONICAL = {name.lower(): name for name in (
    *COMPACT_FORMS.values(), "CSeq", "Max-Forwards", "Route", "Record-Route", "Allow", "Accept",
    "Require", "Proxy-Require", "Unsupported", "Expires", "User-Agent", "Server", "Retry-After",
    "WWW-Authenticate", "Authorization", "Proxy-Authenticate", "Proxy-Authorization", "Reason",
    "Min-Expires", "Date", "Timestamp", "Warning", "Organization", "Priority", "RSeq", "RAck",
    "P-Asserted-Identity", "Privacy", "Diversion", "Accept-Encoding", "Accept-Language",
    "Content-Disposition", "Content-Language", "MIME-Version", "In-Reply-To", "Reply-To", "Alert-Info",
    "Call-Info", "Error-Info", "Authentication-Info",
)}
for _short, _long in COMPACT_FORMS.items():
    _CANONICAL[_short] = _long

# Headers read into fields of the message (the rest stay in `headers`).
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")
_LISTS = ("Via", "Contact", "Route", "Record-Route")
_FIELDS = frozenset(_SINGLE + _LISTS)
_REPLY_COPY = ("Via", "From", "To", "Call-ID", "CSeq")

_VERSION = "SIP/2.0"
_HEADER_NAME_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_CALL_ID_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?")


def canonical(name: str) -> str:
    """The header name as this module writes it (compact forms expanded)."""
    return _CANONICAL.get(name.lower(), name)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Fields:
    via: tuple[Via, ...]
    from_: NameAddress
    to: NameAddress
    call_id: str
    cseq: CSeq
    max_forwards: int | None = None
    contact: tuple[NameAddress, ...] = ()
    route: tuple[NameAddress, ...] = ()
    record_route: tuple[NameAddress, ...] = ()
    headers: Headers = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header C{name} (not one of the fields), or None."""
        name = canonical(name)
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every value of header C{name}, comma-separated ones split."""
        name = canonical(name)
        return tuple(v for key, value in self.headers if key == name for v in split_commas(value))

    @property
    def branch(self) -> str | None:
        """The top Via's branch: the transaction's key (§17)."""
        return self.via[0].branch if self.via else None

    @property
    def content_type(self) -> str | None:
        value = self.header("Content-Type")
        return value.partition(";")[0].strip().lower() if value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(_Fields):
    method: str
    uri: Uri


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(_Fields):
    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Malformed:
    """
    A datagram that is not a message this agent accepts.

    @ivar code: the status to answer (400, 505), or None to drop it (a
        response, or a request that cannot be answered).
    @ivar reply_headers: the raw Via, From, To, Call-ID and CSeq lines to
        copy into that answer.
    """

    code: int | None
    reason: str
    is_request: bool = False
    reply_headers: Headers = field(default=(), repr=False)


Message = Union[Request, Response]


class _Bad(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason


def decode(data: bytes) -> Request | Response | Malformed:
    """One datagram into a L{Request}, a L{Response} or a L{Malformed}; never raises."""
    try:
        return _decode(data)
    except _Bad as e:
        return Malformed(e.code, e.reason)
    except Exception as e:  # noqa: BLE001 - the fuzzer looks for these
        return Malformed(None, f"internal: {e!r}")


def _decode(data: bytes) -> Request | Response | Malformed:
    stripped = data.lstrip(b"\r\n")
    if not stripped.strip():
        return Malformed(None, "keepalive or empty datagram")
    end = stripped.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = stripped.find(b"\n\n")
        sep = 2
    if end < 0:
        head, body = stripped, b""
    else:
        head, body = stripped[:end], stripped[end + sep:]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise _Bad(None, "the header block is not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    first = lines[0]
    is_request = not first.startswith("SIP/")
    raw = _header_lines(lines[1:])
    reply = tuple((name, value) for name, value in raw if name in _REPLY_COPY)
    try:
        return _message(first, raw, body, is_request)
    except _Bad as e:
        code = e.code if is_request and _answerable(reply) else None
        return Malformed(code, e.reason, is_request, reply)


def _answerable(reply: Headers) -> bool:
    """
    Whether a response can be built from these raw lines: each of Via,
    From, To, Call-ID and CSeq present and readable (the single-valued
    ones once), and the request not an ACK (never answered).
    """
    counts = Counter(name for name, _ in reply)
    if any(counts[name] == 0 for name in _REPLY_COPY) or any(counts[name] > 1 for name in _REPLY_COPY[1:]):
        return False
    try:
        for name, value in reply:
            if any(ord(c) < 32 and c != "\t" for c in value):
                return False
            if name == "Via":
                if not all(parse_via(item) for item in _split(name, value)):
                    return False
            elif name in ("From", "To"):
                parse_name_address(value)
            elif name == "Call-ID" and not _CALL_ID_RE.fullmatch(value):
                return False
            elif name == "CSeq" and parse_cseq(value).method == "ACK":
                return False  # an ACK is never answered
    except (ValueError, _Bad):
        return False
    return True


def _header_lines(lines: list[str]) -> list[tuple[str, str]]:
    """Unfold and split header lines into (canonical name, value); a line without a colon is kept as ("", line)."""
    out: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t") and out:
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _HEADER_NAME_RE.fullmatch(name):
            out.append(("", line))
            continue
        out.append((canonical(name), value.strip()))
    return out


def _message(first: str, raw: list[tuple[str, str]], body: bytes, is_request: bool) -> Request | Response:
    if is_request:
        parts = first.split(" ")
        if len(parts) != 3 or not TOKEN_RE.fullmatch(parts[0]):
            raise _Bad(400, f"bad request line {first[:80]!r}")
        method, uri_text, version = parts
        if not version.upper().startswith("SIP/"):
            raise _Bad(400, f"bad request line {first[:80]!r}")
        if version.upper() != _VERSION:
            raise _Bad(505, f"version {version[:20]!r} is not supported")
        try:
            uri = parse_uri(uri_text)
        except ValueError as e:
            raise _Bad(400, f"bad Request-URI: {e}") from None
    else:
        version, _, rest = first.partition(" ")
        code_text, _, reason = rest.partition(" ")
        if version.upper() != _VERSION or len(code_text) != 3 or not code_text.isascii() \
                or not code_text.isdigit() or not 100 <= int(code_text) <= 699:
            raise _Bad(None, f"bad status line {first[:80]!r}")
        if any(ord(c) < 32 and c != "\t" for c in reason):
            raise _Bad(None, "control character in the reason phrase")
    values: dict[str, list[str]] = {}
    headers: list[tuple[str, str]] = []
    for name, value in raw:
        if not name:
            raise _Bad(400, f"header line without a colon: {value[:60]!r}")
        if any(ord(c) < 32 and c != "\t" for c in value):
            raise _Bad(400, f"control character in {name}")
        if name in _FIELDS:
            values.setdefault(name, []).append(value)
        else:
            headers.append((name, value))
    for name in _SINGLE:
        if len(values.get(name, ())) > 1:
            raise _Bad(400, f"{name} given twice")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in values:
            raise _Bad(400, f"missing {name}")
    via = tuple(_parse("Via", parse_via, v) for text in values["Via"] for v in _split("Via", text))
    if not via:
        raise _Bad(400, "empty Via")
    from_ = _parse("From", parse_name_address, values["From"][0])
    to = _parse("To", parse_name_address, values["To"][0])
    call_id = values["Call-ID"][0]
    if not _CALL_ID_RE.fullmatch(call_id):
        raise _Bad(400, f"bad Call-ID {call_id[:60]!r}")
    cseq = _parse("CSeq", parse_cseq, values["CSeq"][0])
    max_forwards = None
    if "Max-Forwards" in values:
        text = values["Max-Forwards"][0]
        if not text.isascii() or not text.isdigit() or len(text) > 3 or int(text) > 255:
            raise _Bad(400, f"bad Max-Forwards {text[:20]!r}")
        max_forwards = int(text)
    contact: tuple[NameAddress, ...] = ()
    if is_request and method == "REGISTER" and values.get("Contact") == ["*"]:
        headers.append(("Contact", "*"))
    else:
        contact = _addresses("Contact", values)
    if "Content-Length" in values:
        text = values["Content-Length"][0]
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            raise _Bad(400, f"bad Content-Length {text[:20]!r}")
        length = int(text)
        if length > len(body):
            raise _Bad(400, f"Content-Length {length} but {len(body)} bytes of body")
        body = body[:length]
    common = _Common(
        via=via, from_=from_, to=to, call_id=call_id, cseq=cseq, max_forwards=max_forwards,
        contact=contact, route=_addresses("Route", values), record_route=_addresses("Record-Route", values),
        headers=tuple(headers), body=body,
    )
    if is_request:
        if cseq.method != method:
            raise _Bad(400, f"CSeq method {cseq.method} is not the request's {method}")
        return Request(method=_METHODS.get(method, method), uri=uri, **common)
    return Response(code=int(code_text), reason=reason.strip(), **common)


def _split(name: str, text: str) -> list[str]:
    items = split_commas(text)
    if not items:
        raise _Bad(400, f"empty {name}")
    return items


def _addresses(name: str, values: dict[str, list[str]]) -> tuple[NameAddress, ...]:
    return tuple(
        _parse(name, parse_name_address, item) for text in values.get(name, ()) for item in _split(name, text)
    )


_T = TypeVar("_T")


class _Common(TypedDict):
    """The fields a decoded request and response share (L{_Fields}), as keyword arguments."""

    via: tuple[Via, ...]
    from_: NameAddress
    to: NameAddress
    call_id: str
    cseq: CSeq
    max_forwards: int | None
    contact: tuple[NameAddress, ...]
    route: tuple[NameAddress, ...]
    record_route: tuple[NameAddress, ...]
    headers: Headers
    body: bytes


def _parse(name: str, parse: Callable[[str], _T], text: str) -> _T:
    try:
        return parse(text)
    except ValueError as e:
        raise _Bad(400, f"bad {name}: {e}") from None


def encode(message: Message) -> bytes:
    """The datagram of C{message}, headers in long form, Content-Length computed."""
    if isinstance(message, Request):
        lines = [f"{message.method} {message.uri} {_VERSION}"]
    else:
        lines = [f"{_VERSION} {message.code} {message.reason}"]
    lines.extend(f"Via: {via}" for via in message.via)
    lines.extend(f"Record-Route: {r}" for r in message.record_route)
    lines.extend(f"Route: {r}" for r in message.route)
    if message.max_forwards is not None:
        lines.append(f"Max-Forwards: {message.max_forwards}")
    lines.append(f"From: {message.from_}")
    lines.append(f"To: {message.to}")
    lines.append(f"Call-ID: {message.call_id}")
    lines.append(f"CSeq: {message.cseq}")
    lines.extend(f"Contact: {c}" for c in message.contact)
    lines.extend(f"{name}: {value}" for name, value in message.headers)
    lines.append(f"Content-Length: {len(message.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + message.body


def response_to(
    request: Request,
    code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Headers = (),
    contact: tuple[NameAddress, ...] = (),
    body: bytes = b"",
) -> Response:
    """
    A response to C{request} (§8.2.6.2): Via, From, Call-ID and CSeq
    copied, To copied with C{to_tag} added when it has none; the request's
    Record-Route copied into a dialog-creating response (§12.1.1).
    """
    to = request.to
    if to_tag is not None and to.tag is None and code > 100:
        to = to.with_tag(to_tag)
    record_route = request.record_route if (100 < code < 300 and request.method == Method.INVITE) else ()
    return Response(
        code=code,
        reason=REASONS.get(code, "Unknown") if reason is None else reason,
        via=request.via,
        from_=request.from_,
        to=to,
        call_id=request.call_id,
        cseq=request.cseq,
        record_route=record_route,
        contact=contact,
        headers=headers,
        body=body,
    )


def reply_to_malformed(bad: Malformed) -> bytes | None:
    """The datagram answering C{bad} (its raw headers copied), or None if it gets none."""
    if bad.code is None or not bad.is_request:
        return None
    phrase = REASONS.get(bad.code, "Bad Request")
    detail = "".join(c for c in bad.reason if c.isprintable())[:120]
    lines = [f"{_VERSION} {bad.code} {phrase} ({detail})"]
    lines.extend(f"{name}: {value}" for name, value in bad.reply_headers)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def with_headers(message: Message, *extra: tuple[str, str]) -> Message:
    """C{message} with C{extra} headers appended (names canonical)."""
    return replace(message, headers=message.headers + tuple((canonical(n), v) for n, v in extra))


def is_sip(uri: Uri) -> bool:
    return isinstance(uri, SipUri)
