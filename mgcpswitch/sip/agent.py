# -*- test-case-name: tests.test_sip_transaction -*-
"""
The UDP user agent under a trunk: a L{SipProtocol} hands datagrams to a
L{UserAgent}, which decodes them, answers what is malformed (§8.2.6: the
raw Via, From, To, Call-ID and CSeq copied), notes the source in the top
Via (§18.2.1, RFC 3581), drops responses that are not for it (§18.1.2),
and passes the rest to its transaction layer or, for what no transaction
takes (new requests, the ACK of a 2xx, a 2xx outliving its transaction),
to its core (the trunk).

Identifiers (branches, tags, Call-IDs, client nonces) come from an
injected L{random.Random}: a test seeds it, the switch gives it
L{random.SystemRandom}.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol, Union

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from .headers import MAGIC_COOKIE, NameAddress, Via
from .message import Malformed, Request, Response, decode, encode, reply_to_malformed
from .transaction import ClientTransaction, ClientUser, ServerTransaction, SipTimers, TransactionLayer
from .uri import SipUri

__all__ = ["UserAgent", "SipProtocol", "Core", "AgentCounters", "ALLOW", "SDP_TYPE"]

Address = tuple[str, int]
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"  # the methods this user agent takes
SDP_TYPE = ("Content-Type", "application/sdp")


class Core(Protocol):
    """What the user agent hands its core (the trunk)."""

    def request_received(self, transaction: ServerTransaction) -> None: ...

    def ack_received(self, ack: Request, source: Address) -> None: ...

    def stray_response(self, response: Response) -> None: ...


@dataclass(frozen=True)
class AgentCounters:
    """What the user agent saw, for the trunk's view."""

    received: int
    sent: int
    malformed: int
    answered_malformed: int
    stray_responses: int
    retransmissions: int


class UserAgent:
    log = Logger()

    def __init__(self, clock: IReactorTime, rng: random.Random, *, host: str, port: int,
                 timers: SipTimers = SipTimers(), core: Core | None = None) -> None:
        self.clock = clock
        self.rng = rng
        self.host = host
        self.port = port
        self.core = core
        self.transport: Any = None
        self.layer = TransactionLayer(clock, self.write, timers)
        self.received = self.sent = self.malformed = self.answered_malformed = self.stray = 0
        # Told of every message sent and received, when set: C{tap(direction,
        # data, address, message)}, C{message} None for what is sent (the
        # trunk keeps calls' messages for the admin's ladders).
        self.tap: Callable[[str, bytes, Address, Union[Request, Response, None]], None] | None = None

    # -- identifiers ---------------------------------------------------

    def token(self, bits: int = 64) -> str:
        return f"{self.rng.getrandbits(bits):x}"

    def new_branch(self) -> str:
        return MAGIC_COOKIE + self.token(80)

    def new_tag(self) -> str:
        return self.token(48)

    def new_call_id(self) -> str:
        return f"{self.token(96)}@{self.host}"

    def via(self) -> Via:
        """Our Via for a new request: a fresh branch, and C{rport} (RFC 3581)."""
        return Via("UDP", self.host, self.port, (("branch", self.new_branch()), ("rport", None)))

    def contact(self, user: str | None) -> NameAddress:
        return NameAddress(SipUri(host=self.host, user=user, port=self.port))

    # -- sending -------------------------------------------------------

    def write(self, data: bytes, address: Address) -> None:
        if self.transport is None:
            raise OSError("the user agent is not listening")
        self.sent += 1
        self.transport.write(data, address)
        if self.tap is not None:
            self.tap("out", data, address, None)

    def send(self, request: Request, destination: Address, user: ClientUser) -> ClientTransaction:
        return self.layer.send(request, destination, user)

    def send_ack(self, ack: Request, destination: Address) -> None:
        """An ACK of a 2xx goes out of any transaction (§17.1.1.3)."""
        self.layer.write(encode(ack), destination)

    # -- receiving -----------------------------------------------------

    def datagram_received(self, data: bytes, source: Address) -> None:
        self.received += 1
        message = decode(data)
        if isinstance(message, Malformed):
            self._malformed(message, data, source)
            return
        if self.tap is not None:
            self.tap("in", data, source, message)
        if isinstance(message, Request):
            self._request(message, source)
        else:
            self._response(message)

    def _malformed(self, message: Malformed, data: bytes, source: Address) -> None:
        if message.reason.startswith("keepalive"):
            return
        self.malformed += 1
        reply = reply_to_malformed(message)
        self.log.info(
            "malformed SIP from {source}: {reason} ({answer})",
            source=source, reason=message.reason, answer=message.code or "dropped",
        )
        if reply is not None:
            self.answered_malformed += 1
            self.layer.write(reply, source)

    def _request(self, request: Request, source: Address) -> None:
        via = request.via[0]
        received = via.host != source[0]
        if received or via.param("rport") is not None:
            values: dict[str, str | None] = {}
            if received or via.param("rport") == "":
                values["received"] = source[0]
            if via.param("rport") is not None:
                values["rport"] = str(source[1])
            request = _with_top_via(request, via.with_params(**values))
        assert self.core is not None
        if request.method == "ACK":
            if not self.layer.ack_received(request):
                self.core.ack_received(request, source)
            return
        transaction = self.layer.request_received(request, source)
        if transaction is not None:
            self.core.request_received(transaction)

    def _response(self, response: Response) -> None:
        via = response.via[0]
        if via.sent_by != (self.host, self.port) and via.host != self.host:
            self.stray += 1
            return
        if not self.layer.response_received(response):
            self.stray += 1
            assert self.core is not None
            self.core.stray_response(response)

    def counters(self) -> AgentCounters:
        return AgentCounters(
            received=self.received,
            sent=self.sent,
            malformed=self.malformed,
            answered_malformed=self.answered_malformed,
            stray_responses=self.stray,
            retransmissions=self.layer.retransmissions,
        )


def _with_top_via(request: Request, via: Via) -> Request:
    return replace(request, via=(via,) + request.via[1:])


class SipProtocol(DatagramProtocol):
    """The socket side: datagrams in to the L{UserAgent}, its writes out."""

    log = Logger()

    def __init__(self, agent: UserAgent) -> None:
        self.agent = agent

    def startProtocol(self) -> None:  # noqa: N802
        self.agent.transport = self.transport

    def stopProtocol(self) -> None:  # noqa: N802
        self.agent.transport = None

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802
        try:
            self.agent.datagram_received(datagram, (addr[0], addr[1]))
        except Exception:
            # A bug, not bad input (decode never raises): say so, keep the reactor.
            self.log.failure("handling a SIP datagram from {addr} failed", addr=addr)
