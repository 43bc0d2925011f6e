# -*- test-case-name: tests.test_sip_transaction -*-
"""
SIP transactions over UDP (RFC 3261 §17, with RFC 6026's Accepted state),
on the injected clock.

Four machines: the INVITE client (timers A, B, D, and M), the non-INVITE
client (E, F, K), the INVITE server (G, H, I, L) and the non-INVITE server
(J).  Each lives in the layer's table from its first message until its
last timer, and removes itself: a test that runs the clock until no call
is left, then finds the tables empty, has shown that nothing leaked.

The layer owns retransmission: it writes a request again on A and E,
a final response again on G, answers a retransmitted request with the
last response, and ACKs a non-2xx final response to an INVITE (§17.1.1.3).
What it does not own is the transaction user's: 2xx retransmission and
its ACK belong to the user agent core (§13.3.1.4, §13.2.2.4), and the
layer passes every 2xx, including repeats of one, to its user.

Matching (§17.1.3, §17.2.3): a response by its top Via's branch and its
CSeq method; a request by branch, sent-by and method (an ACK finds its
INVITE), or, for an RFC 2543 peer whose branch lacks the magic cookie, by
Call-ID, From tag, CSeq number and top Via.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable, Hashable, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .headers import MAGIC_COOKIE
from .message import Method, Request, Response, encode, response_to

__all__ = [
    "SipTimers",
    "State",
    "ClientTransaction",
    "ServerTransaction",
    "TransactionLayer",
    "ClientUser",
    "response_destination",
]

Address = tuple[str, int]


@dataclass(frozen=True)
class SipTimers:
    """
    RFC 3261's timer values (§17.1.1.1, table 4): T1 the round-trip
    estimate (500 ms), T2 the longest retransmit interval for non-INVITE
    requests and INVITE responses (4 s), T4 how long a message may stay in
    the network (5 s).  Timer D is at least 32 s over UDP.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError(f"T1 ({self.t1}) must be positive and at most T2 ({self.t2})")
        if self.t4 <= 0 or self.d < 0:
            raise ValueError("T4 must be positive and Timer D not negative")

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J, L and M."""
        return 64 * self.t1


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class ClientUser(Protocol):
    """What a client transaction tells its user."""

    def response_received(self, transaction: ClientTransaction, response: Response) -> None: ...

    def timed_out(self, transaction: ClientTransaction) -> None: ...


def response_destination(request: Request, source: Address) -> Address:
    """
    Where a response to C{request} goes (§18.2.2, RFC 3581): the top Via's
    C{received} address (or its host) and its C{rport} (or its port).
    """
    via = request.via[0]
    host = via.param("received") or via.host
    rport = via.param("rport")
    if rport:
        return (host, int(rport))
    return (host, via.port if via.port is not None else 5060)


class _Timers:
    """Named delayed calls of one transaction, all cancelled at its end."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.calls: dict[str, IDelayedCall] = {}

    def start(self, name: str, delay: float, fire: Callable[[], None]) -> None:
        self.stop(name)
        self.calls[name] = self.clock.callLater(delay, self._fire, name, fire)

    def _fire(self, name: str, fire: Callable[[], None]) -> None:
        del self.calls[name]
        fire()

    def stop(self, *names: str) -> None:
        for name in names:
            call = self.calls.pop(name, None)
            if call is not None and call.active():
                call.cancel()

    def stop_all(self) -> None:
        self.stop(*list(self.calls))


class ClientTransaction:
    """One request this side sent and the responses to it."""

    def __init__(self, layer: TransactionLayer, request: Request, destination: Address, user: ClientUser) -> None:
        self.layer = layer
        self.request = request
        self.destination = destination
        self.user = user
        self.invite = request.method == Method.INVITE
        self.state = State.CALLING if self.invite else State.TRYING
        self.key: Hashable = (request.branch, request.method)
        self.response: Response | None = None  # the last one
        self._timers = _Timers(layer.clock)
        self._data = encode(request)
        self._ack: bytes | None = None
        self._interval = layer.timers.t1

    def start(self) -> None:
        self.layer.write(self._data, self.destination)
        self._timers.start("retransmit", self._interval, self._retransmit)
        self._timers.start("timeout", self.layer.timers.timeout, self._timeout)

    def _retransmit(self) -> None:
        self.layer.write(self._data, self.destination)
        self.layer.retransmissions += 1
        if self.invite:
            self._interval *= 2
        elif self.state is State.PROCEEDING:
            self._interval = self.layer.timers.t2
        else:
            self._interval = min(2 * self._interval, self.layer.timers.t2)
        self._timers.start("retransmit", self._interval, self._retransmit)

    def _timeout(self) -> None:
        self.terminate()
        self.user.timed_out(self)

    def receive(self, response: Response) -> None:
        self.response = response
        code = response.code
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            if code < 200:
                if self.invite:
                    self._timers.stop("retransmit", "timeout")
                self.state = State.PROCEEDING
            elif self.invite and code < 300:
                self._timers.stop_all()
                self.state = State.ACCEPTED
                self._timers.start("M", self.layer.timers.timeout, self.terminate)
            elif self.invite:
                self._timers.stop_all()
                self.state = State.COMPLETED
                self._ack = encode(self._ack_for(response))
                self.layer.write(self._ack, self.destination)
                self._timers.start("D", self.layer.timers.d, self.terminate)
            else:
                self._timers.stop_all()
                self.state = State.COMPLETED
                self._timers.start("K", self.layer.timers.t4, self.terminate)
            self.user.response_received(self, response)
        elif self.state is State.ACCEPTED and 200 <= code < 300:
            self.user.response_received(self, response)  # the core ACKs the repeat
        elif self.state is State.COMPLETED and self._ack is not None and code >= 300:
            self.layer.write(self._ack, self.destination)

    def _ack_for(self, response: Response) -> Request:
        """The ACK of a non-2xx final response (§17.1.1.3)."""
        request = self.request
        return Request(
            method=Method.ACK,
            uri=request.uri,
            via=request.via[:1],
            from_=request.from_,
            to=response.to,
            call_id=request.call_id,
            cseq=type(request.cseq)(request.cseq.seq, Method.ACK),
            max_forwards=70,
            route=request.route,
            headers=tuple((n, v) for n, v in request.headers if n in ("Authorization", "Proxy-Authorization")),
        )

    def terminate(self) -> None:
        self._timers.stop_all()
        self.state = State.TERMINATED
        self.layer._forget_client(self)


class ServerTransaction:
    """One request this side received and its answers."""

    def __init__(self, layer: TransactionLayer, request: Request, source: Address, key: Hashable) -> None:
        self.layer = layer
        self.request = request
        self.source = source
        self.key = key
        self.invite = request.method == Method.INVITE
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.response: Response | None = None
        self.destination = response_destination(request, source)
        self._timers = _Timers(layer.clock)
        self._data: bytes | None = None
        self._interval = layer.timers.t1
        #: Called when a non-2xx final answer to an INVITE was never ACKed (Timer H).
        self.on_no_ack: Callable[[], None] | None = None

    @property
    def answered(self) -> bool:
        """Whether a final response was sent."""
        return self.response is not None and self.response.code >= 200

    def respond(self, response: Response) -> None:
        """Send C{response}; a second final response is refused (a bug of the user)."""
        if self.answered or self.state is State.TERMINATED:
            raise RuntimeError(f"{self.request.method} {self.request.branch} already answered")
        self.response = response
        self._data = encode(response)
        self.layer.write(self._data, self.destination)
        if response.code < 200:
            self.state = State.PROCEEDING
        elif self.invite and response.code < 300:
            self.state = State.ACCEPTED
            self._timers.start("L", self.layer.timers.timeout, self.terminate)
        elif self.invite:
            self.state = State.COMPLETED
            self._timers.start("G", self._interval, self._retransmit)
            self._timers.start("H", self.layer.timers.timeout, self._no_ack)
        else:
            self.state = State.COMPLETED
            self._timers.start("J", self.layer.timers.timeout, self.terminate)

    def _retransmit(self) -> None:
        assert self._data is not None
        self.layer.write(self._data, self.destination)
        self.layer.retransmissions += 1
        self._interval = min(2 * self._interval, self.layer.timers.t2)
        self._timers.start("G", self._interval, self._retransmit)

    def _no_ack(self) -> None:
        self.terminate()
        if self.on_no_ack is not None:
            self.on_no_ack()

    def repeat(self, request: Request) -> None:
        """The same request again, or the ACK of a non-2xx answer."""
        if request.method == Method.ACK:
            if self.state is State.COMPLETED:
                self._timers.stop("G", "H")
                self.state = State.CONFIRMED
                self._timers.start("I", self.layer.timers.t4, self.terminate)
            return
        if self._data is not None and self.state in (State.PROCEEDING, State.COMPLETED):
            self.layer.write(self._data, self.destination)

    def terminate(self) -> None:
        self._timers.stop_all()
        self.state = State.TERMINATED
        self.layer._forget_server(self)


def _server_key(request: Request, method: str) -> Hashable:
    via = request.via[0]
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.sent_by, method)
    return (request.call_id, request.from_.tag, request.cseq.seq, str(via), method)


class TransactionLayer:
    """
    The transactions of one user agent: C{write(bytes, address)} puts a
    datagram on the wire; C{clock} keeps every timer.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, write: Callable[[bytes, Address], None],
                 timers: SipTimers = SipTimers()) -> None:
        self.clock = clock
        self._write = write
        self.timers = timers
        self.clients: dict[Hashable, ClientTransaction] = {}
        self.servers: dict[Hashable, ServerTransaction] = {}
        self.retransmissions = 0

    def write(self, data: bytes, address: Address) -> None:
        try:
            self._write(data, address)
        except OSError as e:
            # UDP: a send error is a lost datagram; the timers retransmit or time out.
            self.log.warn("cannot send to {address}: {error}", address=address, error=e)

    def send(self, request: Request, destination: Address, user: ClientUser) -> ClientTransaction:
        """Start a client transaction for C{request} (its top Via carries a fresh branch)."""
        if request.method == Method.ACK:
            raise ValueError("an ACK is sent by the core, not in a transaction")
        transaction = ClientTransaction(self, request, destination, user)
        if transaction.key in self.clients:
            raise ValueError(f"branch {request.branch} is already in use")
        self.clients[transaction.key] = transaction
        transaction.start()
        return transaction

    def response_received(self, response: Response) -> bool:
        """Hand C{response} to its client transaction; False when none matches."""
        transaction = self.clients.get((response.branch, response.cseq.method))
        if transaction is None:
            return False
        transaction.receive(response)
        return True

    def request_received(self, request: Request, source: Address) -> ServerTransaction | None:
        """
        A new server transaction for C{request} (not an ACK: see
        L{ack_received}), or None when it repeats one the layer has, which
        the layer answered again.  An INVITE is answered 100 at once.
        """
        if request.method == Method.ACK:
            raise ValueError("give ACKs to ack_received")
        key = _server_key(request, request.method)
        existing = self.servers.get(key)
        if existing is not None:
            existing.repeat(request)
            return None
        transaction = ServerTransaction(self, request, source, key)
        self.servers[key] = transaction
        if transaction.invite:
            transaction.respond(response_to(request, 100))
        return transaction

    def ack_received(self, ack: Request) -> bool:
        """
        Whether C{ack} acknowledged a non-2xx answer of an INVITE server
        transaction (and was absorbed by it); False for the ACK of a 2xx,
        which the core must handle.
        """
        existing = self.servers.get(_server_key(ack, Method.INVITE))
        if existing is None or existing.state not in (State.COMPLETED, State.CONFIRMED):
            return False
        existing.repeat(ack)
        return True

    def invite_for(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL names (§9.2)."""
        return self.servers.get(_server_key(cancel, Method.INVITE))

    def _forget_client(self, transaction: ClientTransaction) -> None:
        if self.clients.get(transaction.key) is transaction:
            del self.clients[transaction.key]

    def _forget_server(self, transaction: ServerTransaction) -> None:
        if self.servers.get(transaction.key) is transaction:
            del self.servers[transaction.key]

    def close(self) -> None:
        """End every transaction now (the user agent stops)."""
        for transaction in list(self.clients.values()) + list(self.servers.values()):
            transaction.terminate()
