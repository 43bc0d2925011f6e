# -*- test-case-name: tests.test_gateway_commands -*-
"""
Connections of the simulated gateway: codec negotiation, local SDP, RTP
ports and statistics (RFC 3435 §2.3.5-§2.3.7, §2.6, §3.4).

Negotiation follows §2.6: the approved codecs are ours intersected with
the C{a:} of C{L:} (all of ours without one, empty: 534); the negotiated
codecs are the approved ones the remote SDP also offers (no SDP: all the
approved ones; none: 534), in C{L:}'s order when C{L:} gave one.
C{telephone-event} rides along but never counts as a voice codec.  The
packetization period is adjusted to a value the codecs can do rather than
refused (§2.3.5: "may be adjusted"), and a bandwidth (C{b:}) that no codec
fits is not an error: the codec wins (§2.3.5).

Each connection reserves a real local UDP port (C{listenUDP(0)} on the
gateway's interface) unless the gateway runs with C{rtp=False}, which hands
out port numbers from a counter and binds nothing.

Media (RFC 3550 RTP over UDP): with C{media}, a connection whose mode sends
the handset's audio (L{mixing}) sends a 20 ms packet per packetization
period whose SSRC is the line's source id (L{mixing.line_source}: one per
line, in each of its connections' RTP sessions).  A packet received is
counted, then goes where the endpoint's mixing (RFC 3435 App. D, L{mixing})
sends it: to the handset (counted per contributing source: the packet's
CSRC list, or its SSRC when it has none), back out of the same connection
(C{netwloop}, C{netwtest}), or out of the other conference connections.
The simulated mixer relays rather than sums: a forwarded packet goes out
at once as the forwarding line's (its SSRC, the connection's sequence
numbers) with the contributors of the packet received as its CSRC list,
as an RFC 3550 mixer names its sources, so a far party counts whom it hears.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterable, MutableMapping

from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall

from ..mgcp import (
    ConnectionMode,
    ConnectionParameters,
    ExtensionName,
    LocalConnectionOptions,
    Mode,
    RemoteProtocolError,
    RtpMap,
    SessionDescription,
)
from .mixing import FROM_HANDSET, HANDSET, receivers, sends_handset

__all__ = [
    "Codec",
    "CODECS",
    "ConnectionState",
    "Connection",
    "Negotiated",
    "negotiate",
    "merge_options",
    "check_mode",
    "check_options",
    "PortPool",
    "MODES_NEEDING_REMOTE",
    "SENDING_MODES",
    "RECEIVING_MODES",
]


@dataclass(frozen=True, slots=True)
class Codec:
    """A codec the endpoints implement: RTP name, payload type, kbit/s."""

    name: str
    payload_type: int
    clock_rate: int
    kbps: int
    bytes_per_ms: int
    voice: bool = True


CODECS: dict[str, Codec] = {
    "PCMU": Codec("PCMU", 0, 8000, 64, 8),
    "PCMA": Codec("PCMA", 8, 8000, 64, 8),
    "G729": Codec("G729", 18, 8000, 8, 1),
    "TELEPHONE-EVENT": Codec("telephone-event", 101, 8000, 0, 0, voice=False),
}

#: Modes that send media or loop it back to the network: they need to know
#: where to send it, so they need a remote descriptor (§2.3.5: 527).
MODES_NEEDING_REMOTE = frozenset({
    ConnectionMode.SENDONLY, ConnectionMode.SENDRECV, ConnectionMode.CONFRNCE,
    ConnectionMode.NETWLOOP, ConnectionMode.NETWTEST,
})
SENDING_MODES = frozenset({ConnectionMode.SENDONLY, ConnectionMode.SENDRECV, ConnectionMode.CONFRNCE})
RECEIVING_MODES = frozenset({
    ConnectionMode.RECVONLY, ConnectionMode.SENDRECV, ConnectionMode.CONFRNCE,
    ConnectionMode.NETWLOOP, ConnectionMode.NETWTEST,
})

#: Sources a connection counts in C{heard} (a three-way call needs two).
HEARD_LIMIT = 32
_SSRC = struct.Struct("!I")
#: Where a connection alone on its endpoint sends what it receives, by mode
#: (L{mixing.receivers}, the connection itself written C{_ITSELF}).
_ITSELF = "itself"
_ALONE = {
    mode: tuple(HANDSET if t is HANDSET else _ITSELF for t in receivers(((_ITSELF, mode),), _ITSELF))
    for mode in ConnectionMode
}
_OVERHEAD_BITS = 40 * 8  # IPv4 + UDP + RTP headers per packet
_PTIME_RANGE = (10, 200)


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """What a line shows of one of its connections."""

    connection_id: str
    call_id: str
    mode: str
    local_sdp: SessionDescription | None
    remote_sdp: SessionDescription | None
    rtp_port: int
    #: the line's RTP source id (SSRC of what it sends, CSRC when it forwards)
    source: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    #: packets received here and sent out of another connection (confrnce)
    forwarded: int = 0
    #: (source id, packets) that reached the handset through this connection
    heard: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Negotiated:
    codecs: tuple[Codec, ...]
    packetization: int
    telephone_event_pt: int


def check_mode(mode: Mode) -> ConnectionMode:
    """@raise RemoteProtocolError: 518 for a package extension mode."""
    if isinstance(mode, ExtensionName):
        raise RemoteProtocolError(518, f"unsupported extension mode {mode}")
    return mode


def check_options(lco: LocalConnectionOptions) -> None:
    """
    The options we act on or accept; RFC 3435 §2.3.5, §3.2.2.10, RFC 3661.

    @raise RemoteProtocolError: 525 for an unknown critical C{x+} option,
        532 for a value we do not support, 541 for an unknown option.
    """
    for key, value in lco.options:
        if key in ("p", "a", "b", "t", "e", "gc", "s", "r"):
            continue
        if key == "nt":
            if value.upper() != "IN":
                raise RemoteProtocolError(532, f"unsupported network type {value}")
        elif key == "k":
            raise RemoteProtocolError(532, "media encryption is not supported")
        elif key.startswith("x+"):
            raise RemoteProtocolError(525, f"unknown critical option {key}")
        elif key.startswith("x-") or "/" in key or key in ("fmtp", "o-fmtp"):
            continue  # ignored: optional vendor option, package option, RFC 3660 FM
        else:
            raise RemoteProtocolError(541, f"unknown local connection option {key}")


def _ptime(wanted: tuple[int, int] | None, remote: int | None, default: int) -> int:
    low, high = wanted if wanted is not None else ((remote, remote) if remote else (default, default))
    if low <= default <= high:
        return default
    value = min(max(low, _PTIME_RANGE[0]), _PTIME_RANGE[1])
    return -(-value // 10) * 10  # round up to whole 10 ms frames (G.729)


def _bandwidth_kbps(codec: Codec, ptime: int) -> float:
    return codec.kbps + _OVERHEAD_BITS / ptime


def negotiate(
    ours: Iterable[str],
    lco: LocalConnectionOptions | None,
    remote: SessionDescription | None,
    default_ptime: int,
) -> Negotiated:
    """
    Codec negotiation of RFC 3435 §2.6, from the connection's options (the
    ones supplied last, with those retained from before) and its remote
    descriptor.

    @raise RemoteProtocolError: 534 when no voice codec is approved or
        negotiated, 505 when the remote SDP has no usable RTP audio stream,
        509 when it lacks a connection address.
    """
    supported = [CODECS[c.upper()] for c in ours]
    asked = lco.codecs if lco is not None else ()
    if asked:
        by_name = {c.name.upper(): c for c in supported}
        approved = [by_name[n.upper()] for n in asked if n.upper() in by_name]
        if not any(c.voice for c in approved):
            raise RemoteProtocolError(534, "no codec of L: is supported")
    else:
        approved = supported
    remote_ptime = None
    te_pt = CODECS["TELEPHONE-EVENT"].payload_type
    if remote is not None:
        audio = remote.audio
        if audio is None or not audio.protocol.upper().startswith("RTP/AVP"):
            raise RemoteProtocolError(505, "no RTP audio stream in the remote descriptor")
        conn = audio.connection or remote.session_connection
        if conn is None:
            raise RemoteProtocolError(509, "no connection address in the remote descriptor")
        if conn.network_type.upper() != "IN":
            raise RemoteProtocolError(505, f"unsupported network type {conn.network_type}")
        maps = audio.rtpmaps
        offered: list[str] = []
        for pt in audio.payload_types:
            rtpmap = maps.get(pt)
            if rtpmap is not None:
                offered.append(rtpmap.encoding.upper())
                if offered[-1] == "TELEPHONE-EVENT":
                    te_pt = pt
        if asked:  # L: order wins (§2.6)
            approved = [c for c in approved if c.name.upper() in offered]
        else:
            mine = {c.name.upper(): c for c in approved}
            approved = [mine[n] for n in offered if n in mine]
        if not any(c.voice for c in approved):
            raise RemoteProtocolError(534, "no common codec with the remote descriptor")
        remote_ptime = audio.ptime
    ptime = _ptime(lco.packetization if lco is not None else None, remote_ptime, default_ptime)
    bandwidth = lco.bandwidth if lco is not None else None
    if bandwidth is not None:
        fitting = [c for c in approved if not c.voice or _bandwidth_kbps(c, ptime) <= bandwidth[1]]
        if any(c.voice for c in fitting):
            approved = fitting  # else the codec wins over the bandwidth (§2.3.5)
    return Negotiated(tuple(approved), ptime, te_pt)


def merge_options(
    old: LocalConnectionOptions | None, new: LocalConnectionOptions | None
) -> LocalConnectionOptions | None:
    """Options supplied now over the ones retained (§2.3.6: omitted fields keep their values)."""
    if new is None or old is None:
        return new if new is not None else old
    fresh = dict(new.options)
    pairs = [(k, fresh.pop(k, v)) for k, v in old.options]
    pairs.extend((k, v) for k, v in new.options if k in fresh)
    return LocalConnectionOptions(tuple(pairs))


class RtpSession(DatagramProtocol):
    """The UDP socket of one connection: counts what it receives."""

    noisy = False  # one per connection: no start/stop log lines

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        self.connection.rtp_received(datagram, addr)


class PortPool:
    """
    Local RTP ports: bound for real (C{listenUDP(0)}) or, without binding,
    even numbers from a counter, skipping ones still in use.
    """

    def __init__(self, reactor: Any, interface: str, bind: bool, base: int) -> None:
        self._reactor = reactor
        self._interface = interface
        self._bind = bind
        self._base = base & ~1
        self._next = self._base
        self._in_use: set[int] = set()

    def reserve(self, connection: Connection) -> tuple[int, IListeningPort | None]:
        if self._bind:
            listening = self._reactor.listenUDP(0, RtpSession(connection), interface=self._interface)
            return listening.getHost().port, listening
        port = self._next
        while port in self._in_use:
            port = port + 2 if port + 2 < 65536 else self._base
        self._next = port + 2 if port + 2 < 65536 else self._base
        self._in_use.add(port)
        return port, None

    def release(self, port: int, listening: IListeningPort | None) -> Any:
        """Free a port; returns what C{stopListening} returned (a Deferred, for real sockets)."""
        if listening is not None:
            return listening.stopListening()
        self._in_use.discard(port)
        return None

    @property
    def in_use(self) -> int:
        return len(self._in_use)


class Connection:
    """
    One connection of an endpoint (mutable; the line shows a frozen
    L{ConnectionState}).  Statistics saturate at 9 digits (§2.3.7).
    """

    __slots__ = (
        "connection_id", "call_id", "mode", "options", "remote_sdp", "local_sdp", "negotiated",
        "port", "listening", "sdp_version", "packets_sent", "octets_sent", "packets_received",
        "octets_received", "expected_seq", "lost", "sender", "siblings", "source", "heard", "forwarded",
    )

    def __init__(
        self, connection_id: str, call_id: str, mode: ConnectionMode,
        siblings: MutableMapping[str, Connection] | None = None, source: int = 0,
    ) -> None:
        """
        @param siblings: the endpoint's connections by id (this one among
            them once it is created): who the mixing may forward to.
        @param source: the line's RTP source id (L{mixing.line_source}).
        """
        self.connection_id = connection_id
        self.call_id = call_id
        self.mode = mode
        self.options: LocalConnectionOptions | None = None
        self.remote_sdp: SessionDescription | None = None
        self.local_sdp: SessionDescription | None = None
        self.negotiated: Negotiated | None = None
        self.port = 0
        self.listening: IListeningPort | None = None
        self.sdp_version = 0
        self.packets_sent = self.octets_sent = 0
        self.packets_received = self.octets_received = 0
        self.expected_seq: int | None = None
        self.lost = 0
        self.sender: LoopingCall | None = None
        self.siblings: MutableMapping[str, Connection] = siblings if siblings is not None else {connection_id: self}
        self.source = source & 0xFFFFFFFF
        self.heard: dict[int, int] = {}
        self.forwarded = 0

    # -- SDP -----------------------------------------------------------

    def build_local_sdp(self, address: str) -> SessionDescription:
        """The local descriptor; its version grows on every change (§3.4.1)."""
        assert self.negotiated is not None
        self.sdp_version += 1
        codecs = self.negotiated.codecs
        rtpmaps = []
        pts = []
        fmtp = {}
        for codec in codecs:
            pt = self.negotiated.telephone_event_pt if not codec.voice else codec.payload_type
            pts.append(pt)
            rtpmaps.append(RtpMap(pt, codec.name, codec.clock_rate))
            if not codec.voice:
                fmtp[pt] = "0-15"
        self.local_sdp = SessionDescription.create(
            address, self.port, pts, rtpmaps=rtpmaps, fmtp=fmtp,
            ptime=self.negotiated.packetization,
            session_id=str(int(self.connection_id, 16)), session_version=str(self.sdp_version),
        )
        return self.local_sdp

    def state(self) -> ConnectionState:
        return ConnectionState(
            self.connection_id, self.call_id, str(self.mode), self.local_sdp, self.remote_sdp, self.port,
            self.source, self.packets_sent, self.packets_received, self.forwarded, tuple(self.heard.items()),
        )

    # -- statistics ----------------------------------------------------

    def statistics(self) -> ConnectionParameters:
        cap = 999_999_999
        return ConnectionParameters((
            ("PS", min(self.packets_sent, cap)),
            ("OS", min(self.octets_sent, cap)),
            ("PR", min(self.packets_received, cap)),
            ("OR", min(self.octets_received, cap)),
            ("PL", max(min(self.lost, cap), -cap)),
            ("JI", 0),
            ("LA", 0),
        ))

    # -- media ---------------------------------------------------------

    def rtp_received(self, datagram: bytes, addr: Any) -> None:
        """Count an RTP packet, then hand it on as the endpoint's mixing says (module docstring)."""
        if len(datagram) < 12 or datagram[0] >> 6 != 2:
            return  # not RTP (osmo-mgw's 1-byte dummy packets, RTCP probes)
        count = datagram[0] & 0x0F
        header = 12 + 4 * count
        if len(datagram) < header:
            return  # a CSRC list longer than the packet: not a packet we can read
        self.packets_received += 1
        self.octets_received += len(datagram) - header
        seq = struct.unpack_from("!H", datagram, 2)[0]
        if self.expected_seq is not None:
            gap = (seq - self.expected_seq) & 0xFFFF
            if gap < 3000:  # a jump forward: packets lost; else late or duplicated
                self.lost += gap
        self.expected_seq = (seq + 1) & 0xFFFF
        contributors = struct.unpack_from(f"!{count}I", datagram, 12) if count else _SSRC.unpack_from(datagram, 8)
        siblings = self.siblings
        if len(siblings) == 1:  # the usual endpoint: one call, one connection
            targets = _ALONE[self.mode]
        else:
            targets = receivers(tuple([(cid, conn.mode) for cid, conn in siblings.items()]), self.connection_id)
        for target in targets:
            if target is HANDSET:
                heard = self.heard
                for source in contributors:
                    if source in heard:
                        heard[source] += 1
                    elif len(heard) < HEARD_LIMIT:  # bounded: a stray sender's random SSRCs are not kept
                        heard[source] = 1
            elif target is _ITSELF or target == self.connection_id:
                self._send_raw(datagram)  # netwloop, netwtest: back where it came from
            else:
                other = self.siblings.get(target)
                if other is not None and other.listening is not None and other.remote_sdp is not None:
                    other._send(datagram[header:], contributors)
                    self.forwarded += 1

    def update_media(self, clock: IReactorTime, enabled: bool) -> None:
        """Start or stop sending 20 ms packets, as mode and remote SDP allow."""
        should = (
            enabled and self.listening is not None and self.remote_sdp is not None
            and self.mode in SENDING_MODES and self.negotiated is not None
        )
        if should and self.sender is None:
            self.sender = LoopingCall(self._send_packet)
            self.sender.clock = clock
            self.sender.start(self.negotiated.packetization / 1000.0, now=False)  # type: ignore[union-attr]
        elif not should and self.sender is not None:
            self.stop_media()

    def stop_media(self) -> None:
        if self.sender is not None:
            if self.sender.running:
                self.sender.stop()
            self.sender = None

    def _remote(self) -> tuple[str, int] | None:
        return self.remote_sdp.rtp_address if self.remote_sdp is not None else None

    def _send_raw(self, datagram: bytes) -> None:
        remote = self._remote()
        if remote is None or self.listening is None:
            return
        try:
            self.listening.write(datagram, remote)  # type: ignore[attr-defined]  # listenUDP is declared to return IListeningPort; its ports are IUDPTransports too
        except OSError:
            pass  # unreachable peer: the packet is lost like any other

    def _send_packet(self) -> None:
        """One packetization period of the handset's audio, on the connections the mixing sends it on."""
        siblings = self.siblings
        if len(siblings) == 1:
            sending = self.mode in FROM_HANDSET
        else:
            sending = sends_handset(tuple([(cid, conn.mode) for cid, conn in siblings.items()]), self.connection_id)
        if not sending:
            return  # a loopback or continuity test on the endpoint holds the handset's audio back
        negotiated = self.negotiated
        assert negotiated is not None
        codec = next(c for c in negotiated.codecs if c.voice)
        size = codec.bytes_per_ms * negotiated.packetization
        self._send((b"\xff" if codec.name == "PCMU" else b"\xd5") * size, ())

    def _send(self, payload: bytes, contributors: tuple[int, ...]) -> None:
        """
        A packet of this line's RTP stream: the handset's own audio (no
        CSRC), or audio forwarded from C{contributors} (up to 15, RFC 3550 §5.1).
        """
        negotiated = self.negotiated
        assert negotiated is not None
        codec = next(c for c in negotiated.codecs if c.voice)
        contributors = contributors[:15]
        seq = self.packets_sent & 0xFFFF
        timestamp = (self.packets_sent * negotiated.packetization * 8) & 0xFFFFFFFF
        header = struct.pack(
            f"!BBHII{len(contributors)}I", 0x80 | len(contributors), codec.payload_type, seq, timestamp,
            self.source, *contributors,
        )
        self._send_raw(header + payload)
        self.packets_sent += 1
        self.octets_sent += len(payload)
