# -*- test-case-name: tests.test_tap -*-
"""
Scripted subscribers for C{twistd mgcpswitch --demo}: they pick up idle
simulated lines, dial other lines' numbers (now and then a number that
does not exist), answer when their phone rings, talk for a while and hang
up, so the web admin shows a live switch.
"""

from __future__ import annotations

import random
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .config import Settings
from .gateway import SimulatedGateway

__all__ = ["DemoService"]


class DemoService(Service):
    log = Logger()

    def __init__(self, reactor: IReactorTime, settings: Settings, gateways: list[SimulatedGateway],
                 seed: Optional[int] = None) -> None:
        self._reactor = reactor
        self._demo = settings.demo
        self._gateways = gateways
        self._random = random.Random(seed)
        self._numbers = {
            f"aaln/{i}@{gw.name}".lower(): number
            for gw in settings.gateways
            for i, number in enumerate(gw.numbers, 1)
        }
        self._timer: Optional[IDelayedCall] = None
        self._calls: set[Any] = set()
        self.placed = 0

    def _lines(self) -> list[Any]:
        return [line for gateway in self._gateways for line in gateway.lines]

    def startService(self) -> None:  # noqa: N802
        super().startService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        for line in self._lines():
            self._answer_when_rung(line)
        self._timer = self._reactor.callLater(self._demo.call_interval, self._place_call)

    def stopService(self) -> None:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for call in list(self._calls):
            if call.active():
                call.cancel()
        self._calls.clear()

    def _later(self, delay: float, f: Any, *args: Any) -> None:
        call = self._reactor.callLater(delay, self._run, f, args)
        self._calls.add(call)

    def _run(self, f: Any, args: tuple[Any, ...]) -> None:
        self._calls = {c for c in self._calls if c.active()}
        if self.running:
            f(*args)

    def _answer_when_rung(self, line: Any) -> None:
        if not self.running:
            return
        line.when(lambda l: l.ringing).addCallback(self._rung)

    def _rung(self, line: Any) -> None:
        self._later(self._demo.answer_delay * self._random.uniform(0.5, 1.5), self._answer, line)

    def _answer(self, line: Any) -> None:
        if line.ringing and line.hook == "on":
            line.off_hook()
            # Hang up when the other side has (busy tone), or after the hold time.
            self._later(self._demo.hold_time * self._random.uniform(0.8, 1.5), self._hang_up, line)
            line.when(lambda l: "L/bz" in l.signals or "L/ro" in l.signals).addCallback(self._hang_up)
        self._answer_when_rung(line)

    def _hang_up(self, line: Any) -> None:
        if line.hook == "off":
            line.on_hook()

    def _place_call(self) -> None:
        self._timer = self._reactor.callLater(self._demo.call_interval, self._place_call)
        idle = [l for l in self._lines() if l.hook == "on" and not l.ringing and not l.connections]
        if len(idle) < 2:
            return
        caller = self._random.choice(idle)
        if self._random.random() < self._demo.unknown_number_share:
            number = "0999"[:4]
        else:
            others = [l for l in idle if l is not caller]
            callee = self._random.choice(others)
            number = self._numbers.get(callee.name.lower(), "")
        self.placed += 1
        self.log.info("demo: {caller} dials {number}", caller=caller.name, number=number)
        caller.off_hook().addCallback(lambda _: caller.when(lambda l: "L/dl" in l.signals))\
            .addCallback(lambda _: caller.dial(number, gap=0.15))
        # The caller hangs up after the hold time, or on busy / reorder tone.
        self._later(self._demo.hold_time * 2 + self._demo.answer_delay * 2, self._hang_up, caller)
        caller.when(lambda l: "L/bz" in l.signals or "L/ro" in l.signals).addCallback(
            lambda l: self._later(1.0, self._hang_up, l)
        )
