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

The calls are L{OutgoingCall} and L{IncomingCall} (over L{SipCall},
whose C{_finish} is every call's one way out); OPTIONS and REGISTER are
L{Keepalive} and L{Registration}.  This module takes the peer's requests,
checks them, and keeps the channels and the counters.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Hashable

from twisted.application.service import IService, Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..config import TrunkSettings
from ..interfaces import ITrunk
from ..mgcp import SessionDescription
from ..trunk import RegistrationState, TrunkState, TrunkView
from .agent import ALLOW, SipProtocol, UserAgent
from .calls import Address, SipCall, Phase
from .dialog import DialogId
from .digest import Challenge, authorization, parse_challenge
from .headers import CSeq, NameAddress
from .incoming import IncomingCall
from .message import Headers, Method, Request, Response, response_to
from .outgoing import OutgoingCall
from .peer import Keepalive, Registration
from .sdp import acceptable, parse_sdp
from .transaction import ServerTransaction, SipTimers
from .uri import SipUri, Uri

__all__ = ["SipTrunk", "OutgoingCall", "IncomingCall"]

_KNOWN = frozenset(m.value for m in Method)


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
        self.clock: IReactorTime = reactor
        self.incoming = incoming
        self.timers = timers
        self.peer: Address = (settings.address, settings.port)
        self.domain = settings.domain or settings.address
        self.allowed = settings.allowed or (ipaddress.ip_network(settings.address),)
        self.agent = UserAgent(reactor, rng or random.SystemRandom(), host=settings.local_address,
                               port=settings.local_port, timers=timers, core=self)
        self.channels: set[SipCall] = set()
        self.dialogs: dict[DialogId, SipCall] = {}
        self.state = TrunkState.UNKNOWN
        self.port: Any = None
        self.statuses: Counter[str] = Counter()
        self.calls_out = self.calls_in = self.answered_out = self.answered_in = self.refused_full = 0
        self.pending: dict[Hashable, IncomingCall] = {}  # INVITE server transaction key -> call, until answered
        self.recording: dict[str, SipCall] = {}  # Call-ID -> call, while calls keep their messages
        self.keepalive = Keepalive(self, settings.keepalive_interval) if settings.keepalive_interval else None
        self.registration = (
            Registration(self, settings.registrar, settings.register_expiry) if settings.registrar else None
        )

    # -- service ---------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
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
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        if self.keepalive is not None:
            self.keepalive.stop()
        if self.registration is not None:
            self.registration.stop()
        for call in list(self.channels):
            if isinstance(call, IncomingCall) and call.phase in (Phase.CALLING, Phase.EARLY):
                call._reject(503)
            elif isinstance(call, OutgoingCall) and call.phase in (Phase.CALLING, Phase.EARLY):
                call._cancel()
            elif call.phase is Phase.CONFIRMED and call.dialog is not None:
                call._send_bye("switch stopping")
            call._finish()
        self.agent.layer.close()
        self.pending.clear()
        if self.port is not None:
            self.port.stopListening()
            self.port = None

    # -- the calls' messages, for the admin's ladders ------------------------

    @property
    def keep_messages(self) -> bool:
        """Whether each call keeps its messages (C{SipCall.messages}): call control sets it with its ladders."""
        return self.agent.tap is not None

    @keep_messages.setter
    def keep_messages(self, keep: bool) -> None:
        self.agent.tap = self._tap if keep else None

    def record(self, call: SipCall, call_id: str) -> None:
        """C{call} keeps the messages of Call-ID C{call_id} from now until it finishes."""
        if self.agent.tap is not None:
            call.messages = []
            call.recorded_id = call_id
            self.recording[call_id] = call

    def _tap(self, direction: str, data: bytes, address: Address, message: Any) -> None:
        call_id = message.call_id if message is not None else _call_id_of(data)
        call = self.recording.get(call_id) if call_id is not None else None
        if call is not None and call.messages is not None:
            call.messages.append((self.clock.seconds(), direction, data, address))

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
        self.pending[transaction.key] = call
        try:
            self.incoming(call)
        except Exception:
            self.log.failure("the incoming-call handler of trunk {name} failed", name=self.name)
            if call.phase in (Phase.CALLING, Phase.EARLY):
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
        call = self.pending.pop(invite.key, None)
        if call is not None:
            call.cancel_received()

    def ack_received(self, ack: Request, source: Address) -> None:
        call = self.dialogs.get((ack.call_id, ack.to.tag or "", ack.from_.tag or ""))
        if call is not None:
            call.ack_received(ack)

    def stray_response(self, response: Response) -> None:
        self.log.debug("stray {code} for {method} dropped", code=response.code, method=response.cseq.method)


def _call_id_of(data: bytes) -> str | None:
    """The Call-ID of a message we wrote (long header names: L{encode}'s)."""
    start = data.find(b"\r\nCall-ID: ")
    if start < 0:
        return None
    start += 11
    end = data.find(b"\r\n", start)
    return data[start:end].decode("utf-8", "replace") if end > 0 else None
