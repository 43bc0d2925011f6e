# -*- test-case-name: tests.test_sip_trunk -*-
"""
What a trunk's calls share, out and in: a channel held from the first
message to the last, a dialog once there is one, an SDP origin of their
own, the 2xx retransmitted until its ACK (§13.3.1.4), the peer's BYE and
re-INVITE, call control's C{update(sdp)} (our re-INVITEs, L{reinvite}),
and one way out, L{SipCall._finish}: its channel, dialog, timers and
owed updates go; the transactions it used run out on their own timers.
"""

from __future__ import annotations

from enum import Enum
from typing import Callable, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..config import TrunkSettings
from ..mgcp import SessionDescription
from ..trunk import TrunkCallError
from .agent import SDP_TYPE, UserAgent
from .dialog import Dialog, DialogId
from .digest import Challenge
from .headers import NameAddress
from .message import Headers, Method, Request, Response, encode, response_to
from .reinvite import ENDED, Updates
from .sdp import Origin, make_answer, make_offer, parse_sdp
from .transaction import ClientTransaction, ServerTransaction, SipTimers
from .uri import SipUri

Address = tuple[str, int]


class TrunkContext(Protocol):
    """What a trunk's calls need of their trunk (L{SipTrunk} provides it)."""

    settings: TrunkSettings
    agent: UserAgent
    clock: IReactorTime
    timers: SipTimers
    peer: Address
    channels: set[SipCall]
    dialogs: dict[DialogId, SipCall]
    recording: dict[str, SipCall]
    answered_in: int
    answered_out: int

    @property
    def contact(self) -> NameAddress: ...

    def uri(self, user: str | None, *, port: bool = True) -> SipUri: ...

    def record(self, call: SipCall, call_id: str) -> None: ...

    def challenge_of(self, response: Response) -> Challenge | None: ...

    def with_credentials(self, request: Request, challenge: Challenge, *, bump: bool = True) -> Request: ...

    def count(self, direction: str, code: int) -> None: ...


class Callback:
    """A client transaction's user made of two functions."""

    def __init__(self, on_response: Callable[[Response], None], on_timeout: Callable[[], None]) -> None:
        self._on_response = on_response
        self._on_timeout = on_timeout

    def response_received(self, transaction: ClientTransaction, response: Response) -> None:
        self._on_response(response)

    def timed_out(self, transaction: ClientTransaction) -> None:
        self._on_timeout()


def ignore(*args: object) -> None:
    pass


class Reliable2xx:
    """
    A 2xx to an INVITE (already sent once by its transaction) sent again
    at T1, 2T1, ... T2 until its ACK (§13.3.1.4); C{on_no_ack} after
    64*T1 without one.
    """

    def __init__(self, trunk: TrunkContext, response: Response, destination: Address,
                 on_no_ack: Callable[[], None]) -> None:
        self.trunk = trunk
        self.data = encode(response)
        self.destination = destination
        self.on_no_ack = on_no_ack
        self.interval = trunk.timers.t1
        self.waited = 0.0
        self.call: IDelayedCall | None = trunk.clock.callLater(self.interval, self._again)

    def _again(self) -> None:
        self.waited += self.interval
        if self.waited >= self.trunk.timers.timeout:
            self.call = None
            self.on_no_ack()
            return
        self.trunk.agent.layer.write(self.data, self.destination)
        self.trunk.agent.layer.retransmissions += 1
        self.interval = min(2 * self.interval, self.trunk.timers.t2)
        self.call = self.trunk.clock.callLater(self.interval, self._again)

    def stop(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None


class Phase(Enum):
    CALLING = "calling"  # INVITE sent (or received), no dialog yet
    EARLY = "early"  # a provisional answer
    ANSWERED = "answered"  # incoming: 200 sent, waiting for the ACK
    CONFIRMED = "confirmed"
    ENDING = "ending"  # our BYE or CANCEL is out
    DONE = "done"


class SipCall:
    """What outgoing and incoming calls share: a channel, a dialog, an origin, one way out."""

    log = Logger()
    direction = ""
    owns_call_id = False  # whether this side made the Call-ID (§14.1's pause after a 491)

    def __init__(self, trunk: TrunkContext) -> None:
        self.trunk = trunk
        self.phase = Phase.CALLING
        self.dialog: Dialog | None = None
        self.origin = Origin(trunk.agent.rng.getrandbits(31), 1)
        self.line: SessionDescription | None = None  # the line's SDP the session is made from
        self.local_sdp: SessionDescription | None = None  # what we last sent
        self.remote_sdp: SessionDescription | None = None
        self.updates = Updates(self)
        self._timer: IDelayedCall | None = None
        self._reliable: Reliable2xx | None = None
        # Its messages, (time, "in"/"out", bytes, peer address), when the
        # trunk keeps them (L{SipTrunk.keep_messages}): for the admin's ladders.
        self.messages: list[tuple[float, str, bytes, Address]] | None = None
        self.recorded_id: str | None = None
        trunk.channels.add(self)

    @property
    def closing(self) -> bool:
        """Whether call control hung up (what is left goes without it)."""
        return False

    def update(self, sdp: SessionDescription) -> Deferred[SessionDescription]:
        """
        Offer the line's new SDP in a re-INVITE (L{reinvite}); fails at once, never
        raises, before the answer (500) or after the end (481).
        """
        if self.phase in (Phase.CALLING, Phase.EARLY):
            return fail(TrunkCallError(500, "the call is not answered yet"))
        if self.phase in (Phase.ENDING, Phase.DONE) or self.closing:
            return fail(TrunkCallError(481, ENDED, ended=True))
        if make_offer(sdp, self.trunk.settings.codecs, self.origin) is None:
            return fail(TrunkCallError(488, "no codec in common with the trunk"))
        return self.updates.add(sdp)

    def ready_for_update(self) -> bool:
        """No INVITE transaction of the peer's under way: its 2xx (first or re-INVITE) has its ACK."""
        return self.phase is Phase.CONFIRMED and self._reliable is None

    def _start_timer(self, delay: float, fire: Callable[[], None]) -> None:
        self._stop_timer()
        self._timer = self.trunk.clock.callLater(delay, fire)

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _finish(self) -> None:
        """The one way out: no channel, dialog or timer of this call is left."""
        self.phase = Phase.DONE
        self._stop_timer()
        if self._reliable is not None:
            self._reliable.stop()
            self._reliable = None
        if self.dialog is not None:
            self.trunk.dialogs.pop(self.dialog.id, None)
        self.trunk.channels.discard(self)
        if self.recorded_id is not None:
            self.trunk.recording.pop(self.recorded_id, None)
        self.updates.end()

    def _set_dialog(self, dialog: Dialog) -> None:
        self.dialog = dialog
        self.trunk.dialogs[dialog.id] = self

    def _send_bye(self, reason: str | None = None) -> None:
        assert self.dialog is not None
        self.phase = Phase.ENDING
        self.updates.end()
        headers: Headers = (("Reason", f'SIP;cause=200;text="{reason}"'),) if reason else ()
        bye = self.dialog.request(Method.BYE, self.trunk.agent.via(), headers=headers)
        self.trunk.agent.send(bye, self.dialog.destination(self.trunk.peer), Callback(
            lambda response: self._finish() if response.code >= 200 else None, self._finish,
        ))

    # -- requests from the peer in the dialog ----------------------------

    def bye_received(self, transaction: ServerTransaction) -> None:
        transaction.respond(response_to(transaction.request, 200))
        was = self.phase
        self._finish()
        if was is not Phase.ENDING:
            self._tell_ended(_reason_of(transaction.request, "far end hung up"))

    def reinvite_received(self, transaction: ServerTransaction) -> None:
        """
        The peer's re-INVITE (§14.2): 491 while an INVITE of ours is out
        (or our first 2xx waits for its ACK), 500 and Retry-After while
        one of the peer's is unfinished; else answered from the line's
        SDP, and new remote media told.
        """
        request = transaction.request
        assert self.dialog is not None
        if self.updates.in_flight or self.phase is Phase.ANSWERED:
            transaction.respond(response_to(request, 491))
            return
        if self.phase is not Phase.CONFIRMED or self._reliable is not None:
            retry = str(self.trunk.agent.rng.randrange(11))
            transaction.respond(response_to(request, 500, headers=(("Retry-After", retry),)))
            return
        base = self.line
        body = b""
        new_remote: SessionDescription | None = None
        if request.body:
            offer = parse_sdp(request.body)
            if offer is None:
                transaction.respond(response_to(request, 400, "Bad SDP"))
                return
            answer = make_answer(offer, base, self.trunk.settings.codecs, self.origin) if base else None
            if answer is None:
                transaction.respond(response_to(request, 488))
                return
            answer = self._versioned(answer)
            body = str(answer).encode()
            new_remote = offer
        elif self.local_sdp is not None:
            body = str(self.local_sdp).encode()
        self.dialog.refresh_target(request)
        response = response_to(
            request, 200, contact=(self.trunk.contact,), headers=(SDP_TYPE,) if body else (), body=body,
        )
        transaction.respond(response)
        self._reliable = Reliable2xx(self.trunk, response, transaction.destination, self._reinvite_not_acked)
        if new_remote is not None and _media_moved(self.remote_sdp, new_remote):
            self.remote_sdp = new_remote
            self._tell_media(new_remote)

    def _reinvite_not_acked(self) -> None:
        self._reliable = None
        self._send_bye("no ACK")
        self._tell_ended("no ACK to a re-INVITE")

    def ack_received(self, ack: Request) -> None:
        if self._reliable is not None:
            self._reliable.stop()
            self._reliable = None
        if ack.body:
            sdp = parse_sdp(ack.body)
            if sdp is not None and _media_moved(self.remote_sdp, sdp):
                self.remote_sdp = sdp
                self._tell_media(sdp)
        self.updates.next()

    def _versioned(self, sdp: SessionDescription) -> SessionDescription:
        """C{sdp} with this side's origin: the version raised only when the description changed (RFC 3264 §8)."""
        if self.local_sdp is not None and self.local_sdp.lines[2:] != sdp.lines[2:]:
            self.origin = self.origin.next()
            sdp = SessionDescription((sdp.lines[0], _origin_line(self.origin, sdp), *sdp.lines[2:]))
        elif self.local_sdp is not None:
            sdp = self.local_sdp
        self.local_sdp = sdp
        return sdp

    def _tell_ended(self, reason: str) -> None:
        raise NotImplementedError

    def _tell_media(self, sdp: SessionDescription) -> None:
        raise NotImplementedError


def _origin_line(origin: Origin, sdp: SessionDescription) -> str:
    fields = sdp.lines[1].split()
    return " ".join([fields[0], str(origin.session_id), str(origin.version), *fields[3:]])


def _media_moved(old: SessionDescription | None, new: SessionDescription) -> bool:
    if old is None:
        return True
    old_audio, new_audio = old.audio, new.audio
    return (
        old.rtp_address != new.rtp_address
        or (old_audio.codecs if old_audio else ()) != (new_audio.codecs if new_audio else ())
        or (old_audio.direction if old_audio else None) != (new_audio.direction if new_audio else None)
    )


def _reason_of(request: Request, default: str) -> str:
    reason = request.header("Reason")
    if reason and 'text="' in reason:
        return reason.split('text="', 1)[1].split('"', 1)[0] or default
    return default
