# -*- test-case-name: tests.test_codec -*-
"""
SDP as MGCP uses it (RFC 3435 §3.4; RFC 2327 is the version it cites).

A session description is kept as its ordered lines, which makes decoding
one regex check and a split, keeps every line a peer sent (unknown
attributes must be ignored, not lost), and makes equality exact.  The
parts a call agent or gateway reads (origin, connection address, media
ports, payload types, rtpmap, fmtp, ptime, direction) are typed views
computed on access.  L{SessionDescription.create} writes the lines in the
canonical order for an audio session.

The single line C{v=0} is the "empty" descriptor MGCP uses for a
connection descriptor that was asked for but does not exist (§3.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from ._errors import RemoteProtocolError

__all__ = [
    "SessionDescription",
    "MediaDescription",
    "Origin",
    "ConnectionData",
    "RtpMap",
    "EMPTY_SDP",
    "STATIC_PAYLOAD_TYPES",
]

# RFC 3551 static payload types a telephony gateway meets.
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    15: ("G728", 8000),
    18: ("G729", 8000),
}

_DIRECTIONS = frozenset(("sendrecv", "sendonly", "recvonly", "inactive"))


@dataclass(frozen=True, slots=True)
class Origin:
    username: str
    session_id: str
    version: str
    network_type: str
    address_type: str
    address: str


@dataclass(frozen=True, slots=True)
class ConnectionData:
    network_type: str
    address_type: str
    address: str


@dataclass(frozen=True, slots=True)
class RtpMap:
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One C{m=} section: the C{m=} line's fields and the section's lines."""

    media: str
    port: int
    port_count: int | None
    protocol: str
    formats: tuple[str, ...]
    lines: tuple[tuple[str, str], ...]

    @property
    def connection(self) -> ConnectionData | None:
        for kind, value in self.lines:
            if kind == "c":
                return _connection(value)
        return None

    @property
    def attributes(self) -> tuple[tuple[str, str | None], ...]:
        """C{a=} lines as C{(name, value)}; value None for flag attributes."""
        out: list[tuple[str, str | None]] = []
        for kind, value in self.lines:
            if kind == "a":
                name, colon, rest = value.partition(":")
                out.append((name, rest if colon else None))
        return tuple(out)

    def attribute(self, name: str) -> str | None:
        for attr, value in self.attributes:
            if attr == name:
                return value
        return None

    @property
    def payload_types(self) -> tuple[int, ...]:
        return tuple(int(f) for f in self.formats if f.isdigit())

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """C{a=rtpmap} entries plus the static payload types not mapped."""
        maps: dict[int, RtpMap] = {}
        for attr, value in self.attributes:
            if attr == "rtpmap" and value:
                pt_text, _, encoding = value.partition(" ")
                parts = encoding.strip().split("/")
                if pt_text.isdigit() and len(parts) >= 2 and parts[1].isdigit():
                    channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
                    maps[int(pt_text)] = RtpMap(int(pt_text), parts[0], int(parts[1]), channels)
        for pt in self.payload_types:
            if pt not in maps and pt in STATIC_PAYLOAD_TYPES:
                name, rate = STATIC_PAYLOAD_TYPES[pt]
                maps[pt] = RtpMap(pt, name, rate)
        return maps

    @property
    def codecs(self) -> tuple[str, ...]:
        """Encoding names in the order of the C{m=} line's formats."""
        maps = self.rtpmaps
        return tuple(maps[pt].encoding for pt in self.payload_types if pt in maps)

    @property
    def fmtp(self) -> dict[int, str]:
        out = {}
        for attr, value in self.attributes:
            if attr == "fmtp" and value:
                pt_text, _, params = value.partition(" ")
                if pt_text.isdigit():
                    out[int(pt_text)] = params.strip()
        return out

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        return int(value) if value and value.isdigit() else None

    @property
    def direction(self) -> str | None:
        for attr, value in self.attributes:
            if value is None and attr in _DIRECTIONS:
                return attr
        return None


# One pass of the C regex engine validates a whole description: every line
# is "x=value", and the c=, o= and m= lines have their fields.
_SDP_RE = re.compile(
    r"(?:(?:"
    r"[abd-lnp-z]=[^\n]*+"
    r"|c=\S++[ \t]++\S++[ \t]++\S++"
    r"|o=\S++(?:[ \t]++\S++){5}"
    r"|m=\S++[ \t]++\d++(?:/\d++)?+[ \t]++\S++(?:[ \t]++\S++)++"
    r")[ \t]*+\n)*+"
)


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """
    An SDP session description as its ordered lines (C{"m=audio 3456 RTP/AVP 0"}),
    without line ends.

    Build one with L{create} or L{parse}; read it through the properties.
    """

    lines: tuple[str, ...]
    # The CRLF text, when the decoder already has it (its lines are
    # validated and hold no CR or LF): encoding then neither joins nor
    # re-scans them.  Not part of the value.
    _wire: str | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> SessionDescription:
        """
        Parse SDP text (lines separated by LF or CRLF; blank lines ignored).

        @raise RemoteProtocolError: 509 for a line that is not C{x=value},
            a first line other than C{v=0}, or a malformed C{c=}, C{o=} or
            C{m=} line (RFC 3661: error in the RemoteConnectionDescriptor).
        """
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        return cls.from_text("\n".join(line for line in text.split("\n") if line) + "\n")

    @classmethod
    def from_text(cls, text: str) -> SessionDescription:
        """
        Build from LF-terminated lines with no blank line (the decoder's
        path: one regex match validates the whole body).
        """
        if not text.startswith("v=0\n") or _SDP_RE.fullmatch(text) is None:
            raise RemoteProtocolError(509, f"bad session description {_first_bad(text)!r}")
        lines = text.split("\n")
        lines.pop()
        sdp = _new(cls)
        _set_lines(sdp, tuple(lines))
        _set_wire(sdp, text.replace("\n", "\r\n"))
        return sdp

    @classmethod
    def create(
        cls,
        address: str,
        port: int,
        payload_types: Iterable[int],
        *,
        rtpmaps: Iterable[RtpMap] = (),
        fmtp: dict[int, str] | None = None,
        ptime: int | None = None,
        direction: str | None = None,
        session_id: str = "0",
        session_version: str = "0",
        address_type: str | None = None,
        extra_attributes: Iterable[str] = (),
    ) -> SessionDescription:
        """
        A one-stream audio session in canonical line order (RFC 3435
        §3.4.1): v, o, s, c, t, m, then a=rtpmap / fmtp / ptime / direction.
        """
        if address_type is None:
            address_type = "IP6" if ":" in address else "IP4"
        pts = tuple(payload_types)
        rtpmaps = tuple(rtpmaps)
        lines = [
            "v=0",
            f"o=- {session_id} {session_version} IN {address_type} {address}",
            "s=-",
            f"c=IN {address_type} {address}",
            "t=0 0",
            "m=audio %d RTP/AVP %s" % (port, " ".join(str(pt) for pt in pts)),
        ]
        fmtp = fmtp or {}
        for rtpmap in rtpmaps:
            suffix = "" if rtpmap.channels is None else f"/{rtpmap.channels}"
            lines.append(
                f"a=rtpmap:{rtpmap.payload_type} {rtpmap.encoding}/{rtpmap.clock_rate}{suffix}"
            )
            if rtpmap.payload_type in fmtp:
                lines.append(f"a=fmtp:{rtpmap.payload_type} {fmtp[rtpmap.payload_type]}")
        mapped = {r.payload_type for r in rtpmaps}
        for pt, params in fmtp.items():
            if pt not in mapped:
                lines.append(f"a=fmtp:{pt} {params}")
        if ptime is not None:
            lines.append(f"a=ptime:{ptime}")
        if direction is not None:
            lines.append(f"a={direction}")
        lines.extend(f"a={attr}" for attr in extra_attributes)
        return cls(tuple(lines))

    def __str__(self) -> str:
        return "\r\n".join(self.lines) + "\r\n"

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The lines as C{(type, value)}."""
        return tuple((line[0], line[2:]) for line in self.lines)

    @property
    def is_empty(self) -> bool:
        """The C{v=0}-only descriptor: asked for, but there is none."""
        return len(self.lines) == 1

    @property
    def origin(self) -> Origin | None:
        for kind, value in self.pairs:
            if kind == "o":
                return Origin(*value.split())
            if kind == "m":
                break
        return None

    @property
    def session_connection(self) -> ConnectionData | None:
        for kind, value in self.pairs:
            if kind == "c":
                return _connection(value)
            if kind == "m":
                break
        return None

    @property
    def media(self) -> tuple[MediaDescription, ...]:
        sections: list[MediaDescription] = []
        current: tuple[str, list[tuple[str, str]]] | None = None
        for kind, value in self.pairs:
            if kind == "m":
                if current is not None:
                    sections.append(_media(current[0], current[1]))
                current = (value, [])
            elif current is not None:
                current[1].append((kind, value))
        if current is not None:
            sections.append(_media(current[0], current[1]))
        return tuple(sections)

    @property
    def audio(self) -> MediaDescription | None:
        for media in self.media:
            if media.media == "audio":
                return media
        return None

    def connection_address(self, media: MediaDescription | None = None) -> str | None:
        """The address media of C{media} (default: the audio stream) goes to."""
        media = media or self.audio
        conn = (media.connection if media else None) or self.session_connection
        return conn.address if conn else None

    @property
    def rtp_address(self) -> tuple[str, int] | None:
        """(address, port) of the audio stream, or None."""
        audio = self.audio
        address = self.connection_address(audio)
        if audio is None or address is None:
            return None
        return (address, audio.port)


def _connection(value: str) -> ConnectionData:
    nettype, addrtype, address = value.split()
    return ConnectionData(nettype, addrtype, address.partition("/")[0])


def _media(m_value: str, lines: list[tuple[str, str]]) -> MediaDescription:
    fields = m_value.split()
    port_text, slash, count = fields[1].partition("/")
    return MediaDescription(
        fields[0],
        int(port_text),
        int(count) if slash and count.isdigit() else None,
        fields[2],
        tuple(fields[3:]),
        tuple(lines),
    )


def _first_bad(text: str) -> str:
    """The first line that breaks the grammar, for the error message."""
    for i, line in enumerate(text.split("\n")[:-1]):
        if (i == 0 and line != "v=0") or _SDP_RE.fullmatch(line + "\n") is None:
            return line[:60]
    return text[:60]


EMPTY_SDP = SessionDescription(("v=0",))
# The decoder's constructor (see _message.trusted_command for why).
_new = object.__new__
_set_lines = SessionDescription.__dict__["lines"].__set__
_set_wire = SessionDescription.__dict__["_wire"].__set__
