# -*- test-case-name: tests.test_load_lean -*-
"""
The lean generator's gateways: the gateway side of MGCP (RFC 3435) for
analog lines, written for CPU per message rather than for completeness,
so that a load run measures the agent and not the tool (issue 15).

What makes it cheap:

  - a datagram is split into messages and lines with C{bytes} methods; only
    the header line and the parameter lines are read, the SDP only for its
    presence.  Requests (C{R:}), signal lists (C{S:}) and digit maps
    (C{D:}) go through the codec's parsers once per distinct text and are
    kept compiled (a few dozen texts in a run);
  - every answer is a C{bytes} template filled in with C{%}: the
    transaction id, the connection id, the endpoint's canned SDP (built
    once per line);
  - no Deferred, no per-transaction timer: the NTFYs and the RSIP in
    flight sit in a dict and one heap of due times that the owner's tick
    (L{LeanGateway.tick}) walks; answered ones are skipped lazily;
  - on a real socket, datagrams go out with the socket's C{sendto}.

What it still does, so that the agent cannot tell it from a gateway:

  - RSIP (C{restart}) at start, after an optional random delay (MWD);
  - AUEP answers C{I}, C{N}, C{ES}, C{X}, C{R}, C{S}, C{D}, C{O}, C{E}
    and C{RM} (unknown items left out), and the wildcard with C{Z:}
    lines; RQNT, CRCX, MDCX, DLCX, AUCX and EPCF get the codes of RFC 3435:
    C{I:} and the SDP on CRCX, the SDP on MDCX, C{P:} statistics on a DLCX
    of one connection; 500 for an unknown endpoint, 503 for a wildcard
    other than AUEP/DLCX, 504 for other verbs, 515/516 for wrong
    connection or call ids, 517 for a bad mode, 502 past 8 connections,
    401/402 for hook preconditions, 519 for a C{D} action without a map,
    and the codec's codes for what it cannot parse;
  - notification requests: requested events with the actions N, A, D, I
    and K, embedded requests C{E(R(..),S(..),D(..))} activated on their
    event, digit maps matched digit by digit, time-out signals stopped by a
    requested event (unless K) and by the next C{S:}; NTFY with the C{X:}
    of the current request and the observed events in order; the endpoint
    quarantines events while its NTFY is in flight and, in step mode,
    until the next request (§4.4.1), then processes them (C{Q: process})
    or drops them (C{Q: discard});
  - its NTFYs and RSIPs are retransmitted with exponential backoff and
    jitter (initial 200 ms, doubling, drawn in [T/2, T], capped at 4 s)
    until T-MAX (20 s); a provisional response (1xx) moves the next one to
    LONGTRAN (5 s); a final response with an empty C{K:} gets its C{000};
  - duplicate commands are answered from a response cache (at most once
    execution, §3.5.1) that keeps each answer at least T-HIST (30 s); a C{K:}
    from the agent drops the answers it confirms but keeps their ids, so a
    late copy is still recognised and silently dropped; the final
    responses it receives are confirmed with C{K:} in its next command.

What it leaves out: connections carry no media (canned SDP), no
inter-digit timer (C{T} in a map is never produced: the tool dials whole
numbers), no hook-flash, no OO signals, no piggybacking of its own, and no
quarantine of events the endpoint was not asked about (C{T:}).
"""

from __future__ import annotations

import heapq
import re
from random import Random
from typing import Any, Callable, Optional, TypeVar

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from ..gateway.packages import Hook, SignalType, lookup
from ..mgcp import (
    Action,
    DigitMap,
    EmbeddedRequest,
    MatchStatus,
    MGCPError,
    RequestedEvent,
    parse_requested_events,
    parse_signal_requests,
)

__all__ = ["LeanGateway", "LeanEndpoint", "LeanTimers", "HOOK_OFF", "HOOK_ON", "DIGIT_EVENTS"]

#: The events a line produces, as they appear in C{O:}.
HOOK_OFF = b"L/hd"
HOOK_ON = b"L/hu"
DIGIT_EVENTS = {d: b"D/" + d.encode() for d in "0123456789*#ABCD"}

_MODES = frozenset((b"sendrecv", b"recvonly", b"sendonly", b"inactive", b"loopback", b"conttest",
                    b"netwloop", b"netwtest", b"confrnce", b"data", b"replcate"))
_SENDRECV = b"sendrecv"
_MAX_CONNECTIONS = 8
_COMPLETE = MatchStatus.COMPLETE
_NO_MATCH = MatchStatus.NO_MATCH
_STATS = b"P: PS=0, OS=0, PR=0, OR=0, PL=0, JI=0, LA=0\r\n"
_CACHE_LIMIT = 4096  # compiled requests and signal lists kept


class LeanTimers:
    """
    The retransmission policy (RFC 3435 §4.3), with the simulated gateway's
    defaults.  One value object shared by every gateway of a run.
    """

    __slots__ = ("initial_rto", "rto_max", "t_max", "t_hist", "longtran")

    def __init__(self, initial_rto: float = 0.2, rto_max: float = 4.0, t_max: float = 20.0,
                 t_hist: float = 30.0, longtran: float = 5.0) -> None:
        self.initial_rto = initial_rto
        self.rto_max = rto_max
        self.t_max = t_max
        self.t_hist = t_hist
        self.longtran = longtran


class _Refused(Exception):
    """A command refused with an RFC 3435 return code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


# -- compiled requests ---------------------------------------------------------


class _Actions:
    """What one requested event asks for: action letters and an embedded request."""

    __slots__ = ("notify", "accumulate", "digit_map", "keep_signals", "embedded")

    def __init__(self, letters: str, embedded: Optional[_Request]) -> None:
        self.notify = "N" in letters
        self.accumulate = "A" in letters
        self.digit_map = "D" in letters
        self.keep_signals = "K" in letters
        self.embedded = embedded


class _Request:
    """
    A requested-events list compiled for the events a line produces: the
    actions by observed-event name.  C{armed}: exactly C{L/hd}, what an
    idle line holds.  An embedded request carries its signals and map.
    """

    __slots__ = ("text", "by_event", "armed", "needs_on", "needs_off", "uses_map",
                 "signals", "digit_map", "digit_map_text")

    def __init__(self, text: bytes, items: tuple[RequestedEvent, ...]) -> None:
        self.text = text
        self.by_event: dict[bytes, _Actions] = {}
        self.needs_on = self.needs_off = self.uses_map = False
        self.signals: Optional[_Signals] = None
        self.digit_map: Optional[DigitMap] = None
        self.digit_map_text = b""
        for item in items:
            name = item.name
            if name.connection is not None:
                continue  # connection events: a line without media never has them
            package, event = name.package, name.name
            covered = _covered(package, event)
            letters = ""
            embedded = None
            for action in item.effective_actions:
                if isinstance(action, Action):
                    letters += action.value
                elif isinstance(action, EmbeddedRequest):
                    embedded = _compile_embedded(action)
                else:
                    raise _Refused(518, f"unsupported extension action {action}")
            if "D" in letters:
                if not all(e.startswith(b"D/") for e in covered):
                    raise _Refused(523, f"the D action needs digits, not {name}")
                self.uses_map = True
            if event == "hd":
                self.needs_on = True
            elif event in ("hu", "hf"):
                self.needs_off = True
            actions = _Actions(letters, embedded)
            for observed in covered:
                self.by_event.setdefault(observed, actions)
        self.armed = len(items) == 1 and list(self.by_event) == [HOOK_OFF]


def _covered(package: Optional[str], event: str) -> tuple[bytes, ...]:
    """The observed-event names (of those a line produces) that C{package/event} requests."""
    if event == "all":
        if package in (None, "L"):
            return (HOOK_OFF, HOOK_ON)
        if package == "D":
            return tuple(DIGIT_EVENTS.values())
        if package == "*":
            return (HOOK_OFF, HOOK_ON, *DIGIT_EVENTS.values())
        raise _Refused(518, f"unsupported package {package}")
    if event.startswith("["):
        if package not in (None, "D"):
            raise _Refused(522, f"no event {package}/{event}")
        return tuple(DIGIT_EVENTS[s] for s in _range_symbols(event) if s in DIGIT_EVENTS)
    if package in (None, "D") and event == "X":
        return tuple(DIGIT_EVENTS[d] for d in "0123456789")
    if package != "*" and lookup(package, event) is None:
        raise _Refused(518 if package not in (None, "L", "D", "G", "B") else 522,
                       f"no event {package}/{event}")
    if event == "hd":
        return (HOOK_OFF,)
    if event == "hu":
        return (HOOK_ON,)
    if package in (None, "D", "*") and event in DIGIT_EVENTS:
        return (DIGIT_EVENTS[event],)
    return ()  # a known event a line without media never produces (L/hf, G/ft...)


def _range_symbols(text: str) -> set[str]:
    """C{[0-9#*T]} as its symbols (ranges only between digits)."""
    body = text[1:-1]
    out: set[str] = set()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "X":
            out.update("0123456789")
        elif ch.isdigit() and i + 2 < len(body) and body[i + 1] == "-" and body[i + 2].isdigit():
            out.update(str(d) for d in range(int(ch), int(body[i + 2]) + 1))
            i += 2
        else:
            out.add(ch)
        i += 1
    return out


def _compile_embedded(embedded: EmbeddedRequest) -> _Request:
    from ..mgcp import format_requested_events

    request = _Request(format_requested_events(embedded.requested_events).encode(),
                       embedded.requested_events)
    signals = embedded.signal_requests
    request.signals = _Signals(", ".join(str(s) for s in signals).encode(), signals)
    if embedded.digit_map is not None:
        request.digit_map = embedded.digit_map
        request.digit_map_text = str(embedded.digit_map).encode()
    return request


class _Signals:
    """A signal list compiled: the time-out signals it turns on, and hook preconditions."""

    __slots__ = ("text", "timeout", "needs_on", "needs_off")

    def __init__(self, text: bytes, signals: tuple[Any, ...]) -> None:
        self.text = text
        timeout = []
        self.needs_on = self.needs_off = False
        for signal in signals:
            name = signal.name
            found = lookup(name.package, name.name)
            if found is None or found[1].signal is None:
                code = 518 if name.package not in (None, "L", "D", "G", "B") else 522
                raise _Refused(code, f"no signal {name}")
            package, symbol = found
            if symbol.signal_hook is Hook.ON and name.connection is None:
                self.needs_on = True
            elif symbol.signal_hook is Hook.OFF and name.connection is None:
                self.needs_off = True
            if symbol.signal is SignalType.TIME_OUT:
                key = f"{package.name}/{symbol.name}"
                timeout.append(key if name.connection is None else f"{key}@{name.connection}")
        self.timeout = frozenset(timeout)


_NO_SIGNALS = _Signals(b"", ())
_NOTHING = _Request(b"", ())

_requests: dict[bytes, _Request] = {}
_signal_lists: dict[bytes, _Signals] = {}
_digit_maps: dict[bytes, DigitMap] = {}


_Compiled = TypeVar("_Compiled")


def _compile(cache: dict[bytes, _Compiled], key: bytes, text: bytes, build: Callable[[str], _Compiled],
             code: int) -> _Compiled:
    """Build from C{text} what C{cache} keeps under C{key}; a refusal with the parser's code."""
    try:
        found = build(text.decode("ascii"))
    except (MGCPError, ValueError) as e:  # UnicodeDecodeError and DigitMapError are ValueErrors
        raise _Refused(getattr(e, "code", code), str(e)) from None
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = found
    return found


def compile_request(text: bytes) -> _Request:
    """C{R:} compiled, cached by its text (a run sends a handful of distinct ones)."""
    found = _requests.get(text)
    if found is not None:
        return found
    return _compile(_requests, text, text, lambda t: _Request(text, parse_requested_events(t)), 400)


def compile_signals(text: bytes) -> _Signals:
    """
    C{S:} compiled, cached by its text.  Caller-id bursts make one text per
    calling number: the cache key leaves the parameter groups out (the
    first list of a shape is checked in full), since only the names of
    the signals matter here.
    """
    found = _signal_lists.get(text)
    if found is not None:
        return found
    key = _SIGNAL_PARAMS.sub(b"", text) if text.find(b"(") >= 0 else text
    found = _signal_lists.get(key)
    if found is not None:
        return found
    return _compile(_signal_lists, key, text, lambda t: _Signals(key, parse_signal_requests(t)), 400)


# Possessive: a third cheaper than backtracking over every character of a caller-id burst.
_SIGNAL_PARAMS = re.compile(rb'\((?:[^()"]++|"[^"]*+")*+\)')


def _piggybacked(data: bytes) -> list[bytes]:
    """
    The messages of a datagram, separated by lines "." (CRLF or LF): with
    C{bytes.split}, since a regular expression scanned every byte of the
    SDP in C{sre} (an eighth of the generator's instructions).
    """
    pieces = data.split(b"\n.")
    messages = []
    current = pieces[0]
    for piece in pieces[1:]:
        if piece[:1] == b"\n":
            rest = piece[1:]
        elif piece[:2] == b"\r\n":
            rest = piece[2:]
        else:
            current += b"\n." + piece  # a dot that starts a line of text, not a separator
            continue
        messages.append(current[:-1] if current[-1:] == b"\r" else current)
        current = rest
    messages.append(current)
    return messages


def compile_digit_map(text: bytes) -> DigitMap:
    """C{D:} compiled, cached by its text."""
    found = _digit_maps.get(text)
    if found is not None:
        return found
    return _compile(_digit_maps, text, text, DigitMap.parse, 510)


# -- endpoints -------------------------------------------------------------------


class LeanEndpoint:
    """
    One analog line: hook, the notification request in force, the digit
    map and dial string, observed events, time-out signals playing,
    connections (id -> [call id, mode]) and the quarantine.  C{call} is
    the load tool's call using the line (told of every change), C{pressed}
    the digits dialled since off-hook.
    """

    __slots__ = ("gateway", "name", "local", "number", "off", "x", "request", "digit_map", "dial",
                 "observed", "signals", "connections", "ntfy", "fresh", "quarantine",
                 "notified", "target", "call", "pressed", "sdp", "armed_seen")

    def __init__(self, gateway: LeanGateway, local: str, number: str, sdp: bytes) -> None:
        self.gateway = gateway
        self.local = local
        self.name = f"{local}@{gateway.domain}".encode()
        self.number = number
        self.off = False
        self.x = b"0"
        self.request = _NOTHING
        self.digit_map: Optional[DigitMap] = None
        self.dial = ""
        self.observed: list[bytes] = []
        self.signals: frozenset[str] = frozenset()
        self.connections: dict[bytes, list[bytes]] = {}
        self.ntfy = 0  # the NTFY in flight (its transaction id), 0: none
        self.fresh = True  # a request came since the last NTFY (step mode)
        self.quarantine: list[bytes] = []
        self.notified = b""  # N: from the agent, if any
        self.target = gateway.agent  # where NTFYs go: the agent, or the N: it named
        self.call: Any = None
        self.pressed = 0
        self.sdp = sdp
        self.armed_seen = False

    def __repr__(self) -> str:
        return (f"<LeanEndpoint {self.name.decode()} {'off' if self.off else 'on'}-hook "
                f"signals={sorted(self.signals)} connections={len(self.connections)}>")

    # -- what the tool reads ---------------------------------------------------------

    @property
    def armed(self) -> bool:
        return self.request.armed

    def idle(self) -> bool:
        """On hook, no connection, no tone, armed for off-hook, no NTFY in flight or queued."""
        return (not self.off and not self.connections and not self.signals and self.request.armed
                and not self.ntfy and not self.quarantine)

    def talking(self) -> bool:
        conns = self.connections
        if len(conns) != 1:
            return False
        for conn in conns.values():
            return conn[1] == _SENDRECV
        return False

    # -- what the phone does ---------------------------------------------------------

    def off_hook(self) -> None:
        if not self.off:
            self.off = True
            self.pressed = 0
            self.event(HOOK_OFF)

    def on_hook(self) -> None:
        if self.off:
            self.off = False
            self.event(HOOK_ON)

    def press(self, digits: str) -> None:
        for digit in digits:
            self.pressed += 1
            self.event(DIGIT_EVENTS[digit])

    # -- events (RFC 3435 §2.3.3, §4.4.1) ------------------------------------------------

    def event(self, observed: bytes) -> None:
        """An event happened on the line: act on it as the request in force says."""
        if self.ntfy or not self.fresh:
            self.quarantine.append(observed)
        else:
            self._detect(observed)
        self.changed()

    def _detect(self, observed: bytes) -> None:
        actions = self.request.by_event.get(observed)
        if actions is None:
            return  # not requested: nothing to do
        if not actions.keep_signals:
            self.signals = frozenset()
        if actions.notify:
            self.observed.append(observed)
            self.gateway.notify(self)
        elif actions.accumulate:
            self.observed.append(observed)
        elif actions.digit_map and self.digit_map is not None:
            self.observed.append(observed)
            self.dial += observed[2:].decode()
            status = self.digit_map.match(self.dial).status
            if status is _COMPLETE or status is _NO_MATCH:
                self.gateway.notify(self)
        embedded = actions.embedded
        if embedded is not None:
            # With A (the idle request's dial tone) or alone (E: the line
            # re-arms itself without a word, as after an overload shed).
            self.request = embedded
            signals = embedded.signals
            assert signals is not None
            self.signals = signals.timeout
            if embedded.digit_map is not None:
                self.digit_map = embedded.digit_map
            self.dial = ""

    def leave_quarantine(self) -> None:
        """The NTFY was answered or a new request came: process what was queued, if allowed."""
        while self.quarantine and not self.ntfy and self.fresh:
            self._detect(self.quarantine.pop(0))

    def changed(self) -> None:
        call = self.call
        if call is not None:
            call.poke(self)
        else:
            watch = self.gateway.watch
            if watch is not None:
                watch(self)


# -- the gateway ------------------------------------------------------------------


class _Out:
    """One of our commands in flight, and the call it was sent for."""

    __slots__ = ("txid", "data", "addr", "ep", "call", "first", "interval", "due", "give_up")

    def __init__(self, txid: int, data: bytes, addr: Any, ep: Optional[LeanEndpoint], first: float,
                 interval: float) -> None:
        self.txid = txid
        self.data = data
        self.addr = addr
        self.ep = ep
        self.call = None if ep is None else ep.call
        self.first = first
        self.interval = interval
        self.due = first + interval  # the heap's entry in force (older ones are stale)
        self.give_up = 0.0  # set by the owner: T-MAX, or 2 x T-HIST after a provisional answer


def _parameters(message: bytes) -> dict[bytes, bytes]:
    """
    The parameter lines of a command as C{{code: value}}: the lines up to
    the blank one (a session description after it is not read), each cut
    at its first colon.  A split and a loop over the five or so lines
    costs a third of one regex pass with a lazy match over the whole
    message (measured: 3.9 against 19.6 us for an RQNT, 9.1 against 21.0
    for a CRCX with SDP).  Codes are case-insensitive.
    """
    end = message.find(b"\n\r\n")
    if end < 0:
        end = message.find(b"\n\n")
    params = {}
    for line in (message if end < 0 else message[:end]).split(b"\n")[1:]:
        code, colon, value = line.partition(b":")
        if colon:
            params[code.strip().upper()] = value.strip()
    return params


class _Plan:
    """
    A notification request compiled from its texts (C{R:}, C{D:}, C{Q:},
    C{N:}, the compiled C{S:} and whether C{X:} came), ready to check
    against a line and apply: the same few come with every call, so this
    is built once per distinct set (L{_plans}) and a command only looks
    it up (C{S:} compiled first: caller-id makes a text per number).
    C{refuse_off}/C{refuse_on}: the hook precondition that fails (code,
    reason) when the line is off/on hook, in the order RFC 3435 checks.
    """

    __slots__ = ("request", "signals", "digit_map", "discard", "notified", "entity", "refuse_off",
                 "refuse_on", "needs_map")

    def __init__(self, new: bool, r: Optional[bytes], given: Optional[_Signals], d: Optional[bytes],
                 q: Optional[bytes], n: Optional[bytes]) -> None:
        request = compile_request(r) if r else _NOTHING
        # A new request without S: turns the signals off; S: alone replaces them.
        signals = given if given is not None else (_NO_SIGNALS if new else None)
        digit_map = compile_digit_map(d) if d else None
        off: list[tuple[int, str]] = []
        on: list[tuple[int, str]] = []
        if new and request.needs_on:
            off.append((401, "phone already off-hook"))
        if new and request.needs_off:
            on.append((402, "phone already on-hook"))
        if signals is not None and signals.needs_on:
            off.append((401, "ringing needs the phone on hook"))
        if signals is not None and signals.needs_off:
            on.append((402, "this signal needs the phone off hook"))
        self.refuse_off = off[0] if off else None
        self.refuse_on = on[0] if on else None
        self.needs_map = new and request.uses_map and digit_map is None
        self.request = request if new else None
        self.signals = signals
        self.digit_map = digit_map
        self.discard = b"discard" in (q or b"").lower()
        self.notified = n
        self.entity = None if n is None else _notified_entity(n)


_plans: dict[tuple[bool, Optional[bytes], Optional[_Signals], Optional[bytes], Optional[bytes], Optional[bytes]],
             _Plan] = {}


def _notified_entity(value: bytes) -> Optional[tuple[str, int]]:
    """C{[local@]host[:port]} of an C{N:} as an address when the host is an IPv4 literal."""
    host = value.rpartition(b"@")[2]
    name, colon, port = host.rpartition(b":")
    if not colon:
        name, port = host, b"2727"
    parts = name.split(b".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts) or not port.isdigit():
        return None
    return name.decode(), int(port)


class LeanGateway(DatagramProtocol):
    """
    One residential gateway of analog lines C{aaln/1..N} named C{domain},
    bound on C{interface:port} by L{listen}; it speaks to the agent at
    C{agent}.  The owner calls L{tick} often (every few ms): it sends the
    RSIP when due, retransmits, gives up, and forgets old answers.

    @param clock: an C{IReactorTime}; L{listen} takes an C{IReactorUDP}.
    @param random: a C{random.Random} for the RSIP delay and the jitter.
    """

    log = Logger()

    def __init__(self, clock: Any, domain: str, lines: int, numbers: tuple[str, ...], interface: str,
                 port: int, agent: tuple[str, int], random: Random, restart_delay: float = 0.0,
                 timers: Optional[LeanTimers] = None, rtp_base: int = 40000) -> None:
        self.clock = clock
        self.domain = domain
        self.interface = interface
        self.port = port
        self.agent = agent
        self.random = random
        self.restart_delay = restart_delay
        self.timers = timers or LeanTimers()
        self.agent_text = f"{agent[0]}:{agent[1]}".encode()
        self.lines: list[LeanEndpoint] = []
        self.by_name: dict[bytes, LeanEndpoint] = {}
        for i, number in zip(range(1, lines + 1), numbers):
            sdp = (b"v=0\r\no=- %d 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
                   b"m=audio %d RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                   b"a=ptime:20\r\n") % (random.getrandbits(31), interface.encode(), interface.encode(),
                                         rtp_base + 2 * (i - 1))
            ep = LeanEndpoint(self, f"aaln/{i}", number, sdp)
            self.lines.append(ep)
            self.by_name[ep.name.lower()] = ep
        self.wildcards = (f"*@{domain}".lower().encode(), f"aaln/*@{domain}".lower().encode())
        self.next_txid = random.randrange(1, 900_000_000)
        self.next_connection = random.randrange(0x10000000, 0x7FFFFFFF)
        self.outstanding: dict[int, _Out] = {}
        self.due: list[tuple[float, int]] = []  # heap of (retransmission due, txid)
        # T-HIST in two generations, txid -> our answer (None: confirmed by
        # K:): every T-HIST the older one is dropped and the current one
        # becomes older, so an answer is kept between T-HIST and twice
        # that, with no per-entry timer.
        self.answers: dict[int, Optional[bytes]] = {}
        self.older: dict[int, Optional[bytes]] = {}
        self.rotate_at = 0.0
        self.acks: list[bytes] = []  # final responses received, to confirm with K:
        self.rsip_at: Optional[float] = None
        self.registered = False
        self.watch: Optional[Callable[[LeanEndpoint], None]] = None
        self._held: Optional[list[LeanEndpoint]] = None  # NTFYs caused while a command is answered
        self._udp: Any = None
        self._poll: Optional[Callable[[], None]] = None
        self._recvfrom: Any = None
        self._sendto: Callable[[bytes, Any], Any] = self._unbound
        self.now = 0.0
        self.counters = {
            "commands_received": 0, "commands_sent": 0, "responses_received": 0, "retransmissions": 0,
            "timeouts": 0, "duplicates": 0, "refused": 0, "errors_received": 0, "send_errors": 0,
            "malformed": 0,
        }

    # -- wiring ------------------------------------------------------------------------

    def listen(self, reactor: Any, polled: bool = False) -> Any:
        """
        Bind on the reactor (real or L{mgcpswitch.testing.MemoryReactor})
        and schedule the RSIP.  C{polled}: the reactor does not watch the
        socket; the owner calls L{read} when it has data (see L{fileno}),
        so that the process wakes up once per tick instead of once per
        datagram.
        """
        self._udp = reactor.listenUDP(self.port, self, interface=self.interface)
        sock = getattr(self._udp, "socket", None)
        if polled and sock is not None:
            self._udp.stopReading()
            self._poll = self._read_socket
            self._recvfrom = sock.recvfrom
        # A real Twisted port: straight to the socket, past the port's
        # per-datagram address checks (our peer is always an IP literal).
        self._sendto = sock.sendto if sock is not None else self._udp.write
        delay = self.random.uniform(0.0, self.restart_delay) if self.restart_delay > 0 else 0.0
        self.rsip_at = self.clock.seconds() + delay
        return self._udp

    def fileno(self) -> Optional[int]:
        """The socket's descriptor when it is a real one, else None."""
        sock = getattr(self._udp, "socket", None)
        return None if sock is None else int(sock.fileno())

    def read(self) -> None:
        """
        Read one datagram waiting (a polled gateway): the owner's
        level-triggered epoll says whether more wait.  Asking it again
        costs a system call; reading until EAGAIN cost a failing
        C{recvfrom} and a Python exception per socket and tick, three
        times as much.
        """
        if self._poll is not None:
            self._poll()

    def _read_socket(self) -> None:
        """
        One datagram, straight from the socket: Twisted's C{doRead} adds
        its own per-datagram work (a byte budget, an address-family check,
        a handler per call) for nothing here.
        """
        try:
            data, addr = self._recvfrom(65536)
        except OSError:
            return  # none after all, or an ICMP error report
        # find, not "in": bytes.__contains__ first tries the operand as an
        # int and raises and clears a TypeError (~1,800 instructions).
        if data.find(b"\n.") >= 0:
            self.datagramReceived(data, addr)  # piggybacked
            return
        try:
            self._message(data, addr)
        except Exception:
            # Nothing may reach the owner's loop; an error here is the tool's bug.
            self.log.failure("lean gateway {domain}: datagram from {addr} not handled",
                             domain=self.domain, addr=addr)

    def stop(self) -> None:
        self._poll = None
        self._recvfrom = None
        if self._udp is not None:
            self._udp.stopListening()
            self._udp = None
        self._sendto = self._unbound

    def _unbound(self, data: bytes, addr: Any) -> None:
        raise OSError("the gateway is not bound")

    def _send(self, data: bytes, addr: Any) -> None:
        try:
            self._sendto(data, addr)
        except OSError:
            self.counters["send_errors"] += 1  # lost like a datagram: retransmission covers it

    # -- our commands ----------------------------------------------------------------------

    def _txid(self) -> int:
        txid = self.next_txid
        self.next_txid = txid + 1 if txid < 999_999_999 else 1
        return txid

    def _ack_line(self) -> bytes:
        acks = self.acks
        if not acks:
            return b""
        self.acks = []
        return b"K: " + b", ".join(acks) + b"\r\n"

    def _command(self, txid: int, data: bytes, ep: Optional[LeanEndpoint]) -> None:
        now = self.now = self.clock.seconds()
        interval = self.timers.initial_rto
        addr = self.agent if ep is None else ep.target
        out = self.outstanding[txid] = _Out(txid, data, addr, ep, now, interval)
        out.give_up = now + self.timers.t_max
        heapq.heappush(self.due, (out.due, txid))
        self.counters["commands_sent"] += 1
        self._send(data, addr)

    def restart(self) -> None:
        """RSIP C{restart} for every line (C{*@domain}): what a gateway does when it comes up."""
        self.rsip_at = None
        txid = self._txid()
        self._command(txid, b"RSIP %d *@%s MGCP 1.0\r\n%sRM: restart\r\n" % (
            txid, self.domain.encode(), self._ack_line()), None)

    def notify(self, ep: LeanEndpoint) -> None:
        """NTFY with the X: of the request in force and the observed events, in order."""
        if self._held is not None:
            # Caused by the command being answered: the answer goes out first.
            self._held.append(ep)
            ep.ntfy = -1  # notification state already: events wait in quarantine
            return
        self._notify(ep)

    def _notify(self, ep: LeanEndpoint) -> None:
        txid = self.next_txid
        self.next_txid = txid + 1 if txid < 999_999_999 else 1
        acks = self.acks
        if acks:
            self.acks = []
            data = b"NTFY %d %s MGCP 1.0\r\nK: %s\r\nX: %s\r\nO: %s\r\n" % (
                txid, ep.name, b", ".join(acks), ep.x, b", ".join(ep.observed))
        else:
            data = b"NTFY %d %s MGCP 1.0\r\nX: %s\r\nO: %s\r\n" % (txid, ep.name, ep.x, b", ".join(ep.observed))
        ep.observed = []
        ep.dial = ""
        ep.fresh = False
        ep.ntfy = txid
        self._command(txid, data, ep)

    def tick(self, now: float) -> None:
        """Send the RSIP when due, retransmit what is due, give up at T-MAX, forget old answers."""
        self.now = now
        if self.rsip_at is not None and now >= self.rsip_at:
            self.restart()
        due, outstanding, timers = self.due, self.outstanding, self.timers
        while due and due[0][0] <= now:
            when, txid = heapq.heappop(due)
            out = outstanding.get(txid)
            if out is None or out.due != when:
                continue  # answered, or rescheduled by a provisional answer
            if now >= out.give_up:
                del outstanding[txid]
                self.counters["timeouts"] += 1
                self._given_up(out)
                continue
            self.counters["retransmissions"] += 1
            out.interval = min(out.interval * 2, timers.rto_max)
            out.due = now + self.random.uniform(out.interval / 2, out.interval)
            heapq.heappush(due, (out.due, txid))
            self._send(out.data, out.addr)
        if now >= self.rotate_at:
            self.older, self.answers = self.answers, {}
            self.rotate_at = now + self.timers.t_hist

    def _given_up(self, out: _Out) -> None:
        ep = out.ep
        if ep is None:
            self.rsip_at = self.now  # no answer to the RSIP: start again
            return
        if ep.ntfy == out.txid:
            ep.ntfy = 0  # the line leaves notification state (§4.4.1)
        call = out.call
        if call is not None:
            call.ntfy_timed_out()
        ep.leave_quarantine()
        ep.changed()

    # -- datagrams in -------------------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        try:
            if data.find(b"\n.") >= 0:  # piggybacked: messages separated by a line "."
                for message in _piggybacked(data):
                    self._message(message, addr)
            else:
                self._message(data, addr)
        except Exception:
            # Nothing may reach the reactor; an error here is the tool's bug.
            self.log.failure("lean gateway {domain}: datagram from {addr} not handled",
                             domain=self.domain, addr=addr)

    def _message(self, message: bytes, addr: Any) -> None:
        end = message.find(b"\n")
        head = (message if end < 0 else message[:end]).split()
        if len(head) < 2 or not head[1].isdigit():
            self.counters["malformed"] += 1
            return
        first = head[0]
        if first[:1].isdigit():
            self._response(int(first), int(head[1]), message, end)
        else:
            self._command_received(first.upper(), int(head[1]), head, message, end, addr)

    # -- responses to our commands ------------------------------------------------------------

    def _response(self, code: int, txid: int, message: bytes, end: int) -> None:
        self.counters["responses_received"] += 1
        if code < 100:
            return  # a 000 for an answer of ours: we never ask for one
        out = self.outstanding.get(txid)
        if out is None:
            return  # late: already answered, or given up
        if code < 200:
            # Provisional: the agent is on it; ask again only after LONGTRAN,
            # and wait for the final answer up to 2 x T-HIST (§3.5.6).
            now = self.clock.seconds()
            out.due = now + self.timers.longtran
            out.give_up = out.first + 2 * self.timers.t_hist
            heapq.heappush(self.due, (out.due, txid))
            return
        del self.outstanding[txid]
        if end > 0 and message.find(b"\nK:") >= 0:
            self._send(b"000 %d\r\n" % txid, self.agent)  # final after provisional: confirm it
        acks = self.acks
        acks.append(b"%d" % txid)
        if len(acks) > 32:
            del acks[0]
        if code >= 400:
            self.counters["errors_received"] += 1
        ep = out.ep
        if ep is None:
            self.registered = code < 400 or self.registered
            if code >= 400:
                self.rsip_at = self.clock.seconds() + 1.0
            return
        if ep.ntfy == txid:
            ep.ntfy = 0
            ep.leave_quarantine()
        ep.changed()

    # -- the agent's commands -----------------------------------------------------------------

    def _command_received(self, verb: bytes, txid: int, head: list[bytes], message: bytes, end: int,
                          addr: Any) -> None:
        answers = self.answers
        if txid in answers or txid in self.older:
            # A retransmission: the same answer again, never a second execution.
            self.counters["duplicates"] += 1
            cached = answers[txid] if txid in answers else self.older[txid]
            if cached is not None:
                self._send(cached, addr)
            return
        self.counters["commands_received"] += 1
        params = _parameters(message)
        acks = params.get(b"K")
        if acks:
            if acks.isdigit():  # one id, the usual case: _confirmed inline
                confirmed = int(acks)
                if confirmed in answers:
                    answers[confirmed] = None
                elif confirmed in self.older:
                    self.older[confirmed] = None
            else:
                self._confirmed(acks)
        held: list[LeanEndpoint] = []
        self._held = held
        try:
            if len(head) < 3:
                raise _Refused(400, "no endpoint name")
            handler = _HANDLERS.get(verb)
            if handler is None:
                raise _Refused(504, f"unknown or unsupported command {verb.decode(errors='replace')}")
            answer = handler(self, txid, head[2].lower(), params)
        except _Refused as refused:
            self.counters["refused"] += 1
            answer = b"%d %d %s\r\n" % (refused.code, txid, refused.reason.encode("ascii", "replace"))
        finally:
            self._held = None
        answers[txid] = answer
        try:
            self._sendto(answer, addr)
        except OSError:
            self.counters["send_errors"] += 1  # lost like a datagram: the agent retransmits
        for ep in held:
            self._notify(ep)

    def _confirmed(self, value: bytes) -> None:
        """K: the agent has our answers to these: drop them, keep their ids (§3.5.1)."""
        if value.isdigit():  # one id: the usual case
            self._forget_answer(int(value))
            return
        for item in value.split(b","):
            item = item.strip()
            if item.isdigit():
                self._forget_answer(int(item))
                continue
            low, _, high = item.partition(b"-")
            if low.isdigit() and high.isdigit():
                first = int(low)
                for txid in range(first, min(int(high), first + 1000) + 1):
                    self._forget_answer(txid)

    def _forget_answer(self, txid: int) -> None:
        if txid in self.answers:
            self.answers[txid] = None
        elif txid in self.older:
            self.older[txid] = None

    def remembers(self, txid: int) -> bool:
        """Whether a command with this id would be taken for a retransmission."""
        return txid in self.answers or txid in self.older

    def _endpoint(self, name: bytes) -> LeanEndpoint:
        ep = self.by_name.get(name)
        if ep is None:
            if name in self.wildcards:
                raise _Refused(503, "wildcards are only understood in AUEP and DLCX")
            raise _Refused(500, f"no endpoint {name.decode(errors='replace')}")
        return ep

    def _check_request(self, ep: LeanEndpoint, params: dict[bytes, bytes]) -> Optional[_Plan]:
        """
        Check the notification request a command carries (C{X:}, C{R:},
        C{S:}, C{D:}, C{Q:}, C{N:}); None when it carries none.  Nothing
        changes before the whole command was checked (§4.4.2).
        """
        get = params.get
        x = get(b"X")
        r = get(b"R")
        s = get(b"S")
        d = get(b"D")
        if x is None and r is None and s is None and d is None:
            return None
        # An empty S: is a list of no signals, as a new request without S:.
        signals = None if s is None else compile_signals(s) if s else _NO_SIGNALS
        key = (x is not None or r is not None, r, signals, d, get(b"Q"), get(b"N"))
        plan = _plans.get(key)
        if plan is None:
            plan = _Plan(*key)
            if len(_plans) >= _CACHE_LIMIT:
                _plans.clear()
            _plans[key] = plan
        refusal = plan.refuse_off if ep.off else plan.refuse_on
        if refusal is not None:
            raise _Refused(*refusal)
        if plan.needs_map and ep.digit_map is None:
            raise _Refused(519, "no digit map for the D action")
        return plan

    def _apply_request(self, ep: LeanEndpoint, plan: _Plan, x: Optional[bytes]) -> None:
        if plan.request is not None:
            if x is not None:
                ep.x = x
            ep.request = plan.request
            ep.fresh = True
            ep.dial = ""
            ep.observed = []
            if plan.discard:
                ep.quarantine = []
        signals = plan.signals
        if signals is not None:
            ep.signals = signals.timeout
        if plan.digit_map is not None:
            ep.digit_map = plan.digit_map
        notified = plan.notified
        if notified is not None:
            ep.notified = notified
            ep.target = plan.entity or self.agent
        if ep.quarantine:
            ep.leave_quarantine()

    # -- one handler per verb ------------------------------------------------------------

    def _rqnt(self, txid: int, name: bytes, params: dict[bytes, bytes]) -> bytes:
        ep = self.by_name.get(name) or self._endpoint(name)
        if params.get(b"X") is None:
            raise _Refused(400, "RQNT needs X:")
        plan = self._check_request(ep, params)
        assert plan is not None
        self._apply_request(ep, plan, params.get(b"X"))
        ep.changed()
        return b"200 %d OK\r\n" % txid

    def _crcx(self, txid: int, name: bytes, params: dict[bytes, bytes]) -> bytes:
        ep = self.by_name.get(name) or self._endpoint(name)
        call_id = params.get(b"C")
        if not call_id:
            raise _Refused(400, "CRCX needs C:")
        mode = (params.get(b"M") or b"").lower()
        if mode not in _MODES:
            raise _Refused(517 if mode else 400, "CRCX needs a valid M:")
        if len(ep.connections) >= _MAX_CONNECTIONS:
            raise _Refused(502, "no more connections on this line")
        plan = self._check_request(ep, params)
        connection = b"%X" % self.next_connection
        self.next_connection = self.next_connection + 1 if self.next_connection < 0x7FFFFFFF else 0x10000000
        ep.connections[connection] = [call_id, mode]
        if plan is not None:
            self._apply_request(ep, plan, params.get(b"X"))
        ep.changed()
        return b"200 %d OK\r\nI: %s\r\n\r\n%s" % (txid, connection, ep.sdp)

    def _mdcx(self, txid: int, name: bytes, params: dict[bytes, bytes]) -> bytes:
        ep = self.by_name.get(name) or self._endpoint(name)
        conn = self._connection(ep, params, b"MDCX")
        mode = params.get(b"M")
        if mode is not None:
            mode = mode.lower()
            if mode not in _MODES:
                raise _Refused(517, "unknown connection mode")
        plan = self._check_request(ep, params)
        if mode is not None:
            conn[1] = mode
        if plan is not None:
            self._apply_request(ep, plan, params.get(b"X"))
        ep.changed()
        return b"200 %d OK\r\n\r\n%s" % (txid, ep.sdp)

    def _connection(self, ep: LeanEndpoint, params: dict[bytes, bytes], verb: bytes) -> list[bytes]:
        cid = params.get(b"I")
        if not cid:
            raise _Refused(400, f"{verb.decode()} needs I:")
        conn = ep.connections.get(cid)
        if conn is None:
            raise _Refused(515, f"no connection {cid.decode(errors='replace')}")
        call_id = params.get(b"C")
        if call_id and call_id != conn[0]:
            raise _Refused(516, "the connection belongs to another call")
        return conn

    def _dlcx(self, txid: int, name: bytes, params: dict[bytes, bytes]) -> bytes:
        if name in self.wildcards:
            for ep in self.lines:
                if ep.connections:
                    ep.connections = {}
                    ep.changed()
            return b"250 %d Connection deleted\r\n" % txid
        ep = self.by_name.get(name) or self._endpoint(name)
        cid = params.get(b"I")
        call_id = params.get(b"C")
        if cid:
            self._connection(ep, params, b"DLCX")
            doomed = [cid]
        elif call_id:
            doomed = [c for c, (owner, _) in ep.connections.items() if owner == call_id]
            if not doomed:
                raise _Refused(516, "no connection of that call")
        else:
            doomed = list(ep.connections)
        plan = self._check_request(ep, params)
        for c in doomed:
            del ep.connections[c]
        if plan is not None:
            self._apply_request(ep, plan, params.get(b"X"))
        ep.changed()
        if len(doomed) == 1:
            return b"250 %d Connection deleted\r\n%s" % (txid, _STATS)
        return b"250 %d Connection deleted\r\n" % txid

    def _auep(self, txid: int, name: bytes, params: dict[bytes, bytes]) -> bytes:
        if name in self.wildcards:
            listing = b"".join(b"Z: %s\r\n" % ep.name for ep in self.lines)
            if len(listing) > 4000:
                raise _Refused(533, f"{len(self.lines)} endpoints do not fit in one response")
            return b"200 %d OK\r\n%s" % (txid, listing)
        ep = self.by_name.get(name) or self._endpoint(name)
        out = [b"200 %d OK\r\n" % txid]
        for item in (params.get(b"F") or b"").split(b","):
            item = item.strip().upper()
            if item == b"I":
                out.append(b"I: %s\r\n" % b", ".join(ep.connections))
            elif item == b"N":
                out.append(b"N: %s\r\n" % (ep.notified or self.agent_text))
            elif item == b"ES":
                out.append(b"ES: L/hd\r\n" if ep.off else b"ES: L/hu\r\n")
            elif item == b"X":
                out.append(b"X: %s\r\n" % ep.x)
            elif item == b"R":
                out.append(b"R: %s\r\n" % ep.request.text)
            elif item == b"S":
                out.append(b"S: %s\r\n" % ", ".join(sorted(ep.signals)).encode())
            elif item == b"D":
                out.append(b"D: %s\r\n" % (str(ep.digit_map).encode() if ep.digit_map is not None else b""))
            elif item == b"O":
                out.append(b"O: %s\r\n" % b", ".join(ep.observed))
            elif item == b"E":
                out.append(b"E: 000\r\n")
            elif item == b"RM":
                out.append(b"RM: restart\r\n")
        return b"".join(out)

    def _aucx(self, txid: int, name: bytes, params: dict[bytes, bytes]) -> bytes:
        ep = self.by_name.get(name) or self._endpoint(name)
        conn = self._connection(ep, params, b"AUCX")
        out = [b"200 %d OK\r\n" % txid]
        for item in (params.get(b"F") or b"").split(b","):
            item = item.strip().upper()
            if item == b"C":
                out.append(b"C: %s\r\n" % conn[0])
            elif item == b"M":
                out.append(b"M: %s\r\n" % conn[1])
        return b"".join(out)

    def _epcf(self, txid: int, name: bytes, params: dict[bytes, bytes]) -> bytes:
        self._endpoint(name)
        return b"200 %d OK\r\n" % txid


_HANDLERS: dict[bytes, Callable[[LeanGateway, int, bytes, dict[bytes, bytes]], bytes]] = {
    b"RQNT": LeanGateway._rqnt,
    b"CRCX": LeanGateway._crcx,
    b"MDCX": LeanGateway._mdcx,
    b"DLCX": LeanGateway._dlcx,
    b"AUEP": LeanGateway._auep,
    b"AUCX": LeanGateway._aucx,
    b"EPCF": LeanGateway._epcf,
}
