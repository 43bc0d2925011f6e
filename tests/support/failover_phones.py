"""
The telephones of the failover tests and benchmark, in a process of their
own: the simulated gateways of an INI (the real gateway code, no RTP),
each with the pair's two call agents as its call agent list, driven by
commands read from stdin, one per line, each answered by one JSON line
on stdout:

    python -m tests.support.failover_phones CONFIG HOST:PORT[,HOST:PORT...]

    armed                  every line armed (R: L/hd): {"armed": TIME}
    talk N                 N calls placed and answered: {"talking": n, "failed": [...]}
    setup N                N more calls left ringing: {"ringing": n, "failed": [...]}
    watch HOST:PORT        every endpoint's commands go to HOST:PORT, every idle line is armed
                           and no line outside the talking calls holds a connection:
                           {"rehomed": TIME, "recovered": TIME, ...}
    hangup-setup           the ringing calls' lines on hook, all idle: {"idle": n, "failed": [...]}
    release [N]            the (first N) talking calls hung up by their callers, all idle: {"released": n, ...}
    stats                  {"connections": n, "txid_reuse": [...], "commands": {source: n}, ...}

TIME is C{time.time()} when the condition was first seen (polled every
10 ms: cheap enough not to slow the agents sharing the machine), so a
test can subtract the moment it sent a signal.  A wait that runs out
(20 s a step, 30 s for watch) answers what it has: C{"failed"}, or None
for a time.

Transaction ids are recorded from the raw datagrams each gateway receives
(before the transaction layer, which answers a repeated id from its cache
without executing it): an id that arrives from two sources, or twice from
one source with a different command line, is a reuse.

Why a driver of its own rather than C{mgcpload run}: the failover needs
phases (calls talking, calls ringing, a kill, the check of every line's
notified entity, then the release), which a load run at a rate does not
have; the gateways and lines are the same code.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks

EVENT_HD = "L/hd"
RINGBACK = "G/rt"
COMMAND_LINE = re.compile(rb"^(EPCF|RQNT|CRCX|MDCX|DLCX|AUEP|AUCX) (\d+) ([^ \r\n]+)", re.MULTILINE)
STEP = 20.0  # seconds a phase may take before it answers what it has


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    return host, int(port)


class Phones:
    def __init__(self, reactor: Any, config: str, agents: list[tuple[str, int]]) -> None:
        import random

        from mgcpswitch.config import load_settings
        from mgcpswitch.gateway import GatewayConfig, SimulatedGateway

        self.reactor = reactor
        settings = load_settings(config)
        self.gateways = []
        self.lines: list[Any] = []
        self.numbers: dict[Any, str] = {}
        for seed, g in enumerate(settings.gateways):
            gw = SimulatedGateway(reactor, GatewayConfig(
                domain=g.name, lines=len(g.endpoints), port=g.port, interface=g.address,
                call_agent=agents[0], backup_agents=tuple(agents[1:]), rtp=False, history_limit=0,
            ), random=random.Random(seed))
            self.gateways.append(gw)
            for line, number in zip(gw.lines, g.numbers):
                self.lines.append(line)
                self.numbers[line] = number
            self._record_txids(gw)
        self.txids: dict[int, tuple[Any, bytes]] = {}
        self.reuse: list[list[Any]] = []
        self.commands: dict[str, int] = {}
        self.talking: list[tuple[Any, Any]] = []
        self.ringing: list[tuple[Any, Any]] = []
        self._free = list(self.lines)

    def _record_txids(self, gw: Any) -> None:
        protocol = gw.protocol
        received = protocol.datagramReceived

        def datagram_received(data: bytes, address: Any) -> None:
            source = f"{address[0]}:{address[1]}"
            for match in COMMAND_LINE.finditer(data):
                txid = int(match.group(2))
                seen = self.txids.get(txid)
                if seen is None:
                    self.txids[txid] = (source, match.group(0))
                    self.commands[source] = self.commands.get(source, 0) + 1
                elif seen != (source, match.group(0)):
                    self.reuse.append([txid, seen[0], seen[1].decode(), source, match.group(0).decode()])
            received(data, address)

        protocol.datagramReceived = datagram_received  # type: ignore[method-assign]

    def start(self) -> None:
        for gw in self.gateways:
            gw.start()

    # -- conditions ---------------------------------------------------------------

    @staticmethod
    def armed(line: Any) -> bool:
        requested = line.requested_events
        return line.hook == "on" and not line.connections and len(requested) == 1 \
            and str(requested[0].name) == EVENT_HD

    @staticmethod
    def talking_now(line: Any) -> bool:
        return len(line.connections) == 1 and line.connections[0].mode == "sendrecv"

    def until(self, predicate: Callable[[], bool], timeout: float = STEP) -> Deferred[float | None]:
        """Fires with time.time() once C{predicate()} holds (polled every 10 ms), None at the timeout."""
        d: Deferred[float | None] = Deferred()
        deadline = time.time() + timeout

        def poll() -> None:
            if predicate():
                d.callback(time.time())
            elif time.time() > deadline:
                d.callback(None)
            else:
                self.reactor.callLater(0.01, poll)

        poll()
        return d

    def line_until(self, line: Any, predicate: Callable[[Any], bool], timeout: float = STEP) -> Deferred[bool]:
        d = line.when(predicate)
        timer = self.reactor.callLater(timeout, d.cancel)
        d.addCallbacks(lambda _: (timer.cancel(), True)[1], lambda f: (timer.active() and timer.cancel(), False)[1])
        return d

    # -- commands ---------------------------------------------------------------------

    @inlineCallbacks
    def cmd_armed(self) -> Any:
        at = yield self.until(lambda: all(self.armed(line) for line in self.lines), 60.0)
        return {"armed": at, "lines": len(self.lines), "not_armed": sum(not self.armed(x) for x in self.lines)}

    def _pairs(self, n: int) -> list[tuple[Any, Any]]:
        pairs = [(self._free[2 * i], self._free[2 * i + 1]) for i in range(n)]
        del self._free[:2 * n]
        return pairs

    @inlineCallbacks
    def _place(self, caller: Any, callee: Any, answer: bool) -> Any:
        yield caller.off_hook()
        yield caller.dial(self.numbers[callee], gap=0)
        ok = yield self.line_until(callee, lambda line: line.ringing)
        if not ok:
            return "no-ringing"
        ok = yield self.line_until(caller, lambda line: RINGBACK in {str(s) for s in line.signals})
        if not ok:
            return "no-ringback"
        if not answer:
            return None
        yield callee.off_hook()
        for party in (caller, callee):
            ok = yield self.line_until(party, self.talking_now)
            if not ok:
                return "not-talking"
        return None

    @inlineCallbacks
    def _calls(self, n: int, answer: bool) -> Any:
        pairs = self._pairs(n)
        outcomes = []
        for i in range(0, n, 20):  # 20 calls every 50 ms: a steady 400 calls/s, not one burst
            batch = [self._place(a, b, answer) for a, b in pairs[i:i + 20]]
            outcomes.append(DeferredList(batch, consumeErrors=True))
            yield self.until(lambda: False, 0.05)
        results = []
        for d in outcomes:
            results.extend((yield d))
        failed = [f"{pairs[i][0].name}: {r if ok else r.getErrorMessage()}"
                  for i, (ok, r) in enumerate(results) if not ok or r is not None]
        kept = [pair for i, pair in enumerate(pairs) if results[i][0] and results[i][1] is None]
        return kept, failed

    @inlineCallbacks
    def cmd_talk(self, n: str) -> Any:
        kept, failed = yield self._calls(int(n), True)
        self.talking.extend(kept)
        return {"talking": len(kept), "failed": failed[:20], "failures": len(failed)}

    @inlineCallbacks
    def cmd_setup(self, n: str) -> Any:
        kept, failed = yield self._calls(int(n), False)
        self.ringing.extend(kept)
        return {"ringing": len(kept), "failed": failed[:20], "failures": len(failed)}

    def _in_talk(self) -> set[Any]:
        return {line for pair in self.talking for line in pair}

    def _homed(self, address: tuple[str, int]) -> Callable[[], bool]:
        def homed() -> bool:
            for gw in self.gateways:
                for ep in gw.endpoints:
                    where = gw.ne_address(ep)
                    if isinstance(where, Deferred) or tuple(where) != address:
                        return False
            return True
        return homed

    def _recovered(self) -> bool:
        talk = self._in_talk()
        for line in self.lines:
            if line in talk:
                if not self.talking_now(line):
                    return False
            elif line.connections or (line.hook == "on" and not self.armed(line)):
                return False
        return True

    @inlineCallbacks
    def cmd_watch(self, where: str) -> Any:
        address = host_port(where)
        homed = self._homed(address)
        rehomed = yield self.until(homed, 30.0)
        recovered = yield self.until(lambda: homed() and self._recovered(), 30.0)
        talk = self._in_talk()
        return {
            "rehomed": rehomed, "recovered": recovered,
            "talking_lines": sum(self.talking_now(x) for x in talk),
            "setup_connections": sum(len(x.connections) for x in self.lines if x not in talk),
            "idle_not_armed": sum(x.hook == "on" and not self.armed(x) for x in self.lines if x not in talk),
        }

    @inlineCallbacks
    def _hang_up(self, first: Any, other: Any) -> Any:
        yield first.on_hook()
        if other.hook == "off":
            ok = yield self.line_until(other, lambda line: not line.connections)
            yield other.on_hook()
            if not ok:
                return "other-kept-its-connection"
        for party in (first, other):
            ok = yield self.line_until(party, self.armed)
            if not ok:
                return f"{party.name}-not-idle"
        return None

    @inlineCallbacks
    def _release(self, pairs: list[tuple[Any, Any]]) -> Any:
        results = []
        for i in range(0, len(pairs), 20):
            batch = [self._hang_up(a, b) for a, b in pairs[i:i + 20]]
            results.extend((yield DeferredList(batch, consumeErrors=True)))
        failed = [f"{pairs[i][0].name}: {r if ok else r.getErrorMessage()}"
                  for i, (ok, r) in enumerate(results) if not ok or r is not None]
        self._free.extend(line for pair in pairs for line in pair)
        return len(pairs) - len(failed), failed

    @inlineCallbacks
    def cmd_hangup_setup(self) -> Any:
        pairs, self.ringing = self.ringing, []
        done, failed = yield self._release(pairs)
        return {"idle": done, "failed": failed[:20], "failures": len(failed)}

    @inlineCallbacks
    def cmd_release(self, n: str = "") -> Any:
        count = int(n) if n else len(self.talking)
        pairs, self.talking = self.talking[:count], self.talking[count:]
        done, failed = yield self._release(pairs)
        return {"released": done, "failed": failed[:20], "failures": len(failed)}

    def cmd_stats(self) -> Any:
        return {
            "connections": sum(gw.connection_count() for gw in self.gateways),
            "txid_reuse": self.reuse[:20], "reused": len(self.reuse),
            "commands": self.commands,
            "not_armed": sum(not self.armed(x) for x in self.lines),
            "free": len(self._free),
        }


def main(argv: list[str]) -> None:
    from twisted.internet import reactor, stdio
    from twisted.internet.defer import maybeDeferred
    from twisted.protocols.basic import LineReceiver

    phones = Phones(reactor, argv[0], [host_port(a) for a in argv[1].split(",")])

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:  # noqa: N802
            words = line.decode().split()
            if not words:
                return
            if words[0] == "quit":
                reactor.stop()
                return
            command = " ".join(words)
            handler = getattr(phones, "cmd_" + words[0].replace("-", "_"), None)
            if handler is None:
                self.say(command, {"error": f"unknown command {words[0]}"})
                return
            # Commands run at once, side by side, and each is answered when
            # it is done: the answer names its command.
            maybeDeferred(handler, *words[1:]).addCallbacks(
                lambda answer: self.say(command, answer), lambda f: self.say(command, {"error": f.getTraceback()}))

        def say(self, command: str, answer: Any) -> None:
            sys.stdout.write(json.dumps(dict(answer, command=command)) + "\n")
            sys.stdout.flush()

        def connectionLost(self, reason: Any) -> None:  # noqa: N802
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Commands())
    reactor.callWhenRunning(phones.start)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
