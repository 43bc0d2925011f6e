# -*- test-case-name: tests.test_sip_trunk -*-
"""
What a trunk does with its peer outside calls: OPTIONS to learn whether
it is up, and REGISTER kept fresh (§10.2).
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ..config import TrunkSettings
from ..trunk import RegistrationState, TrunkState
from .agent import UserAgent
from .calls import Address, Callback
from .digest import Challenge
from .headers import CSeq, NameAddress
from .message import Method, Request, Response
from .uri import SipUri, Uri


class PeerContext(Protocol):
    """What the keepalive and the registration need of their trunk (L{SipTrunk} provides it)."""

    settings: TrunkSettings
    agent: UserAgent
    clock: IReactorTime
    peer: Address
    domain: str

    @property
    def contact(self) -> NameAddress: ...

    def uri(self, user: str | None, *, port: bool = True) -> SipUri: ...

    def out_of_dialog(self, method: str, uri: Uri, call_id: str, seq: int) -> Request: ...

    def challenge_of(self, response: Response) -> Challenge | None: ...

    def with_credentials(self, request: Request, challenge: Challenge, *, bump: bool = True) -> Request: ...

    def set_state(self, state: TrunkState) -> None: ...


class Keepalive:
    """OPTIONS to the peer every C{interval}: a response means up, a timeout down."""

    def __init__(self, trunk: PeerContext, interval: float) -> None:
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
        trunk.agent.send(request, trunk.peer, Callback(self._answered, self._timed_out))

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


class Registration:
    """
    REGISTER with the registrar and keep it fresh (§10.2): the same
    Call-ID and a rising CSeq; credentials when challenged; the refresh
    before the granted expiry; a retry after a failure.
    """

    RETRY = 60.0

    def __init__(self, trunk: PeerContext, registrar: Address, expiry: int) -> None:
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
        trunk.agent.send(request, self.registrar, Callback(
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
