# -*- test-case-name: tests.test_sip_trunk -*-
"""
A call the trunk places (§13.2): INVITE, what the peer answers, the ACK,
CANCEL (§9.1), credentials when challenged (§22.2), and a 2xx nobody
wants ACKed and ended (§13.2.2.4).
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from ..interfaces import IOutgoingCall
from ..mgcp import SessionDescription
from .agent import ALLOW, SDP_TYPE
from .calls import Address, SipCall, Callback, ignore, Phase, TrunkContext
from .dialog import Dialog
from .headers import CSeq, NameAddress
from .message import Method, Request, Response, encode
from .sdp import check_answer, make_offer, parse_sdp
from .transaction import ClientTransaction, State


@implementer(IOutgoingCall)
class OutgoingCall(SipCall):
    """A call this trunk places: INVITE, then what the peer answers."""

    direction = "out"
    owns_call_id = True

    def __init__(self, trunk: TrunkContext, number: str, offer: SessionDescription, listener: Any,
                 caller: str | None) -> None:
        super().__init__(trunk)
        self.number = number
        self.line = offer
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

    @property
    def closing(self) -> bool:
        return self.cancelling

    def _tell_ended(self, reason: str) -> None:
        if not self.cancelling:
            self.listener.ended(reason)

    def _tell_media(self, sdp: SessionDescription) -> None:
        if not self.cancelling:
            self.listener.media_changed(sdp)

    def start(self) -> None:
        settings = self.trunk.settings
        assert self.line is not None
        offer = make_offer(self.line, settings.codecs, self.origin)
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
            headers=(("Allow", ALLOW), SDP_TYPE),
            body=str(offer).encode(),
        )
        self.trunk.record(self, self.invite.call_id)
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
        elif code in (401, 407) and self.phase is not Phase.DONE and self._authenticate(response):
            return
        elif self.phase is not Phase.DONE:
            self._fail(code, response.reason or str(code))

    def timed_out(self, transaction: ClientTransaction) -> None:
        if transaction is self.transaction and self.phase is not Phase.DONE:
            self._fail(408, "no response from the peer")

    def _provisional(self, response: Response) -> None:
        if self.phase is Phase.DONE:
            return
        self.provisional = True
        if self.cancelling:
            self._send_cancel()
            return
        if response.code == 100:
            return
        self.phase = Phase.EARLY
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
        if self.phase in (Phase.DONE, Phase.CONFIRMED, Phase.ENDING) or self.cancelling or not tag:
            # A second 2xx from a fork, or one that lost the race with CANCEL: ACK and BYE it.
            self._ack_and_bye(transaction, response)
            if self.cancelling and self.phase is not Phase.DONE:
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
        self.phase = Phase.CONFIRMED
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
        self.trunk.agent.send(bye, destination, Callback(ignore, ignore))

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
        if self.phase in (Phase.CALLING, Phase.EARLY) and not self.cancelling:
            self._cancel()
            self._outcome(408)
            self.listener.failed(408, "no answer")

    # -- what call control asks ------------------------------------------

    def cancel(self) -> None:
        if self.phase in (Phase.CALLING, Phase.EARLY) and not self.cancelling:
            self.cancelling = True
            self._cancel()
        elif self.phase is Phase.CONFIRMED:
            self.hang_up()

    def hang_up(self) -> None:
        if self.phase is Phase.CONFIRMED:
            self.cancelling = True
            self._send_bye()
        elif self.phase in (Phase.CALLING, Phase.EARLY):
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
        self.trunk.agent.send(cancel, self.trunk.peer, Callback(ignore, ignore))
        # §9.1: no final response 64*T1 after the CANCEL: the INVITE is given up.
        self._start_timer(self.trunk.timers.timeout, self._give_up)

    def _give_up(self) -> None:
        self._timer = None
        if self.phase is not Phase.DONE and self.dialog is None:
            if self.transaction is not None and self.transaction.state is State.PROCEEDING:
                self.transaction.terminate()
            self._outcome(487)
            self._finish()
