# -*- test-case-name: tests.test_sip_trunk -*-
"""
The SIP trunk: calls out to a SIP peer and calls in from it, as the
small API of L{ITrunk} (docs/SIP.md, "The trunk's API").

A trunk is one UDP user agent on its own port, the core above its
transactions (RFC 3261 §8, §12-15): it builds the INVITE of each call from
the line's SDP narrowed to the trunk's codecs, answers the peer's INVITEs
after checking them, keeps the dialogs, retransmits its 2xx until the
ACK (§13.3.1.4), ACKs the peer's 2xx (and BYEs a second one from a fork,
§13.2.2.4), CANCELs (§9), answers challenges with digest credentials
(§22.2), registers if asked (§10), and sends OPTIONS to learn whether the
peer is up.  It holds a channel per call from the first message to the
last, and refuses calls beyond C{max_channels}.

Every call ends by one path, C{_finish}: its channel, dialog and timers
go; the transactions it used run out on their own timers (D, K, M, ...).
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import replace
from enum import Enum
from typing import Any, Callable

from twisted.application.service import IService, Service
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from ..config import TrunkSettings
from ..interfaces import IIncomingCall, IOutgoingCall, ITrunk
from ..mgcp import SessionDescription
from ..trunk import RegistrationState, TrunkState, TrunkView
from .agent import SipProtocol, UserAgent
from .dialog import Dialog, DialogId
from .digest import Challenge, authorization, parse_challenge
from .headers import CSeq, NameAddress
from .message import Headers, Method, Request, Response, encode, response_to
from .sdp import Origin, acceptable, check_answer, make_answer, make_offer, parse_sdp
from .transaction import ClientTransaction, ServerTransaction, SipTimers, State
from .uri import SipUri, Uri

__all__ = ["SipTrunk", "OutgoingCall", "IncomingCall"]

Address = tuple[str, int]
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"
_SDP = ("Content-Type", "application/sdp")
_KNOWN = frozenset(m.value for m in Method)


class _Callback:
    """A client transaction's user made of two functions."""

    def __init__(self, on_response: Callable[[Response], None], on_timeout: Callable[[], None]) -> None:
        self._on_response = on_response
        self._on_timeout = on_timeout

    def response_received(self, transaction: ClientTransaction, response: Response) -> None:
        self._on_response(response)

    def timed_out(self, transaction: ClientTransaction) -> None:
        self._on_timeout()


def _ignore(*args: object) -> None:
    pass


class _Reliable2xx:
    """
    A 2xx to an INVITE (already sent once by its transaction) sent again
    at T1, 2T1, ... T2 until its ACK (§13.3.1.4); C{on_no_ack} after
    64*T1 without one.
    """

    def __init__(self, trunk: SipTrunk, response: Response, destination: Address,
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


class _Phase(Enum):
    CALLING = "calling"  # INVITE sent (or received), no dialog yet
    EARLY = "early"  # a provisional answer
    ANSWERED = "answered"  # incoming: 200 sent, waiting for the ACK
    CONFIRMED = "confirmed"
    ENDING = "ending"  # our BYE or CANCEL is out
    DONE = "done"


class _Call:
    """What outgoing and incoming calls share: a channel, a dialog, an origin, one way out."""

    log = Logger()
    direction = ""

    def __init__(self, trunk: SipTrunk) -> None:
        self.trunk = trunk
        self.phase = _Phase.CALLING
        self.dialog: Dialog | None = None
        self.origin = Origin(trunk.agent.rng.getrandbits(31), 1)
        self.local_sdp: SessionDescription | None = None  # what we last sent
        self.remote_sdp: SessionDescription | None = None
        self._timer: IDelayedCall | None = None
        self._reliable: _Reliable2xx | None = None
        trunk.channels.add(self)

    def _start_timer(self, delay: float, fire: Callable[[], None]) -> None:
        self._stop_timer()
        self._timer = self.trunk.clock.callLater(delay, fire)

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _finish(self) -> None:
        """The one way out: no channel, dialog or timer of this call is left."""
        self.phase = _Phase.DONE
        self._stop_timer()
        if self._reliable is not None:
            self._reliable.stop()
            self._reliable = None
        if self.dialog is not None:
            self.trunk.dialogs.pop(self.dialog.id, None)
        self.trunk.channels.discard(self)

    def _set_dialog(self, dialog: Dialog) -> None:
        self.dialog = dialog
        self.trunk.dialogs[dialog.id] = self

    def _send_bye(self, reason: str | None = None) -> None:
        assert self.dialog is not None
        self.phase = _Phase.ENDING
        headers: Headers = (("Reason", f'SIP;cause=200;text="{reason}"'),) if reason else ()
        bye = self.dialog.request(Method.BYE, self.trunk.agent.via(), headers=headers)
        self.trunk.agent.send(bye, self.dialog.destination(self.trunk.peer), _Callback(
            lambda response: self._finish() if response.code >= 200 else None, self._finish,
        ))

    # -- requests from the peer in the dialog ----------------------------

    def bye_received(self, transaction: ServerTransaction) -> None:
        transaction.respond(response_to(transaction.request, 200))
        was = self.phase
        self._finish()
        if was is not _Phase.ENDING:
            self._tell_ended(_reason_of(transaction.request, "far end hung up"))

    def reinvite_received(self, transaction: ServerTransaction) -> None:
        """A re-INVITE (§14.2): answer from the SDP we have; tell of new remote media."""
        request = transaction.request
        assert self.dialog is not None
        if self.phase is not _Phase.CONFIRMED or self._reliable is not None:
            transaction.respond(response_to(request, 491 if self.phase is _Phase.ANSWERED else 500))
            return
        base = self._base_sdp()
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
            request, 200, contact=(self.trunk.contact,), headers=(_SDP,) if body else (), body=body,
        )
        transaction.respond(response)
        self._reliable = _Reliable2xx(self.trunk, response, transaction.destination, self._reinvite_not_acked)
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

    def _versioned(self, sdp: SessionDescription) -> SessionDescription:
        """C{sdp} with this side's origin: the version raised only when the description changed (RFC 3264 §8)."""
        if self.local_sdp is not None and self.local_sdp.lines[2:] != sdp.lines[2:]:
            self.origin = self.origin.next()
            sdp = SessionDescription((sdp.lines[0], _origin_line(self.origin, sdp), *sdp.lines[2:]))
        elif self.local_sdp is not None:
            sdp = self.local_sdp
        self.local_sdp = sdp
        return sdp

    def _base_sdp(self) -> SessionDescription | None:
        raise NotImplementedError

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


@implementer(IOutgoingCall)
class OutgoingCall(_Call):
    """A call this trunk places: INVITE, then what the peer answers."""

    direction = "out"

    def __init__(self, trunk: SipTrunk, number: str, offer: SessionDescription, listener: Any,
                 caller: str | None) -> None:
        super().__init__(trunk)
        self.number = number
        self.line_sdp = offer
        self.listener = listener
        self.caller = caller
        self.invite: Request | None = None
        self.transaction: ClientTransaction | None = None
        self.cancelling = False  # cancel() was asked: no more notifications
        self.cancel_sent = False
        self.provisional = False
        self.early_sdp: SessionDescription | None = None
        self._acks: dict[str, bytes] = {}  # ACK bytes by remote tag
        self._tried_nonces: set[str] = set()
        self.counted = False

    def _base_sdp(self) -> SessionDescription | None:
        return self.line_sdp

    def _tell_ended(self, reason: str) -> None:
        if not self.cancelling:
            self.listener.ended(reason)

    def _tell_media(self, sdp: SessionDescription) -> None:
        if not self.cancelling:
            self.listener.media_changed(sdp)

    def start(self) -> None:
        settings = self.trunk.settings
        offer = make_offer(self.line_sdp, settings.codecs, self.origin)
        if offer is None:
            self._fail_later(488, "no codec in common with the trunk")
            return
        self.local_sdp = offer
        agent = self.trunk.agent
        user = self.caller or settings.caller_id or settings.username or "anonymous"
        to = NameAddress(self.trunk.uri(self.number))
        self.invite = Request(
            method=Method.INVITE,
            uri=to.uri,
            via=(agent.via(),),
            from_=NameAddress(self.trunk.uri(user, port=False)).with_tag(agent.new_tag()),
            to=to,
            call_id=agent.new_call_id(),
            cseq=CSeq(1, Method.INVITE),
            max_forwards=70,
            contact=(self.trunk.contact,),
            headers=(("Allow", ALLOW), _SDP),
            body=str(offer).encode(),
        )
        self._send_invite(self.invite)
        self._start_timer(settings.ring_timeout, self._no_answer)

    def _send_invite(self, invite: Request) -> None:
        self.invite = invite
        self.transaction = self.trunk.agent.send(invite, self.trunk.peer, self)

    def _outcome(self, code: int) -> None:
        """Count the call's final status, once."""
        if not self.counted:
            self.counted = True
            self.trunk.count("out", code)

    def _fail_later(self, code: int, reason: str) -> None:
        self._finish()
        self._outcome(code)
        self.trunk.clock.callLater(0, self.listener.failed, code, reason)

    def _fail(self, code: int, reason: str) -> None:
        self._finish()
        self._outcome(code)
        if not self.cancelling:
            self.listener.failed(code, reason)

    # -- the INVITE's responses (ClientUser) -----------------------------

    def response_received(self, transaction: ClientTransaction, response: Response) -> None:
        if transaction is not self.transaction:
            if 200 <= response.code < 300:  # a 2xx to an INVITE we replaced (digest): not ours any more
                self._ack_and_bye(transaction, response)
            return
        code = response.code
        if code < 200:
            self._provisional(response)
        elif code < 300:
            self._success(transaction, response)
        elif code in (401, 407) and self.phase is not _Phase.DONE and self._authenticate(response):
            return
        elif self.phase is not _Phase.DONE:
            self._fail(code, response.reason or str(code))

    def timed_out(self, transaction: ClientTransaction) -> None:
        if transaction is self.transaction and self.phase is not _Phase.DONE:
            self._fail(408, "no response from the peer")

    def _provisional(self, response: Response) -> None:
        if self.phase is _Phase.DONE:
            return
        self.provisional = True
        if self.cancelling:
            self._send_cancel()
            return
        if response.code == 100:
            return
        self.phase = _Phase.EARLY
        sdp = None
        if response.body and self.local_sdp is not None:
            sdp = parse_sdp(response.body)
            if sdp is not None and check_answer(self.local_sdp, sdp) is None:
                self.early_sdp = sdp
            else:
                sdp = None
        self.listener.progress(response.code, sdp)

    def _success(self, transaction: ClientTransaction, response: Response) -> None:
        tag = response.to.tag or ""
        if tag in self._acks:  # a repeat of the 2xx we ACKed: ACK it again
            self.trunk.agent.layer.write(self._acks[tag], self._ack_destination(response))
            return
        if self.phase in (_Phase.DONE, _Phase.CONFIRMED, _Phase.ENDING) or self.cancelling or not tag:
            # A second 2xx from a fork, or one that lost the race with CANCEL: ACK and BYE it.
            self._ack_and_bye(transaction, response)
            if self.cancelling and self.phase is not _Phase.DONE:
                self._outcome(response.code)
                self._finish()
            return
        assert self.invite is not None and self.local_sdp is not None
        dialog = Dialog.as_uac(self.invite, response)
        self._set_dialog(dialog)
        self._ack(dialog, response)
        self._stop_timer()
        answer = parse_sdp(response.body) if response.body else self.early_sdp
        problem = "no answer to the offer" if answer is None else check_answer(self.local_sdp, answer)
        if problem is not None:
            self._outcome(488)
            self._send_bye("bad answer")
            if not self.cancelling:
                self.listener.failed(488, problem)
            return
        assert answer is not None
        self.remote_sdp = answer
        self.phase = _Phase.CONFIRMED
        self._outcome(response.code)
        self.trunk.answered_out += 1
        self.listener.answered(answer)

    def _ack_destination(self, response: Response) -> Address:
        if self.dialog is not None and self.dialog.remote_tag == response.to.tag:
            return self.dialog.destination(self.trunk.peer)
        return self.trunk.peer

    def _ack(self, dialog: Dialog, response: Response) -> None:
        assert self.invite is not None
        data = encode(dialog.ack(self.invite, self.trunk.agent.via()))
        self._acks[dialog.remote_tag] = data
        self.trunk.agent.layer.write(data, dialog.destination(self.trunk.peer))

    def _ack_and_bye(self, transaction: ClientTransaction, response: Response) -> None:
        """§13.2.2.4: a 2xx we do not want is ACKed, then its dialog ended."""
        if not response.to.tag:
            return
        tag = response.to.tag
        if tag in self._acks:
            self.trunk.agent.layer.write(self._acks[tag], self.trunk.peer)
            return
        dialog = Dialog.as_uac(transaction.request, response)
        data = encode(dialog.ack(transaction.request, self.trunk.agent.via()))
        self._acks[tag] = data
        destination = dialog.destination(self.trunk.peer)
        self.trunk.agent.layer.write(data, destination)
        bye = dialog.request(Method.BYE, self.trunk.agent.via())
        self.trunk.agent.send(bye, destination, _Callback(_ignore, _ignore))

    def _authenticate(self, response: Response) -> bool:
        """Send the INVITE again with credentials (§22.2); False when we cannot or already did."""
        settings = self.trunk.settings
        if settings.username is None or settings.password is None or self.cancelling or self.invite is None:
            return False
        challenge = self.trunk.challenge_of(response)
        if challenge is None or (challenge.nonce in self._tried_nonces and not challenge.stale):
            return False
        self._tried_nonces.add(challenge.nonce)
        self._send_invite(self.trunk.with_credentials(self.invite, challenge))
        return True

    def _no_answer(self) -> None:
        self._timer = None
        if self.phase in (_Phase.CALLING, _Phase.EARLY) and not self.cancelling:
            self._cancel()
            self._outcome(408)
            self.listener.failed(408, "no answer")

    # -- what call control asks ------------------------------------------

    def cancel(self) -> None:
        if self.phase in (_Phase.CALLING, _Phase.EARLY) and not self.cancelling:
            self.cancelling = True
            self._cancel()
        elif self.phase is _Phase.CONFIRMED:
            self.hang_up()

    def hang_up(self) -> None:
        if self.phase is _Phase.CONFIRMED:
            self.cancelling = True
            self._send_bye()
        elif self.phase in (_Phase.CALLING, _Phase.EARLY):
            self.cancel()

    def _cancel(self) -> None:
        self.cancelling = True
        if self.provisional:
            self._send_cancel()
        # else: §9.1, the CANCEL waits for a provisional response; Timer B ends a silent INVITE.

    def _send_cancel(self) -> None:
        if self.cancel_sent or self.invite is None or self.transaction is None:
            return
        self.cancel_sent = True
        invite = self.invite
        cancel = Request(
            method=Method.CANCEL, uri=invite.uri, via=invite.via[:1], from_=invite.from_, to=invite.to,
            call_id=invite.call_id, cseq=CSeq(invite.cseq.seq, Method.CANCEL), max_forwards=70,
            route=invite.route,
        )
        self.trunk.agent.send(cancel, self.trunk.peer, _Callback(_ignore, _ignore))
        # §9.1: no final response 64*T1 after the CANCEL: the INVITE is given up.
        self._start_timer(self.trunk.timers.timeout, self._give_up)

    def _give_up(self) -> None:
        self._timer = None
        if self.phase is not _Phase.DONE and self.dialog is None:
            if self.transaction is not None and self.transaction.state is State.PROCEEDING:
                self.transaction.terminate()
            self._outcome(487)
            self._finish()


@implementer(IIncomingCall)
class IncomingCall(_Call):
    """A call the peer places on this trunk, handed to the trunk's C{incoming} handler."""

    direction = "in"

    def __init__(self, trunk: SipTrunk, transaction: ServerTransaction, number: str, caller: str | None,
                 offer: SessionDescription) -> None:
        super().__init__(trunk)
        self.transaction = transaction
        self.number = number
        self.caller = caller
        self.offer_sdp = offer
        self.remote_sdp = offer
        self.listener: Any = _Unheard(self)
        self.tag = trunk.agent.new_tag()
        self.hang_up_after_ack = False
        self.answer_base: SessionDescription | None = None  # the line's SDP once answered
        self._start_timer(trunk.settings.ring_timeout, self._no_answer)

    def _base_sdp(self) -> SessionDescription | None:
        return self.answer_base

    def _finish(self) -> None:
        self.trunk._pending.pop(self.transaction.key, None)
        super()._finish()

    def _tell_ended(self, reason: str) -> None:
        self.listener.ended(reason)

    def _tell_media(self, sdp: SessionDescription) -> None:
        self.listener.media_changed(sdp)

    def _respond(self, code: int, reason: str | None = None, **kwargs: Any) -> None:
        self.transaction.respond(response_to(self.transaction.request, code, reason, to_tag=self.tag, **kwargs))

    # -- what call control asks ------------------------------------------

    def ringing(self) -> None:
        if self.phase is _Phase.CALLING:
            self.phase = _Phase.EARLY
            self._respond(180, contact=(self.trunk.contact,))

    def answer(self, sdp: SessionDescription) -> None:
        if self.phase not in (_Phase.CALLING, _Phase.EARLY):
            self.log.warn("answer() on a call that is {phase}", phase=self.phase.value)
            return
        answer = make_answer(self.offer_sdp, sdp, self.trunk.settings.codecs, self.origin)
        if answer is None:
            self._reject(488, "no codec in common")
            self.listener.ended("no codec in common with the caller")
            return
        self.answer_base = sdp
        self.local_sdp = answer
        self.trunk._pending.pop(self.transaction.key, None)
        request = self.transaction.request
        response = response_to(
            request, 200, to_tag=self.tag, contact=(self.trunk.contact,), headers=(("Allow", ALLOW), _SDP),
            body=str(answer).encode(),
        )
        self.transaction.respond(response)
        self._stop_timer()
        self._set_dialog(Dialog.as_uas(request, self.tag))
        self.phase = _Phase.ANSWERED
        self.trunk.count("in", 200)
        self.trunk.answered_in += 1
        self._reliable = _Reliable2xx(self.trunk, response, self.transaction.destination, self._not_acked)

    def reject(self, code: int) -> None:
        if not 300 <= code <= 699:
            raise ValueError(f"a call is rejected with a status from 300 to 699, not {code}")
        if self.phase in (_Phase.CALLING, _Phase.EARLY):
            self._reject(code)

    def hang_up(self) -> None:
        if self.phase in (_Phase.CALLING, _Phase.EARLY):
            self._reject(480)
        elif self.phase is _Phase.ANSWERED:
            self.hang_up_after_ack = True  # §15: no BYE before the ACK (or its timeout)
        elif self.phase is _Phase.CONFIRMED:
            self._send_bye()

    def _reject(self, code: int, reason: str | None = None) -> None:
        self._respond(code, reason)
        self.trunk.count("in", code)
        self._finish()

    # -- what the peer does -----------------------------------------------

    def cancel_received(self) -> None:
        if self.phase in (_Phase.CALLING, _Phase.EARLY):
            self._reject(487)
            self.listener.cancelled()

    def ack_received(self, ack: Request) -> None:
        super().ack_received(ack)
        if self.phase is _Phase.ANSWERED:
            self.phase = _Phase.CONFIRMED
            if self.hang_up_after_ack:
                self._send_bye()

    def _not_acked(self) -> None:
        self._reliable = None
        told = self.hang_up_after_ack
        self.phase = _Phase.CONFIRMED
        self._send_bye("no ACK")
        if not told:
            self.listener.ended("no ACK from the caller")

    def _no_answer(self) -> None:
        self._timer = None
        if self.phase in (_Phase.CALLING, _Phase.EARLY):
            self._reject(480, "No Answer")
            self.listener.ended("no answer")


class _Unheard:
    """The listener of an incoming call until call control sets its own: logs what it is told."""

    log = Logger()

    def __init__(self, call: IncomingCall) -> None:
        self.call = call

    def cancelled(self) -> None:
        self.log.info("incoming call to {number} cancelled (no listener)", number=self.call.number)

    def ended(self, reason: str) -> None:
        self.log.info("incoming call to {number} ended: {reason} (no listener)", number=self.call.number,
                      reason=reason)

    def media_changed(self, sdp: SessionDescription) -> None:
        pass


class _Keepalive:
    """OPTIONS to the peer every C{interval}: a response means up, a timeout down."""

    def __init__(self, trunk: SipTrunk, interval: float) -> None:
        self.trunk = trunk
        self.interval = interval
        self.call: IDelayedCall | None = None
        self.stopped = False

    def start(self) -> None:
        self.stopped = False
        self._ping()

    def _ping(self) -> None:
        self.call = None
        trunk = self.trunk
        request = trunk.out_of_dialog(Method.OPTIONS, trunk.uri(None), trunk.agent.new_call_id(), 1)
        trunk.agent.send(request, trunk.peer, _Callback(self._answered, self._timed_out))

    def _answered(self, response: Response) -> None:
        if response.code >= 200:
            self.trunk.set_state(TrunkState.UP)
            self._next()

    def _timed_out(self) -> None:
        self.trunk.set_state(TrunkState.DOWN)
        self._next()

    def _next(self) -> None:
        if not self.stopped:
            self.call = self.trunk.clock.callLater(self.interval, self._ping)

    def stop(self) -> None:
        self.stopped = True
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None


class _Registration:
    """
    REGISTER with the registrar and keep it fresh (§10.2): the same
    Call-ID and a rising CSeq; credentials when challenged; the refresh
    before the granted expiry; a retry after a failure.
    """

    RETRY = 60.0

    def __init__(self, trunk: SipTrunk, registrar: Address, expiry: int) -> None:
        self.trunk = trunk
        self.registrar = registrar
        self.expiry = expiry
        self.state = RegistrationState.NONE
        self.call_id = trunk.agent.new_call_id()
        self.tag = trunk.agent.new_tag()
        self.seq = 0
        self.call: IDelayedCall | None = None
        self.tried: set[str] = set()
        self.granted: int | None = None

    def start(self) -> None:
        self.register(self.expiry)

    def register(self, expires: int, challenge: Challenge | None = None) -> None:
        self.call = None
        trunk = self.trunk
        self.seq += 1
        aor = NameAddress(trunk.uri(trunk.settings.username, port=False))
        request = Request(
            method=Method.REGISTER, uri=SipUri(host=trunk.domain), via=(trunk.agent.via(),),
            from_=aor.with_tag(self.tag), to=aor, call_id=self.call_id, cseq=CSeq(self.seq, Method.REGISTER),
            max_forwards=70, contact=(trunk.contact,), headers=(("Expires", str(expires)),),
        )
        if challenge is not None:
            request = trunk.with_credentials(request, challenge, bump=False)
        if expires:
            self.state = RegistrationState.REGISTERING
        trunk.agent.send(request, self.registrar, _Callback(
            lambda response: self._answered(response, expires), self._failed,
        ))

    def _answered(self, response: Response, expires: int) -> None:
        if response.code < 200 or expires == 0:
            return
        if 200 <= response.code < 300:
            self.tried.clear()
            self.granted = self._granted(response, expires)
            self.state = RegistrationState.REGISTERED
            self._schedule(self.granted - min(self.granted / 2, 60))
        elif response.code in (401, 407):
            challenge = self.trunk.challenge_of(response)
            if challenge is not None and (challenge.nonce not in self.tried or challenge.stale) \
                    and self.trunk.settings.password is not None:
                self.tried.add(challenge.nonce)
                self.register(expires, challenge)
            else:
                self._failed()
        elif response.code == 423 and (response.header("Min-Expires") or "").isdigit():
            self.register(int(response.header("Min-Expires") or "0"))
        else:
            self._failed()

    def _granted(self, response: Response, asked: int) -> int:
        mine = self.trunk.contact.uri
        for contact in response.contact:
            if contact.uri == mine and (contact.param("expires") or "").isdigit():
                return max(1, int(contact.param("expires") or asked))
        header = response.header("Expires") or ""
        return max(1, int(header)) if header.isdigit() else asked

    def _failed(self) -> None:
        self.state = RegistrationState.FAILED
        self._schedule(self.RETRY)

    def _schedule(self, delay: float) -> None:
        self.stop_timer()
        self.call = self.trunk.clock.callLater(delay, self.register, self.expiry)

    def stop_timer(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None

    def stop(self) -> None:
        self.stop_timer()
        if self.state is RegistrationState.REGISTERED:
            self.register(0)  # sent once; the trunk is closing
        self.state = RegistrationState.NONE


@implementer(ITrunk, IService)
class SipTrunk(Service):
    """
    A SIP trunk (C{[trunk:NAME] kind = sip}).  C{reactor} provides
    IReactorUDP and IReactorTime; C{incoming(call)} is given each call
    that comes in; C{rng} makes tags and branches (a seeded one in tests).
    """

    log = Logger()

    def __init__(self, settings: TrunkSettings, reactor: Any, incoming: Callable[[IncomingCall], None], *,
                 rng: random.Random | None = None, timers: SipTimers = SipTimers()) -> None:
        self.settings = settings
        self.name = settings.name
        self.reactor = reactor
        self.clock = reactor
        self.incoming = incoming
        self.timers = timers
        self.peer: Address = (settings.address, settings.port)
        self.domain = settings.domain or settings.address
        self.allowed = settings.allowed or (ipaddress.ip_network(settings.address),)
        self.agent = UserAgent(reactor, rng or random.SystemRandom(), host=settings.local_address,
                               port=settings.local_port, timers=timers, core=self)
        self.channels: set[_Call] = set()
        self.dialogs: dict[DialogId, _Call] = {}
        self.state = TrunkState.UNKNOWN
        self.port: Any = None
        self.statuses: Counter[str] = Counter()
        self.calls_out = self.calls_in = self.answered_out = self.answered_in = self.refused_full = 0
        self._pending: dict[Any, IncomingCall] = {}  # INVITE server transaction key -> call, until answered
        self.keepalive = _Keepalive(self, settings.keepalive_interval) if settings.keepalive_interval else None
        self.registration = (
            _Registration(self, settings.registrar, settings.register_expiry) if settings.registrar else None
        )

    # -- service ---------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()  # type: ignore[no-untyped-call]
        self.port = self.reactor.listenUDP(
            self.settings.local_port, SipProtocol(self.agent), interface=self.settings.local_address
        )
        self.agent.port = self.port.getHost().port
        self.log.info("SIP trunk {name} on {host}:{port}, peer {peer}", name=self.name, host=self.agent.host,
                      port=self.agent.port, peer=self.peer)
        if self.keepalive is not None:
            self.keepalive.start()
        if self.registration is not None:
            self.registration.start()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]
        if self.keepalive is not None:
            self.keepalive.stop()
        if self.registration is not None:
            self.registration.stop()
        for call in list(self.channels):
            if isinstance(call, IncomingCall) and call.phase in (_Phase.CALLING, _Phase.EARLY):
                call._reject(503)
            elif isinstance(call, OutgoingCall) and call.phase in (_Phase.CALLING, _Phase.EARLY):
                call._cancel()
            elif call.phase is _Phase.CONFIRMED and call.dialog is not None:
                call._send_bye("switch stopping")
            call._finish()
        self.agent.layer.close()
        self._pending.clear()
        if self.port is not None:
            self.port.stopListening()
            self.port = None

    # -- helpers the calls use ---------------------------------------------

    @property
    def contact(self) -> NameAddress:
        return self.agent.contact(self.settings.username)

    def uri(self, user: str | None, *, port: bool = True) -> SipUri:
        """A URI at the peer's domain (with the peer's port when the domain is its address)."""
        with_port = port and self.domain == self.settings.address and self.settings.port != 5060
        return SipUri(host=self.domain, user=user, port=self.settings.port if with_port else None)

    def out_of_dialog(self, method: str, uri: Uri, call_id: str, seq: int) -> Request:
        user = self.settings.caller_id or self.settings.username or "anonymous"
        return Request(
            method=method, uri=uri, via=(self.agent.via(),),
            from_=NameAddress(self.uri(user, port=False)).with_tag(self.agent.new_tag()),
            to=NameAddress(uri), call_id=call_id, cseq=CSeq(seq, method), max_forwards=70,
            contact=(self.contact,),
        )

    def challenge_of(self, response: Response) -> Challenge | None:
        """The first challenge of a 401/407 this client can answer (RFC 8760 §2.4)."""
        name = "WWW-Authenticate" if response.code == 401 else "Proxy-Authenticate"
        for header, value in response.headers:
            if header == name:
                challenge = parse_challenge(value, proxy=response.code == 407)
                if challenge is not None:
                    return challenge
        return None

    def with_credentials(self, request: Request, challenge: Challenge, *, bump: bool = True) -> Request:
        """C{request} again, answering C{challenge}: a new branch, the next CSeq (§22.2)."""
        settings = self.settings
        assert settings.username is not None and settings.password is not None
        name = "Proxy-Authorization" if challenge.proxy else "Authorization"
        value = authorization(
            challenge, method=request.method, uri=str(request.uri), username=settings.username,
            password=settings.password, cnonce=self.agent.token(64), body=request.body,
        )
        headers = tuple((n, v) for n, v in request.headers if n != name) + ((name, value),)
        cseq = CSeq(request.cseq.seq + 1, request.method) if bump else request.cseq
        return replace(request, via=(self.agent.via(),), cseq=cseq, headers=headers)

    def count(self, direction: str, code: int) -> None:
        self.statuses[f"{direction} {code}"] += 1

    def set_state(self, state: TrunkState) -> None:
        if state is not self.state:
            self.log.info("trunk {name} is {state}", name=self.name, state=state.value)
            self.state = state

    # -- ITrunk ----------------------------------------------------------

    def call(self, number: str, offer_sdp: SessionDescription, listener: Any,
             caller: str | None = None) -> OutgoingCall:
        self.calls_out += 1
        full = len(self.channels) >= self.settings.max_channels
        call = OutgoingCall(self, self.settings.rewrite_out(number), offer_sdp, listener, caller)
        if self.port is None:
            call._fail_later(503, "the trunk is not running")
        elif self.state is TrunkState.DOWN:
            call._fail_later(503, "the trunk is down")
        elif full:
            self.refused_full += 1
            call._fail_later(503, "every channel of the trunk is busy")
        else:
            call.start()
        return call

    def view(self) -> TrunkView:
        counters = self.agent.counters()
        return TrunkView(
            name=self.settings.name,
            kind=self.settings.kind,
            peer=f"{self.peer[0]}:{self.peer[1]}",
            state=self.state,
            registration=self.registration.state if self.registration else RegistrationState.NONE,
            channels_in_use=len(self.channels),
            max_channels=self.settings.max_channels,
            calls_out=self.calls_out,
            calls_in=self.calls_in,
            answered_out=self.answered_out,
            answered_in=self.answered_in,
            refused_full=self.refused_full,
            statuses=dict(self.statuses),
            messages={
                "received": counters.received, "sent": counters.sent, "malformed": counters.malformed,
                "stray_responses": counters.stray_responses, "retransmissions": counters.retransmissions,
                "transactions": len(self.agent.layer.clients) + len(self.agent.layer.servers),
                "dialogs": len(self.dialogs),
            },
        )

    # -- the user agent's core -------------------------------------------

    def request_received(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        if request.max_forwards == 0 and request.method != Method.OPTIONS:
            transaction.respond(response_to(request, 483))
            return
        if request.method not in (Method.CANCEL,):
            required = request.header_values("Require")
            if required:
                transaction.respond(response_to(request, 420, headers=(("Unsupported", ", ".join(required)),)))
                return
        if request.to.tag is not None:
            self._in_dialog(transaction)
        elif request.method == Method.INVITE:
            self._invite(transaction)
        elif request.method == Method.CANCEL:
            self._cancel(transaction)
        elif request.method == Method.OPTIONS:
            transaction.respond(self._options_answer(request))
        elif request.method == Method.BYE:
            transaction.respond(response_to(request, 481))
        else:
            self._not_allowed(transaction)

    def _not_allowed(self, transaction: ServerTransaction) -> None:
        """405 for a method this trunk knows but does not take here, 501 for one it does not know."""
        code = 405 if transaction.request.method in _KNOWN else 501
        transaction.respond(response_to(transaction.request, code, headers=(("Allow", ALLOW),)))

    def _options_answer(self, request: Request) -> Response:
        return response_to(request, 200, to_tag=self.agent.new_tag(), headers=(
            ("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", ""),
        ))

    def _in_dialog(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        call = self.dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))
        if call is None or call.dialog is None:
            transaction.respond(response_to(request, 481))
            return
        if not call.dialog.accept_remote_seq(request):
            transaction.respond(response_to(request, 500, "CSeq out of order"))
            return
        if request.method == Method.BYE:
            call.bye_received(transaction)
        elif request.method == Method.INVITE:
            call.reinvite_received(transaction)
        elif request.method == Method.OPTIONS:
            transaction.respond(self._options_answer(request))
        else:
            self._not_allowed(transaction)

    def _invite(self, transaction: ServerTransaction) -> None:
        request = transaction.request
        source = ipaddress.ip_address(transaction.source[0])
        if not any(source in network for network in self.allowed):
            self._refuse(transaction, 403)
            return
        if not isinstance(request.uri, SipUri):
            self._refuse(transaction, 416)
            return
        if not request.body:
            self._refuse(transaction, 488, "An offer in the INVITE is required")
            return
        if request.content_type != "application/sdp":
            self._refuse(transaction, 415, headers=(("Accept", "application/sdp"),))
            return
        offer = parse_sdp(request.body)
        if offer is None or offer.audio is None:
            self._refuse(transaction, 400, "Bad SDP")
            return
        if not acceptable(offer, self.settings.codecs):
            self._refuse(transaction, 488)
            return
        dialled = request.uri.user or request.to.user
        if not dialled:
            self._refuse(transaction, 404)
            return
        if len(self.channels) >= self.settings.max_channels:
            self.refused_full += 1
            self._refuse(transaction, 503, headers=(("Retry-After", "10"),))
            return
        self.calls_in += 1
        call = IncomingCall(self, transaction, self.settings.rewrite_in(dialled), request.from_.user, offer)
        self._pending[transaction.key] = call
        try:
            self.incoming(call)
        except Exception:
            self.log.failure("the incoming-call handler of trunk {name} failed", name=self.name)
            if call.phase in (_Phase.CALLING, _Phase.EARLY):
                call._reject(500)

    def _refuse(self, transaction: ServerTransaction, code: int, reason: str | None = None,
                headers: Headers = ()) -> None:
        transaction.respond(response_to(transaction.request, code, reason, to_tag=self.agent.new_tag(),
                                        headers=headers))
        self.count("in", code)

    def _cancel(self, transaction: ServerTransaction) -> None:
        invite = self.agent.layer.invite_for(transaction.request)
        if invite is None:
            transaction.respond(response_to(transaction.request, 481))
            return
        transaction.respond(response_to(transaction.request, 200))
        call = self._pending.pop(invite.key, None)
        if call is not None:
            call.cancel_received()

    def ack_received(self, ack: Request, source: Address) -> None:
        call = self.dialogs.get((ack.call_id, ack.to.tag or "", ack.from_.tag or ""))
        if call is not None:
            call.ack_received(ack)

    def stray_response(self, response: Response) -> None:
        self.log.debug("stray {code} for {method} dropped", code=response.code, method=response.cseq.method)

