# -*- test-case-name: tests.test_transaction -*-
"""
The MGCP transaction layer, one for both roles (RFC 3435 §3.5, §4.3).

MGCP runs over UDP, so reliability is built here:

  - L{TransactionLayer.send_command} retransmits a command with
    exponential backoff and jitter, from a per-peer adaptive timer, until a
    final response arrives or the retransmission limit passes; piggybacked
    commands are retransmitted together and share fate;
  - incoming commands are executed at most once: responses are kept for
    T-HIST and replayed byte for byte to duplicates; a duplicate of a
    command still executing gets C{100};
  - a handler piggybacks by returning a L{Reply}: commands ahead of its
    response, and new transactions that ride after it;
  - provisional responses switch a transaction to the LONGTRAN timer, and
    a final response that follows a provisional one asks for (and is
    retransmitted until) a C{000} acknowledgement;
  - responses received from a peer are acknowledged with C{K:} on the next
    command to it, and a C{K:} received purges our cached responses;
  - load control: a per-peer cap on commands in flight (the rest wait in
    order) and high/low water marks on commands executing here (C{101}
    above the high mark, C{409} when the queue is full).

The layer does no I/O itself: it is given the clock and a datagram writer,
so every timer rule is testable with L{twisted.internet.task.Clock}.  It
knows nothing of calls: commands go to an injected L{ICommandHandler}, peer
health to an optional L{IPeerListener}.
"""

from __future__ import annotations

from bisect import bisect_left
import enum
import heapq
import random
from collections import Counter, deque
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Iterable, Optional, Protocol, TypeVar, Union, cast, final

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from .errors import ProtocolError, TransactionAborted, TransactionTimeout
from .mgcp import (
    Command,
    MalformedMessage,
    ParamCode,
    Parameters,
    Response,
    ReturnCode,
    Verb,
    decode,
    encode,
    trusted_response,
)
from .ratelog import PeerLogLimiter
from .txid import IdAllocator, TransactionIdAllocator

__all__ = [
    "Unanswered",
    "Tally",
    "Role",
    "PeerState",
    "ResponseBinding",
    "TransactionConfig",
    "TransactionLayer",
    "Reply",
    "Outbox",
    "Waiter",
    "Callbacks",
    "Encoded",
    "Outgoing",
    "Address",
    "as_address",
    "HandlerResult",
    "FastPath",
    "ICommandHandler",
    "ITransactionSender",
    "IPeerListener",
]

Address = tuple[str, int]  # (host, port) as Twisted gives it


def as_address(address: Iterable[object]) -> Address:
    """C{address} as a hashable (host, port): a caller may hold it as a list (read back from JSON)."""
    return cast(Address, tuple(address))


_K = TypeVar("_K")


class Tally(Counter[_K]):
    """
    A L{Counter} whose C{tally[key] += 1} runs in C.  Counter's own
    C{__delitem__} (Python, to ignore missing keys) makes every store
    into it go through the interpreter's Python-level slot and dict's
    C{__setitem__} called as a method: ~750 machine instructions more an
    increment on Python 3.11, and the layer counts several per message.
    Deleting a missing key raises here, as from a dict.
    """

    __slots__ = ()
    __delitem__ = dict.__delitem__  # type: ignore[assignment]


class Unanswered(Exception):
    """
    Raised by a command handler that leaves a command unanswered (a call
    agent standing by in a cluster): no response is sent and the command
    is forgotten, so that its retransmission is handled afresh, by which
    time the agent may answer it.
    """


class Role(enum.Enum):
    """
    Which side the layer serves.  It changes only how duplicates are keyed
    (RFC 3435 §3.5.2): a gateway keys commands by transaction id alone (ids
    towards a gateway are unique across its call agents); a call agent by
    endpoint domain and transaction id (each gateway has its own space).
    """

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C

    CALL_AGENT = "call-agent"
    GATEWAY = "gateway"


class PeerState(enum.Enum):
    """
    What the layer saw of one address it sends commands to, told to the
    L{IPeerListener} on each change.  It follows RFC 3435 §4.3's
    per-transaction thresholds and says nothing more: one lost
    transaction is enough for SUSPECT or DISCONNECTED, other
    transactions to the same address may be completing meanwhile, and
    the RFC asks a I{gateway} to start its disconnected procedure (§4.4.7)
    on this but mandates nothing for a call agent.  Whether a gateway is
    down is for a liveness check to say (call control's business).
    """

    __hash__ = object.__hash__  # members are singletons: hash by identity, in C
    #: Nothing went wrong, or a response (provisional or final) came from
    #: the address since it did.
    REACHABLE = "reachable"
    #: A command to the address was repeated Max1 times (the RFC's
    #: suspicion threshold) with no response from it since.
    SUSPECT = "suspect"
    #: A command to the address was repeated Max2 times (the disconnection
    #: threshold), or gave up (T-MAX, or the configured give-up) without
    #: any response, not even a provisional one, and no response came
    #: from the address since.
    DISCONNECTED = "disconnected"


class ResponseBinding(enum.Enum):
    """
    Which source a response must come from to complete a transaction
    (RFC 3435 §3.5: responses go back to the command's source; nothing
    obliges a call agent to answer from the port it was sent to).
    Responses from anywhere else are dropped and counted
    (C{responses_wrong_peer}).
    """

    __hash__ = object.__hash__
    #: The address (host and port) the command was sent to: the call
    #: agent's default (a gateway answers from the port it listens on).
    ADDRESS = "address"
    #: The host the command was sent to, any port: the gateway's default.
    HOST = "host"


@dataclass(frozen=True)
class TransactionConfig:
    """
    Timers and limits, with RFC 3435 defaults (§3.5, §4.3, §4.4.8).

    @ivar initial_rto: retransmission timer before any delay is measured
        (RFC 3435 §4.3 uses 200 ms as its example).
    @ivar min_rto: floor of the adaptive timer; loopback round trips are
        ~0.1 ms, and a floor keeps scheduling hiccups from looking like loss.
    @ivar rto_max: cap on one retransmission interval (RTO-MAX).
    @ivar rto_dev_factor: N in RTO = AAD + N * ADEV.
    @ivar t_max: no retransmission later than this after the first send.
    @ivar t_hist: how long responses (and transaction ids) are remembered.
    @ivar longtran: retransmission interval after a provisional response.
    @ivar max1: repetitions after which a peer is suspect.
    @ivar max2: repetitions after which a peer is disconnected (the
        transaction itself goes on until T-MAX, RFC 3435 §4.3).
    @ivar max_retransmissions: an optional lower limit on repetitions; the
        transaction then gives up one interval after the last one.  None:
        T-MAX alone bounds it.
    @ivar give_up: a transaction with no final response fails this long
        after its first send (None: at T-MAX); after a provisional response
        it waits up to 2 x T-HIST (§3.5.6).
    @ivar max_in_flight: commands in flight to one peer; the rest queue.
    @ivar high_water: commands executing here above which new ones are
        queued and answered C{101}.
    @ivar low_water: queued commands start again below this.
    @ivar queue_limit: queued commands beyond which new ones get C{409}.
    @ivar execution_timeout: a handler that has not answered by then is
        cancelled and the command answered C{406}.
    @ivar provisional_after: send C{100} when a handler has not answered
        after this many seconds (None: only to duplicates).
    @ivar response_acks: send C{K:} with our next command to a peer
        (osmo-mgw rejects C{K:} with 539: turn this off for such peers
        through L{TransactionLayer.set_peer_options}).
    @ivar max_acks: transaction ids acknowledged in one C{K:} at most.
    @ivar history_sweep: how often expired responses are swept.
    @ivar trace: log one structured event per message sent and received.
    @ivar response_binding: where a response must come from
        (L{ResponseBinding}); None: by role, ADDRESS for a call agent,
        HOST for a gateway.  The same rule decides whose C{K:} may purge
        the responses we keep.
    @ivar log_burst: lines logged per peer and kind of bad input
        (malformed datagrams, responses from the wrong peer) in a window
        of C{log_window} seconds; the rest are counted and summarised in
        one line when the window ends (the counters stay exact).
    """

    initial_rto: float = 0.2
    min_rto: float = 0.1
    rto_max: float = 4.0
    rto_dev_factor: float = 4.0
    t_max: float = 20.0
    t_hist: float = 30.0
    longtran: float = 5.0
    max1: int = 5
    max2: int = 7
    max_retransmissions: Optional[int] = None
    give_up: Optional[float] = None
    max_in_flight: int = 64
    high_water: int = 500
    low_water: int = 400
    queue_limit: int = 2000
    execution_timeout: float = 20.0
    provisional_after: Optional[float] = None
    response_acks: bool = True
    max_acks: int = 32
    history_sweep: float = 1.0
    trace: bool = False
    response_binding: Optional[ResponseBinding] = None
    log_burst: int = 5
    log_window: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.min_rto <= self.rto_max:
            raise ValueError("need 0 < min_rto <= rto_max")
        if self.max2 <= self.max1:
            raise ValueError("Max2 must be greater than Max1 (RFC 3435 §4.3)")
        if self.longtran >= self.t_hist:
            raise ValueError("LONGTRAN must stay below T-HIST (RFC 3435 §3.5.6)")
        if not 0 < self.low_water <= self.high_water:
            raise ValueError("need 0 < low_water <= high_water")
        if self.log_burst < 0 or self.log_window <= 0:
            raise ValueError("need log_burst >= 0 and log_window > 0")


class Waiter(Protocol):
    """
    What waits for a command's outcome in the layer: a
    L{Deferred[Response]} (L{TransactionLayer.send_command}), or a plain
    L{Callbacks} (L{TransactionLayer.send}).  The layer calls one of
    C{callback} and C{errback} once, and reads C{called} to skip waiters
    whose owner gave up on them (a cancelled Deferred).
    """

    called: bool

    def callback(self, result: Response) -> None: ...

    def errback(self, fail: BaseException) -> None: ...


@final
class Callbacks:
    """
    A command's outcome handed to two plain functions: the call agent's
    way to send its hot commands (RQNT, CRCX, MDCX, DLCX), one per call
    step, without the cost of a Deferred (its callbacks chain, and
    C{_runCallbacks} to walk it) for a result that has one consumer.

    C{on_response(response, *args)} gets the final response (whatever
    its code); C{on_failure(failure, *args)} a L{Failure} of
    L{TransactionTimeout} or L{TransactionAborted}, as a Deferred's
    errback would.  An exception either raises is logged here: the layer
    goes on with the rest of the datagram.
    """

    __slots__ = ("called", "_on_response", "_on_failure", "_args")

    log = Logger()

    def __init__(
        self, on_response: Callable[..., object], on_failure: Callable[..., object], *args: Any
    ) -> None:
        self.called = False
        self._on_response = on_response
        self._on_failure = on_failure
        self._args = args

    def callback(self, result: Response) -> None:
        self.called = True
        try:
            self._on_response(result, *self._args)
        except Exception:
            self.log.failure("handling the response {txid} failed", txid=result.transaction_id)

    def errback(self, fail: BaseException) -> None:
        self.called = True
        try:
            self._on_failure(Failure(fail), *self._args)
        except Exception:
            self.log.failure("handling a failed command failed")


@final
class Encoded:
    """
    A command in its wire form, sent as it is: for a sender that sends the
    same command, but for its transaction id and a field or two, many
    times a second, and keeps it as a template of bytes to splice into
    (call control's RQNT to a line whose new call the overload guard
    sheds, thousands a second in a surge).  Encoding a L{Command} costs
    more than the rest of sending it.

    It stands for the command in the layer (L{TransactionLayer.send},
    L{Reply.after}): a transaction like any other (retransmitted, C{K:}
    spliced in, matched to its response by C{transaction_id}).  The
    caller promises that C{datagram} is one well-formed command of
    C{verb} to C{endpoint} whose transaction id is C{transaction_id}
    (not 0: the layer does not allocate one for it).  L{command} decodes
    it, for the rare reader that needs the L{Command} (a time-out's).
    """

    __slots__ = ("verb", "transaction_id", "endpoint", "datagram")

    def __init__(self, verb: Verb, transaction_id: int, endpoint: str, datagram: bytes) -> None:
        self.verb = verb
        self.transaction_id = transaction_id
        self.endpoint = endpoint
        self.datagram = datagram

    def command(self) -> Command:
        """The L{Command} the datagram holds."""
        message = decode(self.datagram)[0]
        if type(message) is not Command:
            raise ValueError(f"not a command: {self.datagram[:60]!r}")
        return message


#: What the layer sends as a command: a L{Command}, or one already encoded.
Outgoing = Union[Command, Encoded]


def _wire_form(commands: list[Outgoing]) -> bytes:
    """The datagram of commands piggybacked (each L{Encoded} one as it is)."""
    if len(commands) == 1:
        only = commands[0]
        return only.datagram if type(only) is Encoded else encode(only)
    return b".\r\n".join(c.datagram if type(c) is Encoded else encode(c)
                          for c in commands)


def _as_command(command: Outgoing) -> Command:
    return command.command() if type(command) is Encoded else command


@final  # tested with type(x) is Reply
@dataclass(frozen=True)
class Reply:
    """
    A handler's answer with the commands that share its datagram
    (piggybacking, RFC 3435 §3.5.5): the one way a handler piggybacks.

    @ivar response: the response to the command handled.
    @ivar before: commands put ahead of the response, as copies: an RSIP
        must be the first thing the call agent sees from a restarting or
        disconnected endpoint (§4.4.6, §4.4.7).  Replays of the response
        to duplicates carry them again.  They are not transactions of
        their own here: the handler sends the reliable copy itself (same
        transaction id, to its notified entity) with
        L{TransactionLayer.send_command}.
    @ivar after: commands sent after the response in the same datagram
        (§4.4.1: a lockstep call agent answers an NTFY with its next RQNT
        in one datagram), each paired with an unfired L{Waiter} (a
        Deferred, or L{Callbacks}).  Each is a transaction of its own to
        the command's source: a txid of 0 gets a fresh one; it is
        retransmitted alone when needed, and its waiter is called back
        with the final response or fails with
        L{TransactionTimeout} or L{TransactionAborted}, as
        L{TransactionLayer.send_command}'s would.  When the source's
        in-flight cap is reached a command waits in its queue instead of
        riding along.  Cancelling such a Deferred stops the transaction at
        its next retransmission (the layer did not create it, so it cannot
        hear the cancellation sooner).  Replays to duplicates do not carry
        them (they are retransmitted on their own).
    """

    response: Response
    before: tuple[Command, ...] = ()
    after: tuple[tuple[Outgoing, Waiter], ...] = ()


class Outbox:
    """
    The commands a handler decides, while it runs, to send to the source
    of the command it handles, collected to ride after its response
    (L{Reply.after}): for handlers whose sending is spread over many
    places (a gateway's endpoints notify from deep inside a command).
    """

    def __init__(self, source: Address) -> None:
        self.source = as_address(source)
        self.commands: list[tuple[Command, Deferred[Response]]] = []

    def add(self, command: Command) -> Deferred[Response]:
        """Collect C{command}; the Deferred fires as send_command's would."""
        d: Deferred[Response] = Deferred()
        self.commands.append((command, d))
        return d

    def reply(self, result: Response | Reply) -> Response | Reply:
        """The handler's result with the collected commands after its response."""
        if not self.commands:
            return result
        after = tuple(self.commands)
        if type(result) is Reply:
            return replace(result, after=result.after + after)
        return Reply(result, after=after)

    def send_now(self, send_command: Callable[[Command, Address], Deferred[Response]]) -> None:
        """No reply will carry them (the handler failed): send them on their own with C{send_command}."""
        commands, self.commands = self.commands, []
        for command, d in commands:
            send_command(command, self.source).chainDeferred(d)


HandlerResult = Union[Response, Reply, "Deferred[Response | Reply]"]

#: A fast path for one verb (L{TransactionLayer.fast_paths}): called with
#: the datagram, its transaction id, its endpoint name and its source; it
#: answers, or returns None to have the command decoded and handled as usual.
FastPath = Callable[[bytes, int, str, "Address"], "Response | Reply | None"]


# The layer's seams (re-exported by L{mgcpswitch.interfaces}): here, beside
# the types they speak of, so that the interfaces above the layer may name
# call control's types without an import circle.


class ICommandHandler(Interface):
    """What a role (call agent or gateway) gives the transaction layer."""

    def command_received(command: Command, source: Address) -> HandlerResult:
        """
        Execute C{command} (a L{mgcpswitch.mgcp.Command}) that arrived from
        C{source} (an address tuple), at most once per transaction.

        @return: a L{mgcpswitch.mgcp.Response}, a
            L{mgcpswitch.transaction.Reply} (a response with the commands
            that share its datagram: copies ahead of it, new transactions
            after it), or a Deferred firing with either.
            Raising or failing with a L{mgcpswitch.errors.ProtocolError}
            answers with its code; any other exception is a bug, logged
            and answered with 400.
        """


class ITransactionSender(Interface):
    """Sends commands reliably (the transaction layer)."""

    def send_command(command: Command, address: Address) -> Deferred[Response]:
        """
        Send C{command} to C{address}; retransmit until a final response.

        @return: a Deferred firing with the final
            L{mgcpswitch.mgcp.Response} (whatever its code), or failing with
            L{mgcpswitch.errors.TransactionTimeout}.
        """

    def send(command: Command, address: Address, waiter: Waiter) -> None:
        """
        As L{send_command}, the outcome told to C{waiter} (a
        L{mgcpswitch.transaction.Callbacks}) rather than through a Deferred.
        """

    def allocate_transaction_id() -> int:
        """A fresh transaction id, for commands that must be resent as is."""


class IPeerListener(Interface):
    """Told when a peer stops answering, and when it answers again."""

    def peer_state_changed(address: Address, state: PeerState) -> None:
        """
        C{state} is a L{PeerState}: SUSPECT when a command to C{address}
        was repeated Max1 times, DISCONNECTED at Max2 (RFC 3435 §4.3) or
        when a command gave up unanswered, REACHABLE when a response
        (provisional or final) comes from C{address} again.  Each is about
        one transaction, not a verdict on the peer (see L{PeerState}).
        Called after the layer's own state is updated.
        """

_RESPONSE_ACK = ParamCode.RESPONSE_ACK

# Latency buckets (seconds) of the per-transaction histogram.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Peer:
    """What we know of one address we send commands to."""

    __slots__ = (
        "address", "aad", "adev", "rto", "in_flight", "cap", "queue", "acks", "state",
        "send_acks", "since", "heard", "timeouts",
    )

    def __init__(self, address: Address, rto: float, cap: int, send_acks: bool, now: float) -> None:
        self.address = address
        self.aad: float | None = None
        self.adev = 0.0
        self.rto = rto
        self.in_flight = 0
        self.cap = cap
        self.queue: deque[_Outgoing] = deque()
        self.acks: list[int] = []
        self.state = PeerState.REACHABLE
        self.send_acks = send_acks
        self.since = now  # when the state last changed
        self.heard: float | None = None  # when a response last came from the address
        self.timeouts = 0  # transactions to it that got no final response


class _Outgoing:
    """Commands sent in one datagram, retransmitted together."""

    __slots__ = (
        "commands", "waiting", "address", "peer", "datagram", "first_sent", "transmissions",
        "delay", "deadline", "provisional",
    )

    def __init__(self, commands: list[Outgoing], address: Address, peer: _Peer) -> None:
        self.commands = commands
        self.waiting: dict[int, tuple[Outgoing, Waiter]] = {}
        self.address = address
        self.peer = peer
        self.datagram = b""
        self.first_sent = 0.0
        self.transmissions = 0
        self.delay = 0.0
        self.deadline: float | None = None  # when _retransmit is due; None when done
        self.provisional = False


class _Incoming:
    """A command received here: executing, queued, or answered."""

    __slots__ = (
        "key", "state", "datagram", "address", "done_at", "command", "timer", "provisional_sent",
        "provisional_timer",
    )

    EXECUTING = 0
    QUEUED = 1
    DONE = 2

    def __init__(self, key: Any, command: Command | None, address: Address) -> None:
        self.key = key
        self.state = _Incoming.EXECUTING
        self.datagram: bytes | None = None
        self.address = address
        self.done_at = 0.0
        self.command = command
        self.timer: IDelayedCall | None = None
        self.provisional_sent = False
        self.provisional_timer: IDelayedCall | None = None


class _AckWait:
    """A final response after a provisional one, resent until C{000} arrives."""

    __slots__ = ("key", "address", "first_sent", "delay", "timer")

    def __init__(self, key: Any, address: Address, now: float, delay: float) -> None:
        self.key = key
        self.address = address
        self.first_sent = now
        self.delay = delay
        self.timer: IDelayedCall | None = None


# An answered command in the history is the tuple (datagram or None once
# acknowledged, time answered, the source it was answered to).  A tuple of atoms is untracked by the
# garbage collector, so the 30 s of history (600,000 entries at 20,000
# transactions/s) costs full collections nothing; commands still executing
# are _Incoming objects.


@implementer(ITransactionSender)
class TransactionLayer:
    """
    Reliable MGCP transactions over an unreliable datagram writer.

    @param clock: the only clock (a reactor, or a L{task.Clock} in tests).
    @param write: C{write(datagram, address)}, usually the transport's.
    @param handler: executes incoming commands.
    @param role: L{Role}, for duplicate keys.
    @param listener: told of peer health changes, or None.
    @param random: C{uniform(a, b)} source for jitter, injectable for tests.
    @param allocator: transaction ids; by default a L{TransactionIdAllocator}
        (unpredictable ids); ids still in flight are skipped here.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        write: Callable[[bytes, Address], Any],
        handler: ICommandHandler,
        role: Role,
        config: TransactionConfig = TransactionConfig(),
        listener: IPeerListener | None = None,
        random: Callable[[float, float], float] = random.uniform,
        allocator: IdAllocator | None = None,
    ) -> None:
        self._clock = clock
        self._write = write
        self._handler = ICommandHandler(handler)
        self.role = role
        self.config = config
        self._listener = listener
        self._uniform = random
        self._pending: dict[int, _Outgoing] = {}
        self._allocate = (allocator if allocator is not None else TransactionIdAllocator()).allocate
        self._peers: dict[Address, _Peer] = {}
        self._peer_options: dict[Address, bool] = {}
        self._history: dict[Any, _Incoming | tuple[bytes | None, float, Address]] = {}
        self._expiry: deque[tuple[float, Any]] = deque()  # (time answered, key), in order
        self._sweeper: IDelayedCall | None = None
        self._ack_waits: dict[tuple[Address, int], _AckWait] = {}
        self._executing = 0
        self._incoming_queue: deque[tuple[_Incoming, Command, Address]] = deque()
        self._gateway_role = role is Role.GATEWAY
        self._trace = config.trace
        binding = config.response_binding
        if binding is None:
            binding = ResponseBinding.HOST if self._gateway_role else ResponseBinding.ADDRESS
        self._bind_host_only = binding is ResponseBinding.HOST
        self._noisy = PeerLogLimiter(clock, self.log, config.log_burst, config.log_window)
        # Retransmission deadlines of commands in flight, in a heap served by
        # one reactor timer: a callLater and a cancel per command cost more
        # than the rest of the bookkeeping.  Entries of answered commands
        # stay in the heap (their deadline no longer matches) until popped.
        self._deadlines: list[tuple[float, int, _Outgoing]] = []
        self._deadline_seq = 0
        self._wakeup: IDelayedCall | None = None
        self._wakeup_at = 0.0
        self._last_wakeup = float("-inf")
        self.counters: Counter[str] = Tally()
        # Per verb and per code, keyed by the verb or code itself (a tuple key
        # would be built and hashed per message).
        self.sent: Counter[Any] = Tally()  # commands sent, by verb
        self.received: Counter[Any] = Tally()  # commands received, by verb
        self.responses_received: Counter[int] = Tally()  # by code
        self.responses_sent: Counter[int] = Tally()  # by code
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self._stopped = False
        # Asked before a command is sent or retransmitted, when set: a call
        # agent of a cluster may command gateways only while its lease runs.
        self.may_command: Callable[[], bool] | None = None
        # Per verb (as on the wire), the FastPath that may answer its commands (set_fast_path).
        self._fast_paths: dict[bytes, tuple[Verb, FastPath]] = {}

    # -- sending -------------------------------------------------------

    def allocate_transaction_id(self) -> int:
        """A fresh id from the allocator, not one of a transaction still in flight."""
        pending = self._pending
        txid = self._allocate()
        while txid in pending:
            txid = self._allocate()
        return txid

    def set_fast_path(self, verb: Verb, fast: FastPath | None) -> None:
        """
        Commands of C{verb} are first offered, as bytes, to C{fast} (None:
        no longer), for a handler that answers some of them, thousands a
        second, at less than the cost of decoding them (the call agent's
        overload guard shedding new calls at their first NTFY).  See
        L{_fast_command}.
        """
        if fast is None:
            self._fast_paths.pop(verb.value.encode(), None)
        else:
            self._fast_paths[verb.value.encode()] = (verb, fast)

    def set_peer_options(self, address: Address, *, response_acks: bool) -> None:
        """Per-peer quirks (whether C{K:} may be sent to it)."""
        self._peer_options[as_address(address)] = response_acks
        peer = self._peers.get(as_address(address))
        if peer is not None:
            peer.send_acks = response_acks

    def send_command(self, command: Command, address: Address) -> Deferred[Response]:
        """
        Send one command; the Deferred fires with its final response or fails
        with L{TransactionTimeout}.  A command whose transaction id is 0 gets
        a fresh one.
        """
        return self.send_commands((command,), address)[0]

    def send(self, command: Outgoing, address: Address, waiter: Waiter) -> None:
        """
        Send one command as L{send_command} does, its outcome to C{waiter}
        (usually L{Callbacks}) instead of a Deferred's: called back with the
        final response, or errbacked with L{TransactionTimeout},
        L{TransactionAborted} (possibly at once: a fenced agent).
        C{command} may be L{Encoded}.
        """
        if self._stopped:
            raise TransactionAborted("the transaction layer is stopped")
        if self._fenced():
            self.counters["commands_refused"] += 1
            waiter.errback(_refused(command))
            return
        if not command.transaction_id:
            command = command.with_transaction_id(self.allocate_transaction_id())  # type: ignore[union-attr]
        out = self._outgoing(address)
        self._add(out, command, waiter)
        self._launch(out, send=True)

    def send_commands(
        self, commands: Iterable[Command], address: Address
    ) -> list[Deferred[Response]]:
        """
        Send commands piggybacked in one datagram: they are retransmitted
        together (in-order delivery and fate sharing, RFC 3435 §3.5.5).
        """
        if self._stopped:
            raise TransactionAborted("the transaction layer is stopped")
        if self._fenced():
            self.counters["commands_refused"] += 1
            return [fail(_refused(c)) for c in commands]
        out = self._outgoing(address)
        deferreds = []
        for command in commands:
            if not command.transaction_id:
                command = command.with_transaction_id(self.allocate_transaction_id())
            d: Deferred[Response] = Deferred(partial(self._cancel, command.transaction_id))
            self._add(out, command, d)
            deferreds.append(d)
        if out.commands:
            self._launch(out, send=True)
        return deferreds

    def _add(self, out: _Outgoing, command: Outgoing, waiter: Waiter) -> None:
        """Make C{command} (with its id) one of C{out}'s, in flight under its id."""
        txid = command.transaction_id
        if txid in self._pending and not self._gives_way(txid):
            raise ValueError(f"transaction {txid} is already in flight")
        out.commands.append(command)
        out.waiting[txid] = (command, waiter)
        self._pending[txid] = out

    def _outgoing(self, address: Address) -> _Outgoing:
        if type(address) is not tuple:
            address = as_address(address)
        peer = self._peers.get(address)
        if peer is None:
            peer = self._new_peer(address)
        return _Outgoing([], address, peer)

    def _launch(self, out: _Outgoing, send: bool) -> bool:
        """First transmission, or the peer's queue when its cap is reached: True when sent."""
        peer = out.peer
        if peer.in_flight >= peer.cap:
            peer.queue.append(out)
            self.counters["queued_for_peer"] += 1
            return False
        self._transmit_first(out, send)
        return True

    def _start_after(
        self, after: tuple[tuple[Outgoing, Waiter], ...], address: Address, ride: bool
    ) -> list[_Outgoing]:
        """
        Start the transactions of a L{Reply}'s C{after} commands, each its
        own bundle; returns those whose first transmission is for the
        caller to send (C{ride}: in the response's datagram).
        """
        riders = []
        for command, d in after:
            if d.called:
                continue  # cancelled by its owner before we could send it
            if self._stopped:
                d.errback(TransactionAborted(f"{command.verb} {command.transaction_id}: stopped"))
                continue
            if self.may_command is not None and not self.may_command():  # _fenced()
                self.counters["commands_refused"] += 1
                d.errback(_refused(command))
                continue
            if not command.transaction_id:
                command = command.with_transaction_id(self.allocate_transaction_id())  # type: ignore[union-attr]
            txid = command.transaction_id
            if txid in self._pending and not self._gives_way(txid):
                d.errback(ValueError(f"transaction {txid} is already in flight"))
                continue
            out = self._outgoing(address)
            out.commands.append(command)
            out.waiting[txid] = (command, d)
            self._pending[txid] = out
            if self._launch(out, send=not ride):
                riders.append(out)
        return riders if ride else []

    def _new_peer(self, address: Address) -> _Peer:
        send_acks = self._peer_options.get(address, self.config.response_acks)
        peer = _Peer(address, self.config.initial_rto, self.config.max_in_flight, send_acks, self._clock.seconds())
        self._peers[address] = peer
        return peer

    def _transmit_first(self, out: _Outgoing, send: bool = True) -> None:
        peer = out.peer
        commands = out.commands
        if len(commands) == 1:
            only = commands[0]
            data = only.datagram if type(only) is Encoded else encode(only)
        else:
            data = _wire_form(commands)
        if peer.acks and peer.send_acks:
            # K: goes first after the command line (its canonical place):
            # splice it into the bytes rather than rebuild and re-encode the
            # command, which cost a third of the layer's time per command.
            line_end = data.index(b"\r\n") + 2
            data = b"%sK: %s\r\n%s" % (data[:line_end], _format_acks(peer.acks), data[line_end:])
            peer.acks = []
        out.datagram = data
        now = self._clock.seconds()
        out.first_sent = now
        out.transmissions = 1
        out.delay = delay = peer.rto
        peer.in_flight += 1
        sent = self.sent
        for command in commands:
            sent[command.verb] += 1
        if self._trace:
            for command in commands:
                self.log.debug(
                    "sent {verb} {txid} {endpoint} to {peer}",
                    verb=str(command.verb), txid=command.transaction_id,
                    endpoint=command.endpoint, peer=out.address,
                )
        if send:
            self._send(data, out.address)
        # _arm, inlined (once per command sent)
        deadline = out.deadline = now + delay
        self._deadline_seq += 1
        heapq.heappush(self._deadlines, (deadline, self._deadline_seq, out))
        if self._wakeup is None or deadline < self._wakeup_at:
            self._schedule_wakeup(now)

    # Granularity of the shared timer: wake-ups are at least this far apart,
    # so a stream of commands costs at most 100 wake-ups a second; a
    # retransmission may be up to 10 ms late, against a timer of >= 100 ms.
    WAKEUP_GRANULARITY = 0.01

    def _arm(self, out: _Outgoing, now: float, delay: float) -> None:
        deadline = now + delay
        out.deadline = deadline
        self._deadline_seq += 1
        heapq.heappush(self._deadlines, (deadline, self._deadline_seq, out))
        if self._wakeup is None or deadline < self._wakeup_at:
            self._schedule_wakeup(now)

    def _schedule_wakeup(self, now: float) -> None:
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        self._wakeup = None
        if not self._deadlines or self._stopped:
            return
        at = max(self._deadlines[0][0], self._last_wakeup + self.WAKEUP_GRANULARITY)
        self._wakeup_at = at
        self._wakeup = self._clock.callLater(max(at - now, 0.0), self._wake)

    def _wake(self) -> None:
        self._wakeup = None
        now = self._clock.seconds()
        self._last_wakeup = now
        heap = self._deadlines
        due = []
        while heap and heap[0][0] <= now + 1e-9:
            deadline, _, out = heapq.heappop(heap)
            if out.deadline == deadline:
                due.append(out)
        for out in due:
            if out.deadline is not None and out.waiting:
                self._retransmit(out)
        self._schedule_wakeup(now)

    def _disarm(self, out: _Outgoing) -> None:
        out.deadline = None
        if not self._pending and self._wakeup is not None:
            # Nothing in flight: drop the dead entries and the wake-up.
            self._deadlines.clear()
            if self._wakeup.active():
                self._wakeup.cancel()
            self._wakeup = None

    def _retransmit(self, out: _Outgoing) -> None:
        out.deadline = None
        if self._drop_abandoned(out):
            return
        config = self.config
        now = self._clock.seconds()
        elapsed = now - out.first_sent
        repetitions = out.transmissions - 1
        if out.provisional:
            # A 1xx arrived: the peer is working on it.  Retransmit every
            # LONGTRAN until T-MAX; wait up to 2 * T-HIST in all (§3.5.6).
            limit = 2 * config.t_hist
            if elapsed >= limit:
                self._time_out(out)
                return
            if elapsed + 1e-9 < config.t_max:
                self._repeat(out)
            self._arm(out, now, min(config.longtran, limit - elapsed))
            return
        give_up = config.t_max if config.give_up is None else config.give_up
        max_repeats = config.max_retransmissions
        if elapsed >= give_up - 1e-9 or (max_repeats is not None and repetitions >= max_repeats):
            self._time_out(out)
            return
        if elapsed < config.t_max - 1e-9:
            self._repeat(out)
            repetitions += 1
            peer = out.peer
            if repetitions == config.max1 and peer.state is PeerState.REACHABLE:
                self._set_peer_state(peer, PeerState.SUSPECT)
            elif repetitions == config.max2 and peer.state is not PeerState.DISCONNECTED:
                self._set_peer_state(peer, PeerState.DISCONNECTED)
            out.delay *= 2
            interval = min(self._uniform(0.5, 1.0) * out.delay, config.rto_max)
        else:
            interval = give_up - elapsed  # T-MAX passed: only wait now
        self._arm(out, now, min(interval, max(give_up - elapsed, 0.0)))

    def _fenced(self) -> bool:
        """Whether C{may_command} forbids sending commands now (a cluster's agent that is not active)."""
        return self.may_command is not None and not self.may_command()

    def _repeat(self, out: _Outgoing) -> None:
        if self._fenced():
            self.counters["retransmissions_refused"] += 1
            return
        out.transmissions += 1
        self.counters["retransmissions"] += 1
        if self._trace:
            self.log.debug(
                "retransmission {n} of {txids} to {peer}",
                n=out.transmissions - 1, txids=list(out.waiting), peer=out.address,
            )
        self._send(out.datagram, out.address)

    def _time_out(self, out: _Outgoing) -> None:
        peer = out.peer
        self._finish_outgoing(out)
        peer.timeouts += 1
        if not out.provisional and peer.state is not PeerState.DISCONNECTED:
            # (After a provisional response the peer was heard: the
            # transaction failed, the peer did not go silent.)
            self._set_peer_state(peer, PeerState.DISCONNECTED)
        waiting = list(out.waiting.values())
        out.waiting.clear()
        for command, d in waiting:
            self._pending.pop(command.transaction_id, None)
            if d.called:
                continue  # abandoned by its owner (see Reply.after)
            self.counters["timeouts"] += 1
            self.log.info(
                "{verb} {txid} to {peer} timed out after {n} transmissions",
                verb=str(command.verb), txid=command.transaction_id, peer=out.address,
                n=out.transmissions,
            )
            d.errback(TransactionTimeout(_as_command(command), out.address, out.transmissions))

    def _finish_outgoing(self, out: _Outgoing) -> None:
        """The bundle is done: free its slot and send what was queued."""
        self._disarm(out)
        peer = out.peer
        if out.transmissions:
            peer.in_flight -= 1
        while peer.queue and peer.in_flight < peer.cap:
            queued = peer.queue.popleft()
            if queued.waiting and not self._drop_abandoned(queued):
                self._transmit_first(queued)

    def _gives_way(self, txid: int) -> bool:
        """
        A transaction in flight under C{txid} that its owner abandoned (see
        L{_drop_abandoned}) ends now, so that the id can be sent again.
        """
        _, d = self._pending[txid].waiting[txid]
        if not d.called:
            return False
        self.counters["abandoned"] += 1
        self._cancel(txid, d)
        return True

    def _drop_abandoned(self, out: _Outgoing) -> bool:
        """
        Forget the commands whose Deferred its owner fired already (a
        cancelled L{Reply.after} one: the layer did not create it, so no
        canceller told us); True when nothing is left to send.
        """
        for txid, (_, d) in list(out.waiting.items()):
            if d.called:
                self.counters["abandoned"] += 1
                self._cancel(txid, d)
        return not out.waiting

    def _cancel(self, txid: int, d: object = None) -> None:
        """The caller gave up on a command: stop retransmitting it."""
        out = self._pending.pop(txid, None)
        if out is None:
            return
        out.waiting.pop(txid, None)
        if not out.transmissions:
            # Still queued behind the peer's in-flight cap: never send it.
            out.commands = [c for c in out.commands if c.transaction_id != txid]
        if not out.waiting:
            if out.transmissions:
                self._finish_outgoing(out)
            else:
                try:
                    out.peer.queue.remove(out)
                except ValueError:
                    pass

    def _set_peer_state(self, peer: _Peer, state: PeerState) -> None:
        peer.state = state
        peer.since = self._clock.seconds()
        self.log.info("peer {peer} is {state}", peer=peer.address, state=state.value)
        if self._listener is not None:
            self._listener.peer_state_changed(peer.address, state)

    # -- receiving -----------------------------------------------------

    def datagram_received(self, data: bytes, address: Address) -> None:
        """Handle one datagram: every message in it, in order."""
        if self._fast_paths and self._fast_command(data, address):
            return
        for message in decode(data):
            kind = type(message)
            if kind is Response:
                self._response_received(message, address)  # type: ignore[arg-type]
            elif kind is Command:
                self._command_received(message, address)  # type: ignore[arg-type]
            else:
                self._malformed_received(message, address)  # type: ignore[arg-type]

    def _response_received(self, response: Response, address: Address) -> None:
        counters = self.counters
        txid = response.transaction_id
        code = response.code
        if code < 100:
            counters["acks_received"] += 1
            wait = self._ack_waits.pop((address, txid), None)
            if wait is not None and wait.timer is not None:
                wait.timer.cancel()
                wait.timer = None
            return
        out = self._pending.get(txid)
        if out is None:
            if code >= 200 and ParamCode.RESPONSE_ACK in response.params:
                self._send_ack(txid, address)  # our earlier 000 was lost
            counters["dropped_unknown_response"] += 1
            return
        sent_to = out.address
        # Only the peer the command went to may answer it (a response from
        # elsewhere is a guess at the id, or a forgery): _is_peer, inlined.
        if sent_to[0] != address[0] or (sent_to[1] != address[1] and not self._bind_host_only):
            counters["responses_wrong_peer"] += 1
            self._noisy.event(
                address, "responses from the wrong peer",
                "dropped {code} {txid} from {peer}: the command went to {sent_to}",
                code=int(code), txid=txid, sent_to=sent_to,
            )
            return
        peer = out.peer
        now = peer.heard = self._clock.seconds()
        self.responses_received[code] += 1
        if self._trace:
            self.log.debug(
                "received {code} {txid} from {peer}", code=int(code), txid=txid, peer=address
            )
        if code < 200:
            counters["provisional_received"] += 1
            if code == ReturnCode.TRANSACTION_QUEUED:
                self._throttle(peer)
            if not out.provisional:
                out.provisional = True
                self._arm(out, now, self.config.longtran)
            if peer.state is not PeerState.REACHABLE:
                self._set_peer_state(peer, PeerState.REACHABLE)  # it is working on it
            return
        command, d = out.waiting.pop(txid)
        del self._pending[txid]
        rtt = now - out.first_sent
        self.latency[bisect_left(LATENCY_BUCKETS, rtt)] += 1
        self.latency_sum += rtt
        config = self.config
        if out.transmissions == 1:
            if not out.provisional:
                # The TCP-style estimator RFC 3435 §3.5.3 suggests (inlined:
                # one sample per transaction).
                aad = peer.aad
                if aad is None:
                    aad = rtt
                    adev = rtt / 2
                else:
                    adev = peer.adev + (abs(rtt - aad) - peer.adev) / 4
                    aad += (rtt - aad) / 8
                peer.aad = aad
                peer.adev = adev
                rto = aad + config.rto_dev_factor * adev
                peer.rto = config.min_rto if rto < config.min_rto else rto if rto < config.rto_max else config.rto_max
        else:
            # Karn: no sample from a retransmitted transaction; keep the
            # backed-off timer until a clean one (RFC 3435 §4.3).
            peer.rto = min(max(out.delay, peer.rto), config.rto_max)
        if code == ReturnCode.OVERLOADED:
            self._throttle(peer)
        elif peer.cap < config.max_in_flight:
            peer.cap += 1
        if peer.send_acks:
            acks = peer.acks
            acks.append(txid)
            if len(acks) > config.max_acks:
                del acks[0]
        if _RESPONSE_ACK in response.params:
            self._send_ack(txid, address)
        if not out.waiting:
            if peer.queue or not out.transmissions:
                self._finish_outgoing(out)
            else:  # _finish_outgoing with nothing queued, inlined
                out.deadline = None
                peer.in_flight -= 1
                if not self._pending and self._wakeup is not None:
                    self._disarm(out)
        if peer.state is not PeerState.REACHABLE:
            self._set_peer_state(peer, PeerState.REACHABLE)
        if not d.called:  # else abandoned by its owner (see Reply.after)
            d.callback(response)

    def _throttle(self, peer: _Peer) -> None:
        """The peer is overloaded (101/409): halve what we keep in flight."""
        peer.cap = max(1, peer.cap // 2)
        self.counters["peer_throttled"] += 1

    def _send_ack(self, txid: int, address: Address) -> None:
        self.counters["acks_sent"] += 1
        self._send(b"000 %d\r\n" % txid, address)

    def _command_received(self, command: Command, address: Address) -> None:
        self.received[command.verb] += 1
        counters = self.counters
        # _key, inlined
        key = (
            command.transaction_id if self._gateway_role
            else (command.endpoint.rpartition("@")[2].lower(), command.transaction_id)
        )
        entry = self._history.get(key)
        if entry is not None:
            self._duplicate(entry, address)
            return
        if self._trace:
            self.log.debug(
                "received {verb} {txid} {endpoint} from {peer}",
                verb=str(command.verb), txid=command.transaction_id,
                endpoint=command.endpoint, peer=address,
            )
        acks = command.params.get(_RESPONSE_ACK)
        if acks:
            self._purge_acknowledged(key, acks, address)
        entry = _Incoming(key, command, address)
        self._history[key] = entry
        if self._executing >= self.config.high_water or self._incoming_queue:
            if len(self._incoming_queue) >= self.config.queue_limit:
                counters["overloaded"] += 1
                self._answer(entry, Response(ReturnCode.OVERLOADED, command.transaction_id, "Overloaded"))
                return
            entry.state = _Incoming.QUEUED
            self._incoming_queue.append((entry, command, address))
            counters["queued_incoming"] += 1
            self._send_provisional(entry, ReturnCode.TRANSACTION_QUEUED, address)
            return
        self._execute(entry, command, address)

    def _fast_command(self, data: bytes, address: Address) -> bool:
        """
        A datagram holding one command that a L{FastPath} of its verb
        answers from its bytes (True), or nothing done (False: it is
        decoded as usual).  The command is a transaction as any other
        (at most once, its response kept for duplicates, its C{after}
        commands started); only what the layer itself reads of a command
        is read here: its id, its endpoint (the history's key), and whether
        it confirms responses (C{K:}, then the usual way).  A fast path
        answers only commands whose every line it has read itself: the
        codec's checks are its to make.
        """
        verb_fast = self._fast_paths.get(data[:4])  # every verb is four letters
        if verb_fast is None:
            return False
        fields = data.split(b" ", 3)
        if len(fields) < 4 or len(fields[0]) != 4:
            return False
        verb, fast = verb_fast
        txid_text = fields[1]
        if (not txid_text.isdigit() or len(txid_text) > 9 or b"\n." in data or b"\nk:" in data
                or self._trace or self._stopped or self._executing >= self.config.high_water
                or self._incoming_queue):
            return False
        acks = None
        start = data.find(b"\nK:")
        if start >= 0:
            # The responses it confirms: read here, and the line left out of
            # what the fast path reads (it is the layer's, as in _command_received).
            end = data.find(b"\n", start + 1)
            acks = _parse_acks(data[start + 3:end]) if end > 0 else None
            if acks is None:
                return False
            data = data[:start + 1] + data[end + 1:]
        txid = int(txid_text)
        endpoint = fields[2].decode("ascii", "replace")
        key = txid if self._gateway_role else (endpoint.rpartition("@")[2].lower(), txid)
        entry = self._history.get(key)
        if entry is not None or not txid:
            return False  # a duplicate (or id 0): the usual way
        result = fast(data, txid, endpoint, address)
        if result is None:
            return False
        self.received[verb] += 1
        self.counters["fast_path"] += 1
        if acks:
            self._purge_acknowledged(key, acks, address)
        entry = _Incoming(key, None, address)
        self._history[key] = entry
        self._answer(entry, result)
        return True

    def _duplicate(self, entry: _Incoming | tuple[bytes | None, float, Address], address: Address) -> None:
        self.counters["duplicates"] += 1
        if isinstance(entry, tuple):
            if entry[0] is not None:
                self.counters["replays"] += 1
                self._send(entry[0], address)
            # else: acknowledged and purged; the id is still remembered, so
            # the late duplicate is silently discarded (§3.5.1).
        elif entry.state == _Incoming.QUEUED:
            self._send_provisional(entry, ReturnCode.TRANSACTION_QUEUED, address)
        else:
            self._send_provisional(entry, ReturnCode.TRANSACTION_EXECUTING, address)

    def _send_provisional(self, entry: _Incoming, code: ReturnCode, address: Address) -> None:
        self.counters["provisional_sent"] += 1
        entry.provisional_sent = True
        txid = entry.command.transaction_id if entry.command is not None else 0
        self._send(encode(Response(code, txid, code.default_comment)), address)

    def _purge_acknowledged(self, key: Any, ranges: tuple[tuple[int, int], ...], source: Address) -> None:
        """
        Drop responses the peer confirmed having; remember their ids.  Only
        responses we sent to that peer: K: holds between the peers that
        exchanged the transaction (RFC 3435 §3.5.1).  C{key} is the
        confirming command's (its domain is theirs).
        """
        history = self._history
        domain = None if self._gateway_role else key[0]
        for low, high in ranges:
            if high - low > 10_000:
                continue  # a range this wide is not one of ours; ignore it
            for txid in range(low, high + 1):
                key = txid if domain is None else (domain, txid)
                entry = history.get(key)
                if type(entry) is tuple and entry[0] is not None:
                    if not self._is_peer(entry[2], source):
                        self.counters["acks_wrong_peer"] += 1
                        continue
                    history[key] = (None, entry[1], entry[2])
                    self.counters["responses_purged"] += 1

    def _is_peer(self, expected: Address, address: Address) -> bool:
        """Whether C{address} speaks for the peer at C{expected} (see L{ResponseBinding})."""
        return expected[0] == address[0] and (self._bind_host_only or expected[1] == address[1])

    def _execute(self, entry: _Incoming, command: Command, address: Address) -> None:
        try:
            result = self._handler.command_received(command, address)
        except Unanswered:
            self._history.pop(entry.key, None)
            self.counters["unanswered"] += 1
            return
        except ProtocolError as e:
            result = Response(e.code, command.transaction_id, _comment(e.reason))
        except Exception:
            self.log.failure(
                "handler failed on {verb} {txid}", verb=str(command.verb), txid=command.transaction_id
            )
            result = Response(ReturnCode.TRANSIENT_ERROR, command.transaction_id, "Internal error")
        if isinstance(result, Deferred):
            self._executing += 1
            entry.timer = self._clock.callLater(
                self.config.execution_timeout, self._execution_timed_out, entry, result
            )
            if self.config.provisional_after is not None:
                entry.provisional_timer = self._clock.callLater(
                    self.config.provisional_after, self._maybe_provisional, entry
                )
            result.addCallbacks(
                self._deferred_answer, self._deferred_failure,
                callbackArgs=(entry,), errbackArgs=(entry,),
            )
        else:
            self._answer(entry, result)

    def _maybe_provisional(self, entry: _Incoming) -> None:
        entry.provisional_timer = None
        if entry.state == _Incoming.EXECUTING and not self._stopped:
            self._send_provisional(entry, ReturnCode.TRANSACTION_EXECUTING, entry.address)

    def _execution_timed_out(self, entry: _Incoming, d: Deferred[Any]) -> None:
        entry.timer = None
        self.log.warn(
            "handler did not answer {txid} in {timeout} s: answering 406",
            txid=entry.command.transaction_id if entry.command else None,
            timeout=self.config.execution_timeout,
        )
        d.cancel()

    def _deferred_answer(self, result: Response | Reply, entry: _Incoming) -> None:
        self._handler_done(entry)
        if entry.state != _Incoming.DONE:
            self._answer(entry, result)
        elif type(result) is Reply and result.after:
            # Answered already (the layer stopped waiting): the commands
            # still go, on their own.
            self._start_after(result.after, entry.address, ride=False)

    def _deferred_failure(self, failure: Failure, entry: _Incoming) -> None:
        self._handler_done(entry)
        if entry.state == _Incoming.DONE:
            return
        assert entry.command is not None
        txid = entry.command.transaction_id
        error = failure.value
        if isinstance(error, ProtocolError):
            response = Response(error.code, txid, _comment(error.reason))
        elif failure.check(CancelledError):
            response = Response(ReturnCode.TRANSACTION_TIMEOUT, txid, "Transaction timed out")
        else:
            self.log.failure("handler failed on {txid}", failure, txid=txid)
            response = Response(ReturnCode.TRANSIENT_ERROR, txid, "Internal error")
        self._answer(entry, response)

    def _handler_done(self, entry: _Incoming) -> None:
        self._executing -= 1
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        if entry.provisional_timer is not None:
            entry.provisional_timer.cancel()
            entry.provisional_timer = None
        queue = self._incoming_queue
        if queue and self._executing < self.config.low_water:
            while queue and self._executing < self.config.high_water:
                queued, command, address = queue.popleft()
                queued.state = _Incoming.EXECUTING
                self._execute(queued, command, address)

    def _answer(self, entry: _Incoming, result: Response | Reply) -> None:
        if type(result) is Reply:
            response = result.response
            before = result.before
            after = result.after
        else:
            response = result
            before = after = ()
        if self._stopped:
            if after:
                self._start_after(after, entry.address, ride=False)  # fails them: stopped
            return
        if entry.provisional_sent and response.code >= 200:
            # The final after a provisional asks for a 000 (§3.5.6).
            response = _with_empty_ack(response)
        datagram = encode((*before, response)) if before else encode(response)
        entry.state = _Incoming.DONE
        now = self._clock.seconds()
        key = entry.key
        if self._history.get(key) is entry:
            self._history[key] = (datagram, now, entry.address)
        self.responses_sent[response.code] += 1
        if self._trace:
            self.log.debug(
                "answered {code} {txid} to {peer}",
                code=int(response.code), txid=response.transaction_id, peer=entry.address,
            )
        riders = self._start_after(after, entry.address, ride=True) if after else None
        if riders:
            self.counters["piggybacked"] += len(riders)
            if len(riders) == 1:
                self._send(b"%s.\r\n%s" % (datagram, riders[0].datagram), entry.address)
            else:
                self._send(datagram + b"".join(b".\r\n" + out.datagram for out in riders), entry.address)
        else:
            self._send(datagram, entry.address)
        self._expiry.append((now, key))
        if self._sweeper is None:
            self._sweeper = self._clock.callLater(self.config.history_sweep, self._sweep)
        if entry.provisional_sent and response.code >= 200:
            wait = _AckWait(key, entry.address, now, self.config.initial_rto)
            self._ack_waits[(entry.address, response.transaction_id)] = wait
            wait.timer = self._clock.callLater(wait.delay, self._resend_final, wait, response.transaction_id)

    def _resend_final(self, wait: _AckWait, txid: int) -> None:
        wait.timer = None
        entry = self._history.get(wait.key)
        datagram = entry[0] if type(entry) is tuple else None
        now = self._clock.seconds()
        if datagram is None or now - wait.first_sent >= self.config.t_max:
            # Never acknowledged: give up quietly; a missing 000 must not
            # make the peer disconnected (§3.5.6).
            self._ack_waits.pop((wait.address, txid), None)
            return
        self.counters["final_retransmissions"] += 1
        self._send(datagram, wait.address)
        wait.delay *= 2
        interval = min(self._uniform(0.5, 1.0) * wait.delay, self.config.rto_max)
        wait.timer = self._clock.callLater(interval, self._resend_final, wait, txid)

    def _sweep(self) -> None:
        """Forget responses (and their ids) older than T-HIST."""
        self._sweeper = None
        deadline = self._clock.seconds() - self.config.t_hist
        expiry = self._expiry
        history = self._history
        while expiry and expiry[0][0] <= deadline:
            answered, key = expiry.popleft()
            entry = history.get(key)
            if type(entry) is tuple and entry[1] == answered:
                del history[key]
        if expiry:
            self._sweeper = self._clock.callLater(self.config.history_sweep, self._sweep)

    def _malformed_received(self, message: MalformedMessage, address: Address) -> None:
        counters = self.counters
        if not message.answerable:
            counters["dropped_malformed"] += 1
            self._noisy.event(
                address, "malformed messages", "dropped malformed message from {peer}: {reason}",
                reason=message.reason,
            )
            return
        counters["malformed_answered"] += 1
        self._noisy.event(
            address, "malformed messages", "answering {code} to malformed command {txid} from {peer}: {reason}",
            code=message.code, txid=message.transaction_id, reason=message.reason,
        )
        txid = message.transaction_id
        assert txid is not None
        key: Any = txid if self._gateway_role else (_domain_of(message.raw), txid)
        entry = self._history.get(key)
        if entry is not None:
            self._duplicate(entry, address)
            return
        entry = _Incoming(key, None, address)
        self._history[key] = entry
        self._answer(entry, message.error_response())

    # -- plumbing ------------------------------------------------------

    def _send(self, datagram: bytes, address: Address) -> None:
        try:
            self._write(datagram, address)
        except OSError as e:
            # ICMP errors surface here on connected sockets; the datagram is
            # lost like any other and retransmission deals with it.
            self.counters["write_errors"] += 1
            self.log.info("cannot send to {peer}: {error}", peer=address, error=e)

    def abandon(self) -> int:
        """
        Give up every command still waiting for an answer, sending nothing
        more for it: each fails with L{TransactionAborted}.  The layer goes
        on (a call agent of a cluster whose term as active ended).  Returns
        how many were abandoned.
        """
        for out in {id(o): o for o in self._pending.values()}.values():
            out.deadline = None
        self._deadlines.clear()
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        self._wakeup = None
        pending = list(self._pending.values())
        self._pending.clear()
        for peer in self._peers.values():
            peer.queue.clear()
            peer.in_flight = 0
        count = 0
        for out in {id(o): o for o in pending}.values():
            waiting = list(out.waiting.values())
            out.waiting.clear()
            for command, d in waiting:
                if not d.called:
                    count += 1
                    d.errback(TransactionAborted(f"{command.verb} {command.transaction_id}: abandoned"))
        self.counters["abandoned"] += count
        return count

    def stop(self) -> None:
        """Cancel every timer and fail what is still waiting (shutdown)."""
        self._stopped = True
        self.abandon()
        for entry in self._history.values():
            if type(entry) is _Incoming:
                for timer in (entry.timer, entry.provisional_timer):
                    if timer is not None and timer.active():
                        timer.cancel()
                entry.timer = entry.provisional_timer = None
        for wait in self._ack_waits.values():
            if wait.timer is not None:
                wait.timer.cancel()
        self._ack_waits.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._incoming_queue.clear()
        self._noisy.stop()

    # -- observation ---------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """
        Counters and per-peer state, as plain data for the admin and
        metrics: C{counters} maps C{"name"} or C{"name verb/code"} to counts.
        """
        counters: dict[str, int] = dict(self.counters)
        if self._noisy.suppressed_total:
            counters["log_lines_suppressed"] = self._noisy.suppressed_total
        for name, table in (
            ("commands_sent", self.sent),
            ("commands_received", self.received),
            ("responses_received", self.responses_received),
            ("responses_sent", self.responses_sent),
        ):
            for key, value in table.items():
                counters[f"{name} {int(key) if isinstance(key, int) else key}"] = value
        return {
            "role": self.role.value,
            "counters": counters,
            "pending": len(self._pending),
            "history": len(self._history),
            "executing": self._executing,
            "queued_incoming": len(self._incoming_queue),
            "latency_buckets": list(LATENCY_BUCKETS),
            "latency_counts": list(self.latency),
            "latency_sum": self.latency_sum,
            "peers": {
                f"{peer.address[0]}:{peer.address[1]}": {
                    "rto": peer.rto,
                    "aad": peer.aad,
                    "adev": peer.adev,
                    "in_flight": peer.in_flight,
                    "cap": peer.cap,
                    "queued": len(peer.queue),
                    "state": peer.state.value,
                    "state_since": peer.since,
                    "last_response": peer.heard,
                    "timeouts": peer.timeouts,
                }
                for peer in self._peers.values()
            },
        }

    def peer_state(self, address: Address) -> PeerState:
        peer = self._peers.get(as_address(address))
        return PeerState.REACHABLE if peer is None else peer.state

    def peer_rto(self, address: Address) -> float:
        peer = self._peers.get(as_address(address))
        return self.config.initial_rto if peer is None else peer.rto


def _format_acks(txids: list[int]) -> bytes:
    """The K: value acknowledging C{txids}: ranges of consecutive ids."""
    if len(txids) == 1:
        return b"%d" % txids[0]
    ordered = sorted(set(txids))
    parts = []
    start = previous = ordered[0]
    for txid in ordered[1:]:
        if txid != previous + 1:
            parts.append(b"%d" % start if start == previous else b"%d-%d" % (start, previous))
            start = txid
        previous = txid
    parts.append(b"%d" % start if start == previous else b"%d-%d" % (start, previous))
    return b", ".join(parts)


def _parse_acks(text: bytes) -> tuple[tuple[int, int], ...] | None:
    """A C{K:} value (C{1203, 1205-1207}) as ranges; None when it is not one (the codec then judges it)."""
    ranges = []
    for part in text.split(b","):
        low, dash, high = part.strip().partition(b"-")
        if not dash:
            high = low
        if not (low.isdigit() and high.isdigit() and len(low) <= 9 and len(high) <= 9):
            return None
        first, last = int(low), int(high)
        if last < first:
            return None
        ranges.append((first, last))
    return tuple(ranges)


def _with_empty_ack(response: Response) -> Response:
    if response.params.get(ParamCode.RESPONSE_ACK) == ():
        return response
    items = dict(response.params)
    items[ParamCode.RESPONSE_ACK] = ()
    return trusted_response(
        response.code, response.transaction_id, response.comment, Parameters(items),
        response.sdp, response.second_sdp, response.package,
    )


def _refused(command: Outgoing) -> TransactionAborted:
    return TransactionAborted(f"{command.verb}: this agent may not command gateways now")


def _comment(reason: str) -> str:
    """A response commentary: printable ASCII, short (RFC 3435 App. A)."""
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in reason)
    return text[:80]


def _domain_of(raw: str) -> str:
    parts = raw.split(None, 3)
    if len(parts) >= 3:
        return parts[2].rpartition("@")[2].lower()
    return ""
