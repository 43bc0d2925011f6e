# -*- test-case-name: tests.test_sip_sdp_digest -*-
"""
The offer/answer model (RFC 3264) over the project's SDP value
(L{mgcpswitch.mgcp.SessionDescription}): the same value a gateway's
connection descriptor is, so the SDP a line's CRCX returns is what the
trunk offers, and the peer's answer is what the line's MDCX is given.

A trunk does not touch media: it narrows the gateway's SDP to the codecs
the trunk may use, gives it an origin of its own (one session id per
dialog, its version raised when the description changes, §8), and checks
that what comes back is an answer to what was offered.  DTMF is RFC 4733
C{telephone-event}: passed through like any payload type, with the
offerer's payload number kept in the answer (§6.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..mgcp import MediaDescription, RemoteProtocolError, SessionDescription

__all__ = ["Origin", "parse_sdp", "make_offer", "make_answer", "check_answer", "acceptable", "TELEPHONE_EVENT", "direction_reply"]

TELEPHONE_EVENT = "telephone-event"
_REPLY_DIRECTION = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive", "sendrecv": "sendrecv"}
# §6.1: what an answer may say to each offered direction.
_ALLOWED_REPLIES = {
    "sendrecv": frozenset({"sendrecv", "sendonly", "recvonly", "inactive"}),
    "sendonly": frozenset({"recvonly", "inactive"}),
    "recvonly": frozenset({"sendonly", "inactive"}),
    "inactive": frozenset({"inactive"}),
}


@dataclass(frozen=True, slots=True)
class Origin:
    """The C{o=} line's session id and version this side uses in one dialog."""

    session_id: int
    version: int

    def next(self) -> Origin:
        return Origin(self.session_id, self.version + 1)


def parse_sdp(body: bytes) -> SessionDescription | None:
    """The session description in C{body}, or None if it is not one."""
    try:
        return SessionDescription.parse(body.decode("utf-8"))
    except (UnicodeDecodeError, RemoteProtocolError, ValueError):
        return None


def direction_reply(direction: str | None) -> str:
    """The answer's direction for an offered one (RFC 3264 §6.1)."""
    return _REPLY_DIRECTION.get(direction or "sendrecv", "sendrecv")


def _audio_lines(
    media: MediaDescription, chosen: list[int], maps: dict[int, tuple[str, int, int | None]],
    fmtp: dict[int, str], ptime: int | None, direction: str,
) -> list[str]:
    lines = [f"m=audio {media.port} RTP/AVP {' '.join(str(pt) for pt in chosen)}"]
    for pt in chosen:
        encoding, rate, channels = maps[pt]
        suffix = "" if channels is None else f"/{channels}"
        lines.append(f"a=rtpmap:{pt} {encoding}/{rate}{suffix}")
        if pt in fmtp:
            lines.append(f"a=fmtp:{pt} {fmtp[pt]}")
    if ptime is not None:
        lines.append(f"a=ptime:{ptime}")
    lines.append(f"a={direction}")
    return lines


def _session(origin: Origin, address: str, media_lines: list[str]) -> SessionDescription:
    kind = "IP6" if ":" in address else "IP4"
    return SessionDescription((
        "v=0",
        f"o=- {origin.session_id} {origin.version} IN {kind} {address}",
        "s=-",
        f"c=IN {kind} {address}",
        "t=0 0",
        *media_lines,
    ))


def _maps(media: MediaDescription) -> dict[int, tuple[str, int, int | None]]:
    return {pt: (m.encoding, m.clock_rate, m.channels) for pt, m in media.rtpmaps.items()}


def _wanted(encoding: str, codecs: tuple[str, ...]) -> bool:
    return encoding.lower() == TELEPHONE_EVENT or encoding.lower() in {c.lower() for c in codecs}


def make_offer(
    local: SessionDescription, codecs: tuple[str, ...], origin: Origin, previous: SessionDescription | None = None
) -> SessionDescription | None:
    """
    The offer to send for C{local} (a gateway's SDP): its audio stream,
    narrowed to C{codecs} (and telephone-event, when the gateway has it),
    in the gateway's order, with the gateway's direction (hold is
    C{a=sendonly} or C{a=inactive}).  A new offer in a session gives the
    C{previous} SDP this side sent: §8 keeps its m-lines in place, so the
    audio stream takes the place of the previous one and every other
    stream stays refused (port 0).  None when no codec is left or there
    is no audio stream.
    """
    audio = local.audio
    address = local.connection_address(audio)
    if audio is None or address is None:
        return None
    maps = _maps(audio)
    chosen = [pt for pt in audio.payload_types if pt in maps and _wanted(maps[pt][0], codecs)]
    if not any(maps[pt][0].lower() != TELEPHONE_EVENT for pt in chosen):
        return None
    direction = audio.direction or "sendrecv"
    lines = _audio_lines(audio, chosen, maps, audio.fmtp, audio.ptime, direction)
    if previous is not None and previous.audio is not None:
        streams = previous.media
        at = next(i for i, media in enumerate(streams) if media.media == "audio")
        lines = [*map(_refused, streams[:at]), *lines, *map(_refused, streams[at + 1:])]
    return _session(origin, address, lines)


def _refused(media: MediaDescription) -> str:
    """The m-line refusing (or keeping refused) C{media} (§6, §8.2)."""
    first = media.formats[0] if media.formats else "0"
    return f"m={media.media} 0 {media.protocol} {first}"


def make_answer(
    offer: SessionDescription, local: SessionDescription, codecs: tuple[str, ...], origin: Origin
) -> SessionDescription | None:
    """
    The answer to C{offer} from C{local} (a gateway's SDP for the call):
    one m-line per offered stream in order (§6); the first audio stream
    gets C{local}'s address and port and the offered codecs both sides
    and C{codecs} allow, with the offer's payload numbers (§6.1); every
    other stream is refused with port 0.  None when nothing can be
    accepted (the caller answers 488).
    """
    mine = local.audio
    address = local.connection_address(mine)
    if mine is None or address is None:
        return None
    local_codecs = {m.encoding.lower() for m in mine.rtpmaps.values()}
    lines: list[str] = []
    accepted = False
    for media in offer.media:
        if media.media == "audio" and not accepted and media.port != 0 and media.protocol == "RTP/AVP":
            maps = _maps(media)
            chosen = [
                pt for pt in media.payload_types
                if pt in maps and _wanted(maps[pt][0], codecs) and maps[pt][0].lower() in local_codecs
            ]
            if any(maps[pt][0].lower() != TELEPHONE_EVENT for pt in chosen):
                accepted = True
                fmtp = {pt: v for pt, v in media.fmtp.items() if pt in chosen}
                reply = _combine(direction_reply(media.direction), mine.direction)
                lines.extend(_audio_lines(_with_port(media, mine.port), chosen, maps, fmtp, mine.ptime, reply))
                continue
        lines.append(_refused(media))
    if not accepted:
        return None
    return _session(origin, address, lines)


def _combine(reply: str, mine: str | None) -> str:
    """The direction allowed by both the offer's reply and the local side's own."""
    if mine is None or mine == "sendrecv" or mine == reply:
        return reply
    if reply == "sendrecv":
        return mine
    return "inactive"


def acceptable(offer: SessionDescription, codecs: tuple[str, ...]) -> bool:
    """Whether C{offer} has an RTP audio stream with one of C{codecs} (else the answer is 488)."""
    for media in offer.media:
        if media.media == "audio" and media.port != 0 and media.protocol == "RTP/AVP":
            maps = _maps(media)
            if any(pt in maps and maps[pt][0].lower() != TELEPHONE_EVENT and _wanted(maps[pt][0], codecs)
                   for pt in media.payload_types):
                return True
    return False


def _with_port(media: MediaDescription, port: int) -> MediaDescription:
    return MediaDescription(media.media, port, None, media.protocol, media.formats, media.lines)


def check_answer(offer: SessionDescription, answer: SessionDescription) -> str | None:
    """
    What is wrong with C{answer} as an answer to C{offer} (§6: as many
    m-lines, an accepted audio stream whose codecs were offered, a
    direction §6.1 allows: C{recvonly} or C{inactive} to a C{sendonly}
    offer, C{inactive} to an C{inactive} one), or None.
    """
    if len(answer.media) != len(offer.media):
        return f"{len(answer.media)} media streams answer {len(offer.media)} offered"
    audio = answer.audio
    if audio is None or audio.port == 0:
        return "the audio stream was refused"
    if answer.connection_address(audio) is None:
        return "no connection address for the audio stream"
    offered_audio = offer.audio
    assert offered_audio is not None
    offered = {m.encoding.lower() for m in offered_audio.rtpmaps.values()}
    answered = [m.encoding.lower() for m in audio.rtpmaps.values()]
    if not any(c in offered and c != TELEPHONE_EVENT for c in answered):
        return "the answer has no codec that was offered"
    offered_direction = offered_audio.direction or "sendrecv"
    answered_direction = audio.direction or "sendrecv"
    if answered_direction not in _ALLOWED_REPLIES.get(offered_direction, _ALLOWED_REPLIES["sendrecv"]):
        return f"{answered_direction} does not answer {offered_direction}"
    return None
