# -*- test-case-name: tests.test_sip_trunk -*-
"""
A call the peer places on the trunk (§13.3), handed to the trunk's
C{incoming} handler: ringing, the answer made from the line's SDP,
rejection, CANCEL, and no BYE before the ACK (§15).
"""

from __future__ import annotations

from typing import Any, Hashable, Protocol

from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import IIncomingCall
from ..mgcp import SessionDescription
from .agent import ALLOW, SDP_TYPE
from .calls import SipCall, Phase, Reliable2xx, TrunkContext
from .dialog import Dialog
from .message import Request, encode, response_to
from .sdp import make_answer
from .transaction import ServerTransaction


class IncomingContext(TrunkContext, Protocol):
    """What an incoming call needs of its trunk besides what every call does: the INVITEs not yet answered."""

    pending: dict[Hashable, IncomingCall]  # INVITE server transaction key -> call, until answered


@implementer(IIncomingCall)
class IncomingCall(SipCall):
    """A call the peer places on this trunk, handed to the trunk's C{incoming} handler."""

    direction = "in"
    trunk: IncomingContext

    def __init__(self, trunk: IncomingContext, transaction: ServerTransaction, number: str, caller: str | None,
                 offer: SessionDescription) -> None:
        super().__init__(trunk)
        self.transaction = transaction
        self.number = number
        self.caller = caller
        self.offer_sdp = offer
        self.remote_sdp = offer
        self.listener: Any = Unheard(self)
        self.tag = trunk.agent.new_tag()
        self.hang_up_after_ack = False
        self._start_timer(trunk.settings.ring_timeout, self._no_answer)
        request = transaction.request
        trunk.record(self, request.call_id)
        if self.messages is not None:  # the INVITE came before the call was made
            self.messages.append((trunk.clock.seconds(), "in", encode(request), transaction.source))

    @property
    def closing(self) -> bool:
        return self.hang_up_after_ack

    def _finish(self) -> None:
        self.trunk.pending.pop(self.transaction.key, None)
        super()._finish()

    def _tell_ended(self, reason: str) -> None:
        self.listener.ended(reason)

    def _tell_media(self, sdp: SessionDescription) -> None:
        self.listener.media_changed(sdp)

    def _respond(self, code: int, reason: str | None = None, **kwargs: Any) -> None:
        self.transaction.respond(response_to(self.transaction.request, code, reason, to_tag=self.tag, **kwargs))

    # -- what call control asks ------------------------------------------

    def ringing(self) -> None:
        if self.phase is Phase.CALLING:
            self.phase = Phase.EARLY
            self._respond(180, contact=(self.trunk.contact,))

    def answer(self, sdp: SessionDescription) -> None:
        if self.phase not in (Phase.CALLING, Phase.EARLY):
            self.log.warn("answer() on a call that is {phase}", phase=self.phase.value)
            return
        answer = make_answer(self.offer_sdp, sdp, self.trunk.settings.codecs, self.origin)
        if answer is None:
            self._reject(488, "no codec in common")
            self.listener.ended("no codec in common with the caller")
            return
        self.line = sdp
        self.local_sdp = answer
        self.trunk.pending.pop(self.transaction.key, None)
        request = self.transaction.request
        response = response_to(
            request, 200, to_tag=self.tag, contact=(self.trunk.contact,), headers=(("Allow", ALLOW), SDP_TYPE),
            body=str(answer).encode(),
        )
        self.transaction.respond(response)
        self._stop_timer()
        self._set_dialog(Dialog.as_uas(request, self.tag))
        self.phase = Phase.ANSWERED
        self.trunk.count("in", 200)
        self.trunk.answered_in += 1
        self._reliable = Reliable2xx(self.trunk, response, self.transaction.destination, self._not_acked)

    def reject(self, code: int) -> None:
        if not 300 <= code <= 699:
            raise ValueError(f"a call is rejected with a status from 300 to 699, not {code}")
        if self.phase in (Phase.CALLING, Phase.EARLY):
            self._reject(code)

    def hang_up(self) -> None:
        if self.phase in (Phase.CALLING, Phase.EARLY):
            self._reject(480)
        elif self.phase is Phase.ANSWERED:
            self.hang_up_after_ack = True  # §15: no BYE before the ACK (or its timeout)
            self.updates.end()
        elif self.phase is Phase.CONFIRMED:
            self._send_bye()

    def _reject(self, code: int, reason: str | None = None) -> None:
        self._respond(code, reason)
        self.trunk.count("in", code)
        self._finish()

    # -- what the peer does -----------------------------------------------

    def cancel_received(self) -> None:
        if self.phase in (Phase.CALLING, Phase.EARLY):
            self._reject(487)
            self.listener.cancelled()

    def ack_received(self, ack: Request) -> None:
        super().ack_received(ack)
        if self.phase is Phase.ANSWERED:
            self.phase = Phase.CONFIRMED
            if self.hang_up_after_ack:
                self._send_bye()
            else:
                self.updates.next()  # an update asked before the ACK goes now

    def _not_acked(self) -> None:
        self._reliable = None
        told = self.hang_up_after_ack
        self.phase = Phase.CONFIRMED
        self._send_bye("no ACK")
        if not told:
            self.listener.ended("no ACK from the caller")

    def _no_answer(self) -> None:
        self._timer = None
        if self.phase in (Phase.CALLING, Phase.EARLY):
            self._reject(480, "No Answer")
            self.listener.ended("no answer")


class Unheard:
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
