# -*- test-case-name: tests.test_sip_reinvite -*-
"""
Our re-INVITEs (RFC 3261 §14.1): how call control changes the media of
an answered call (hold, a line moved by a transfer), as C{update(sdp)}
on either kind of trunk call.

Each call keeps its updates in order, one INVITE transaction at a time
in either direction (§14.1, §14.2): an update waits while the peer's
re-INVITE (or the first INVITE's 2xx) waits for its ACK, and the peer's
re-INVITE gets 491 while one of ours is out.  A 491 to ours is tried
again after §14.1's random pause (2.1 to 4 s when this side made the
Call-ID, up to 2 s otherwise), a few times.  A challenge is answered as
the first INVITE's was.  A 408, a 481 or no response at all ends the
dialog (§12.2.1.2); another refusal leaves the session as it was, o=
version included (§14.1: as if no re-INVITE had been issued).  A 2xx is
ACKed whatever became of the update, its repeats too (§13.2.2.4).
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..config import TrunkSettings
from ..mgcp import SessionDescription
from ..trunk import TrunkCallError
from .agent import ALLOW, SDP_TYPE, Address, UserAgent
from .dialog import Dialog
from .digest import Challenge
from .headers import CSeq, NameAddress
from .message import Method, Request, Response, encode
from .sdp import Origin, check_answer, make_offer, parse_sdp
from .transaction import ClientTransaction

__all__ = ["Updates", "UpdatingCall", "MAX_GLARE_RETRIES"]

MAX_GLARE_RETRIES = 3  # 491s answered by trying again; the next one fails the update
ENDED = "the call has ended"


class UpdateTrunk(Protocol):
    """What updates need of their call's trunk."""

    @property
    def settings(self) -> TrunkSettings: ...

    @property
    def agent(self) -> UserAgent: ...

    @property
    def clock(self) -> IReactorTime: ...

    @property
    def peer(self) -> Address: ...

    @property
    def contact(self) -> NameAddress: ...

    def challenge_of(self, response: Response) -> Challenge | None: ...

    def with_credentials(self, request: Request, challenge: Challenge, *, bump: bool = True) -> Request: ...


class UpdatingCall(Protocol):
    """What updates need of their call (L{calls.SipCall} provides it): its session, its dialog, its way out."""

    origin: Origin
    line: SessionDescription | None
    local_sdp: SessionDescription | None
    remote_sdp: SessionDescription | None

    @property
    def trunk(self) -> UpdateTrunk: ...

    @property
    def dialog(self) -> Dialog | None: ...

    @property
    def owns_call_id(self) -> bool: ...

    def ready_for_update(self) -> bool: ...

    def _versioned(self, sdp: SessionDescription) -> SessionDescription: ...

    def _send_bye(self, reason: str | None = None) -> None: ...

    def _tell_ended(self, reason: str) -> None: ...

    def _finish(self) -> None: ...


class Update:
    """One C{update(sdp)}: its re-INVITE (again after a challenge or a 491) and the Deferred it owes."""

    def __init__(self, updates: Updates, line: SessionDescription) -> None:
        self.updates = updates
        self.call = updates.call
        self.line = line
        self.deferred: Deferred[SessionDescription] = Deferred()
        self.done = False  # the Deferred has fired: later responses are only ACKed
        self.glare = 0  # 491s so far
        self.nonces: set[str] = set()
        self.request: Request | None = None
        self.transaction: ClientTransaction | None = None
        self.offer: SessionDescription | None = None
        self.before: tuple[Origin, SessionDescription | None] | None = None
        self._acks: dict[str, bytes] = {}  # ACK bytes by the 2xx's remote tag

    def send(self) -> None:
        """The re-INVITE offering the line's SDP, narrowed as the first offer was, the o= version raised if it changed."""
        call = self.call
        trunk = call.trunk
        assert call.dialog is not None
        self.before = (call.origin, call.local_sdp)
        offer = make_offer(self.line, trunk.settings.codecs, call.origin, previous=call.local_sdp)
        assert offer is not None  # checked when the update was asked
        self.offer = call._versioned(offer)
        request = call.dialog.request(Method.INVITE, trunk.agent.via(), contact=(trunk.contact,),
                                      headers=(("Allow", ALLOW), SDP_TYPE), body=str(self.offer).encode())
        self._send(request)

    def _send(self, request: Request) -> None:
        assert self.call.dialog is not None
        self.request = request
        self.transaction = self.call.trunk.agent.send(request, self.call.dialog.destination(self.call.trunk.peer), self)

    def restore(self) -> None:
        """§14.1: a refused re-INVITE leaves the session as it was, our SDP and its o= version too."""
        if self.before is not None:
            self.call.origin, self.call.local_sdp = self.before
            self.before = None

    def fail(self, error: TrunkCallError) -> None:
        if not self.done:
            self.done = True
            self.deferred.errback(error)

    # -- the re-INVITE's responses (ClientUser) ----------------------------

    def response_received(self, transaction: ClientTransaction, response: Response) -> None:
        code = response.code
        if 200 <= code < 300:
            self._ack(transaction, response)
            if transaction is self.transaction and not self.done:
                self.updates.accepted(self, response)
        elif transaction is not self.transaction or self.done or code < 200:
            return
        elif code in (401, 407) and self._authenticate(response):
            return
        elif code == 491:
            self.updates.glare(self, response.reason or "Request Pending")
        elif code in (408, 481):
            self.updates.lost(self, code, response.reason or str(code))
        else:
            self.updates.refused(self, code, response.reason or str(code))

    def timed_out(self, transaction: ClientTransaction) -> None:
        if transaction is self.transaction and not self.done:
            self.updates.lost(self, 408, "no response to the re-INVITE")

    def _ack(self, transaction: ClientTransaction, response: Response) -> None:
        """ACK a 2xx (§13.2.2.4), once per tag: a repeat is ACKed with the same bytes."""
        call = self.call
        assert call.dialog is not None
        tag = response.to.tag or ""
        if tag not in self._acks:
            if tag == call.dialog.remote_tag:
                call.dialog.refresh_target(response)  # §12.2.1.2: a 2xx to a target refresh moves the target
            self._acks[tag] = encode(call.dialog.ack(transaction.request, call.trunk.agent.via()))
        call.trunk.agent.layer.write(self._acks[tag], call.dialog.destination(call.trunk.peer))

    def _authenticate(self, response: Response) -> bool:
        """The re-INVITE again with credentials (§22.2), the dialog's next CSeq; False when we cannot or did."""
        call = self.call
        settings = call.trunk.settings
        if settings.username is None or settings.password is None or self.request is None:
            return False
        challenge = call.trunk.challenge_of(response)
        if challenge is None or (challenge.nonce in self.nonces and not challenge.stale):
            return False
        self.nonces.add(challenge.nonce)
        assert call.dialog is not None
        request = call.trunk.with_credentials(self.request, challenge, bump=False)
        self._send(replace(request, cseq=CSeq(call.dialog.next_seq(), Method.INVITE)))
        return True


class Updates:
    """A call's updates: one out at a time, the rest waiting their turn."""

    log = Logger()

    def __init__(self, call: UpdatingCall) -> None:
        self.call = call
        self.waiting: deque[Update] = deque()
        self.current: Update | None = None  # its re-INVITE is out
        self._pause: IDelayedCall | None = None  # after a 491

    @property
    def in_flight(self) -> bool:
        """Whether a re-INVITE of ours waits for its final response (the peer's then gets 491, §14.2)."""
        return self.current is not None

    def add(self, line: SessionDescription) -> Deferred[SessionDescription]:
        update = Update(self, line)
        self.waiting.append(update)
        self.next()
        return update.deferred

    def next(self) -> None:
        """Send the next update when no INVITE transaction is under way either way and no pause runs."""
        call = self.call
        if self.waiting and self.current is None and self._pause is None and call.ready_for_update():
            self.current = self.waiting.popleft()
            self.current.send()

    def accepted(self, update: Update, response: Response) -> None:
        """A 2xx (ACKed): its SDP must answer our offer, or the call ends as §13.2.2.4 ends a first one."""
        call = self.call
        assert update.offer is not None
        answer = parse_sdp(response.body) if response.body else None
        problem = "no answer to the offer" if answer is None else check_answer(update.offer, answer)
        self.current = None
        if problem is not None:
            update.fail(TrunkCallError(488, f"bad answer to the re-INVITE: {problem}", ended=True))
            call._send_bye("bad answer")
            call._tell_ended(f"bad answer to a re-INVITE: {problem}")
            return
        assert answer is not None
        update.before = None
        call.line = update.line
        call.remote_sdp = answer
        update.done = True
        update.deferred.callback(answer)
        self.next()

    def glare(self, update: Update, reason: str) -> None:
        """491 (§14.1): the same update again after a random pause, a few times."""
        update.restore()
        self.current = None
        if update.glare >= MAX_GLARE_RETRIES:
            self.refused(update, 491, reason)
            return
        update.glare += 1
        rng = self.call.trunk.agent.rng
        delay = (210 + rng.randrange(191)) / 100 if self.call.owns_call_id else rng.randrange(201) / 100
        self.waiting.appendleft(update)
        self._pause = self.call.trunk.clock.callLater(delay, self._resume)

    def _resume(self) -> None:
        self._pause = None
        self.next()

    def refused(self, update: Update, code: int, reason: str) -> None:
        """A final refusal: the session stays as it was; the next update may go."""
        update.restore()
        self.current = None
        update.fail(TrunkCallError(code, reason))
        self.next()

    def lost(self, update: Update, code: int, reason: str) -> None:
        """408, 481 or no response: the dialog is gone (§12.2.1.2); BYE unless the peer said it has none."""
        call = self.call
        self.current = None
        update.fail(TrunkCallError(code, reason, ended=True))
        if code == 481:
            call._finish()
        else:
            call._send_bye("re-INVITE timed out")
        call._tell_ended(f"re-INVITE answered {code} {reason}")

    def end(self) -> None:
        """The call ends: every update still owed fails (C{ended}); a re-INVITE out runs out on its own."""
        if self._pause is not None and self._pause.active():
            self._pause.cancel()
        self._pause = None
        owed = ([self.current] if self.current is not None else []) + list(self.waiting)
        self.current = None
        self.waiting.clear()
        for update in owed:
            update.fail(TrunkCallError(481, ENDED, ended=True))
