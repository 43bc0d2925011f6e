# -*- test-case-name: tests.test_sip_message -*-
"""
The structured header values a user agent reads (RFC 3261 §20, §25.1):
name-addr values (From, To, Contact, Route, Record-Route), Via and CSeq.

Each parser raises L{ValueError} saying what is wrong; the decoder turns
that into a 400.  Header parameter names are lower-cased (they are
case-insensitive); values are kept as written (a quoted value with its
quotes), so that writing a parsed value back gives an equal value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .uri import OtherUri, Params, SipUri, Uri, format_params, param, parse_uri

__all__ = [
    "NameAddress",
    "Via",
    "CSeq",
    "parse_name_address",
    "parse_via",
    "parse_cseq",
    "split_commas",
    "parse_header_params",
    "TOKEN_RE",
    "MAGIC_COOKIE",
]

#: RFC 3261 §25.1 token.
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
#: The branch prefix of RFC 3261 transactions (§8.1.1.7).
MAGIC_COOKIE = "z9hG4bK"

# ;name[=value] with value a token, an IPv6 reference or a quoted string.
_HPARAM_RE = re.compile(
    r"[ \t]*;[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)"
    r"(?:[ \t]*=[ \t]*(\"(?:[^\"\\\r\n]|\\[^\r\n])*\"|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.!%*_+`'~:]+))?"
)
_QUOTED_RE = re.compile(r"\"((?:[^\"\\\r\n]|\\[^\r\n])*)\"")
_DISPLAY_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~ \t]+")


def split_commas(value: str) -> list[str]:
    """
    Split a header value holding several values (§7.3.1), respecting
    quoted strings and C{<...>}.  Empty items are dropped.
    """
    if "," not in value:
        return [value.strip()] if value.strip() else []
    out: list[str] = []
    start = 0
    quoted = angle = False
    i = 0
    while i < len(value):
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return [item for item in out if item]


def parse_header_params(text: str) -> Params:
    """C{;a=1;b;c="x y"} into its pairs; L{ValueError} if anything is left over."""
    out: list[tuple[str, str | None]] = []
    pos = 0
    while pos < len(text):
        match = _HPARAM_RE.match(text, pos)
        if match is None:
            if not text[pos:].strip():
                break
            raise ValueError(f"bad parameter at {text[pos:pos + 40]!r}")
        out.append((match.group(1).lower(), match.group(2)))
        pos = match.end()
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NameAddress:
    """
    A name-addr or addr-spec with its header parameters (From, To, Contact,
    Route, Record-Route).  C{display} is the display name as text (None
    when absent); it is written quoted.
    """

    uri: Uri
    display: str | None = None
    params: Params = ()

    @property
    def tag(self) -> str | None:
        value = param(self.params, "tag")
        return value or None

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    def with_tag(self, tag: str) -> NameAddress:
        return replace(self, params=tuple(p for p in self.params if p[0] != "tag") + (("tag", tag),))

    def __str__(self) -> str:
        display = ""
        if self.display is not None:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{format_params(self.params)}"

    @property
    def sip_uri(self) -> SipUri | None:
        return self.uri if isinstance(self.uri, SipUri) else None

    @property
    def user(self) -> str | None:
        """The user part of a SIP URI, or the number of a C{tel:} URI."""
        if isinstance(self.uri, SipUri):
            return self.uri.user
        if isinstance(self.uri, OtherUri) and self.uri.scheme == "tel":
            return self.uri.rest.partition(";")[0]
        return None


def parse_name_address(text: str) -> NameAddress:
    """
    C{"Bob" <sip:bob@b.example>;tag=1}, C{Bob <sip:...>}, C{<sip:...>} or
    C{sip:bob@b.example;tag=1} (in that last form the parameters are the
    header's, §20).
    """
    text = text.strip()
    display: str | None = None
    if text.startswith('"'):
        match = _QUOTED_RE.match(text)
        if match is None:
            raise ValueError(f"unterminated display name in {text[:80]!r}")
        display = re.sub(r"\\(.)", r"\1", match.group(1))
        text = text[match.end():].lstrip()
        if not text.startswith("<"):
            raise ValueError("a quoted display name must be followed by <URI>")
    elif not text.startswith("<") and "<" in text:
        name, _, rest = text.partition("<")
        if not _DISPLAY_TOKENS_RE.fullmatch(name):
            raise ValueError(f"bad display name {name[:80]!r}")
        display = " ".join(name.split())
        text = "<" + rest
    if text.startswith("<"):
        uri_text, close, rest = text[1:].partition(">")
        if not close:
            raise ValueError(f"missing '>' in {text[:80]!r}")
        uri = parse_uri(uri_text.strip())
    else:
        semi = text.find(";")
        uri_text, rest = (text, "") if semi < 0 else (text[:semi], text[semi:])
        if "?" in uri_text:
            raise ValueError("a URI with headers must be written in <>")
        uri = parse_uri(uri_text.strip())
    return NameAddress(uri, display, parse_header_params(rest))


@dataclass(frozen=True, slots=True)
class Via:
    """
    One Via value: C{SIP/2.0/UDP host:port;branch=z9hG4bK...;rport}.
    C{host} without IPv6 brackets.
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @property
    def branch(self) -> str | None:
        return param(self.params, "branch") or None

    @property
    def sent_by(self) -> tuple[str, int]:
        return (self.host, self.port if self.port is not None else 5060)

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    def with_params(self, **values: str | None) -> Via:
        """The value with C{values} set (None: a flag), replacing any of the same name."""
        kept = tuple(p for p in self.params if p[0] not in values)
        return replace(self, params=kept + tuple(values.items()))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {host}{port}{format_params(self.params)}"


_VIA_RE = re.compile(
    r"[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?)"
    r"(?:[ \t]*:[ \t]*([0-9]{1,5}))?",
    re.IGNORECASE,
)


def parse_via(text: str) -> Via:
    """One Via value (split a header's values first with L{split_commas})."""
    match = _VIA_RE.match(text)
    if match is None:
        raise ValueError(f"bad Via {text[:80]!r}")
    port = None
    if match.group(3) is not None:
        port = int(match.group(3))
        if not 0 < port < 65536:
            raise ValueError(f"bad Via port {port}")
    params = parse_header_params(text[match.end():])
    return Via(match.group(1).upper(), match.group(2).strip("[]").lower(), port, params)


@dataclass(frozen=True, slots=True)
class CSeq:
    """C{CSeq: 314159 INVITE}: the sequence number is below 2**31 (§8.1.1.5)."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    number, _, method = text.strip().partition(" ")
    method = method.strip()
    if not number.isascii() or not number.isdigit() or len(number) > 10 or int(number) >= 2**31:
        raise ValueError(f"bad CSeq number {number[:20]!r}")
    if not TOKEN_RE.fullmatch(method):
        raise ValueError(f"bad CSeq method {method[:20]!r}")
    return CSeq(int(number), method)
