# -*- test-case-name: tests.test_sip_message -*-
"""
SIP and other URIs (RFC 3261 §19.1, §25.1), as frozen values.

A C{sip:}/C{sips:} URI is parsed into its parts (user, password, host,
port, parameters, headers); any other absolute URI (C{tel:+15551234},
seen in From and To) is kept as its scheme and text.  The scheme, the host
and parameter names are case-insensitive and lower-cased on the way in;
everything else is kept as written, so that what a peer sent can be
written back.  L{parse_uri} raises L{ValueError} with the reason; the
message decoder turns that into the status code to answer with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Union

__all__ = ["SipUri", "OtherUri", "Uri", "parse_uri", "Params", "format_params", "param"]

#: Parameters as written: C{(name, value)}, value None for a flag (C{;lr}).
Params = tuple[tuple[str, Union[str, None]], ...]

# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved );
# password likewise without ";?/"; a parameter is paramchar+ (with "[]/:&+$").
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|%[0-9A-Fa-f]{{2}})+")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|%[0-9A-Fa-f]{{2}})*")
_HOST_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?")
_PARAM_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|%[0-9A-Fa-f]{{2}})+")
_HEADER_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|%[0-9A-Fa-f]{{2}})*")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_OPAQUE_RE = re.compile(r"[^\s<>\"]+")


def param(params: Params, name: str) -> str | None:
    """The value of parameter C{name} (lower case), "" for a flag, None if absent."""
    for key, value in params:
        if key == name:
            return "" if value is None else value
    return None


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


@dataclass(frozen=True, slots=True)
class SipUri:
    """C{sip:user:password@host:port;params?headers}; C{host} without brackets."""

    host: str
    user: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    password: str | None = None
    scheme: str = "sip"

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(f"[{self.host}]" if ":" in self.host else self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    @property
    def address(self) -> tuple[str, int]:
        """Where to send (host, port), the port defaulted (5060, 5061 for sips)."""
        return (self.host, self.port if self.port is not None else (5061 if self.scheme == "sips" else 5060))

    def without_params(self) -> SipUri:
        return replace(self, params=(), headers=())


@dataclass(frozen=True, slots=True)
class OtherUri:
    """An absolute URI of another scheme (C{tel:+15551234}), kept as written."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = Union[SipUri, OtherUri]


def _params(text: str, what: str) -> Params:
    out: list[tuple[str, str | None]] = []
    if not text:
        return ()
    for item in text.split(";")[1:]:
        name, eq, value = item.partition("=")
        if not _PARAM_RE.fullmatch(name) or (eq and not _PARAM_RE.fullmatch(value)):
            raise ValueError(f"bad {what} parameter {item!r}")
        out.append((name.lower(), value if eq else None))
    return tuple(out)


def parse_uri(text: str) -> Uri:
    """
    Parse an absolute URI.

    @raise ValueError: with the reason, for text that is no URI.
    """
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise ValueError(f"not a URI: {text[:80]!r}")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips"):
        if not _OPAQUE_RE.fullmatch(rest):
            raise ValueError(f"bad {scheme} URI {text[:80]!r}")
        return OtherUri(scheme, rest)
    userinfo, at, hostpart = rest.rpartition("@")
    user: str | None = None
    password: str | None = None
    if at:
        user, pcolon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user) or (pcolon and not _PASSWORD_RE.fullmatch(pw)):
            raise ValueError(f"bad user part in {text[:80]!r}")
        password = pw if pcolon else None
    hostpart, question, header_text = hostpart.partition("?")
    semi = hostpart.find(";")
    hostport, param_text = (hostpart, "") if semi < 0 else (hostpart[:semi], hostpart[semi:])
    if hostport.startswith("["):
        host, bracket, port_text = hostport.partition("]")
        host += bracket
        if port_text and not port_text.startswith(":"):
            raise ValueError(f"bad host in {text[:80]!r}")
        port_text = port_text[1:]
        has_port = bool(bracket and hostport[len(host):].startswith(":"))
    else:
        host, pc, port_text = hostport.partition(":")
        has_port = bool(pc)
    if not _HOST_RE.fullmatch(host):
        raise ValueError(f"bad host {host[:80]!r}")
    port: int | None = None
    if has_port:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad port {port_text[:20]!r}")
        port = int(port_text)
    headers: list[tuple[str, str]] = []
    if question:
        for item in header_text.split("&"):
            name, eq, value = item.partition("=")
            if not eq or not name or not _HEADER_RE.fullmatch(name) or not _HEADER_RE.fullmatch(value):
                raise ValueError(f"bad URI header {item[:40]!r}")
            headers.append((name, value))
    return SipUri(
        host=host.strip("[]").lower(),
        user=user,
        port=port,
        params=_params(param_text, "URI"),
        headers=tuple(headers),
        password=password,
        scheme=scheme,
    )
