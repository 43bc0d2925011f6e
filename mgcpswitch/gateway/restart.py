# -*- test-case-name: tests.test_gateway_restart -*-
"""
RestartInProgress procedures: the restart procedure with avalanche control
(RFC 3435 §4.4.6, digest §4.8), operator restarts (§2.3.12) and the
"disconnected" procedure (§4.4.7, digest §4.9).

A L{Procedure} announces a set of endpoints with one RSIP: all of the
gateway's endpoints as C{*@domain}, or a single endpoint.  While it is
incomplete the endpoints hold it, and the gateway piggybacks its RSIP ahead
of every response to a non-audit command (except 405/501/520), so that the
first thing the call agent sees from an endpoint is the RSIP.

  - 2xx completes it (an C{N:} in the response becomes the notified
    entity); 521 with C{N:} redirects it to that call agent (new
    transaction); 4xx repeats it after a back-off; another 5xx stops it
    until a command arrives;
  - no response (the transaction timed out) makes the endpoints
    disconnected: wait a uniform random time in [1, Tdinit], send again,
    double the wait up to Tdmax after each failure, a new transaction id
    each time; a command for an endpoint, or local activity after Tdmin,
    sends at once.  A restart that times out keeps its method
    (C{restart}), as §4.4.7 asks; a disconnection found by an NTFY (or a
    gateway DLCX) that timed out sends C{disconnected} with C{RD:} the
    seconds since the endpoint was disconnected.
"""

from __future__ import annotations

from random import Random
from typing import Any, Iterable, Protocol, runtime_checkable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import TransactionAborted, TransactionTimeout
from ..mgcp import Command, EndpointName, NotifiedEntity, ParamCode, ReasonCode, Response, RestartMethod, Verb
from ..transaction import Address
from .config import GatewayConfig
from .endpoint import Endpoint
from .timers import Timers

__all__ = ["Procedure", "Restarts", "RestartContext"]

_REDIRECT_LIMIT = 10


class Procedure:
    """One RSIP announcement and its retries."""

    __slots__ = (
        "endpoints", "name", "method", "delay", "reason", "command", "layer", "done", "failed",
        "since", "interval", "last_end", "timer", "redirects", "retries", "waiters",
    )

    def __init__(self, endpoints: tuple[Endpoint, ...], name: EndpointName, method: RestartMethod,
                 delay: int, reason: ReasonCode | None) -> None:
        self.endpoints = endpoints
        self.name = name
        self.method = method
        self.delay = delay
        self.reason = reason
        self.command: Command | None = None  # the RSIP in flight
        self.layer: Deferred[Response] | None = None
        self.done = False
        self.failed = False
        self.since: float | None = None  # when the endpoints became disconnected
        self.interval = 0.0
        self.last_end = 0.0
        self.timer: IDelayedCall | None = None
        self.redirects = 0
        self.retries = 0
        self.waiters: list[Deferred[Any]] = []

    @property
    def disconnected(self) -> bool:
        return self.since is not None

    def wait(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiters.append(d)
        return d

    def _fire(self, outcome: Response | Failure | None) -> None:
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)


@runtime_checkable
class RestartContext(Protocol):
    """What the RSIP procedures need of the gateway (the gateway provides it)."""

    config: GatewayConfig
    clock: IReactorTime
    timers: Timers
    random: Random
    stopped: bool
    endpoints: tuple[Endpoint, ...]
    wildcard_name: EndpointName  # *@domain: all of the gateway's endpoints

    def allocate_transaction_id(self) -> int:
        """A fresh transaction id (each attempt of a procedure gets one)."""

    def send_command(self, command: Command, address: Address) -> Deferred[Response]:
        """Send reliably (the transaction layer)."""

    def ne_address(self, ep: Endpoint) -> Address | Deferred[Address]:
        """Where the endpoint's commands go (its notified entity)."""

    def set_notified_entity(self, ep: Endpoint, entity: NotifiedEntity) -> None:
        """A redirect (521) or a 2xx with C{N:} names a new call agent."""

    def flush_held(self, ep: Endpoint) -> None:
        """Send the NTFYs held until the endpoint's RSIP was acknowledged."""


class Restarts:
    """The gateway's RSIP procedures (see the module docstring)."""

    log = Logger()

    def __init__(self, context: RestartContext) -> None:
        self._context = context
        self.procedures: set[Procedure] = set()

    # -- starting --------------------------------------------------------

    def begin(
        self,
        endpoints: Iterable[Endpoint],
        method: RestartMethod,
        *,
        delay: int = 0,
        reason: ReasonCode | None = None,
        wait: float = 0.0,
        since: float | None = None,
    ) -> Procedure:
        """
        Announce C{endpoints} (all of them: C{*@domain}) with an RSIP, at once
        or after C{wait} seconds; any procedure they were in is superseded.
        """
        context = self._context
        endpoints = tuple(endpoints)
        name = context.wildcard_name if len(endpoints) == len(context.endpoints) else endpoints[0].name
        if len(endpoints) not in (1, len(context.endpoints)):
            raise ValueError("a procedure covers one endpoint or all of them")
        procedure = Procedure(endpoints, name, method, delay, reason)
        procedure.since = since
        procedure.interval = wait
        for ep in endpoints:
            old = ep.procedure
            if old is not None:
                self._leave(old, ep)
            ep.procedure = procedure
            if method is RestartMethod.DISCONNECTED:
                ep.restart_method = RestartMethod.DISCONNECTED
            elif method is RestartMethod.CANCEL_GRACEFUL:
                ep.restart_method = RestartMethod.RESTART
            else:
                ep.restart_method = method
        self.procedures.add(procedure)
        if wait > 0:
            procedure.timer = context.timers.call_later(wait, self.run, procedure)
        else:
            self.run(procedure)
        return procedure

    def disconnected(self, ep: Endpoint) -> None:
        """An endpoint's command to the call agent timed out (§4.4.7)."""
        if ep.procedure is not None or not ep.in_service:
            return  # a procedure already covers it; out of service: nothing to announce
        context = self._context
        now = context.clock.seconds()
        wait = context.random.uniform(1.0, context.config.tdinit)
        self.log.info("{endpoint} is disconnected; RSIP in {wait:.1f} s", endpoint=ep.name, wait=wait)
        ep.note("disconnected")
        self.begin((ep,), RestartMethod.DISCONNECTED, wait=wait, since=now)

    def _leave(self, old: Procedure, ep: Endpoint) -> None:
        """C{ep} moves to a new procedure; the old one ends when nobody is left in it."""
        ep.procedure = None
        if any(other.procedure is old for other in old.endpoints):
            return
        self._end(old)
        old._fire(None)

    def _end(self, procedure: Procedure) -> None:
        procedure.done = True
        self._context.timers.cancel(procedure.timer)
        procedure.timer = None
        procedure.command = None
        layer, procedure.layer = procedure.layer, None
        if layer is not None:
            layer.cancel()
        self.procedures.discard(procedure)

    # -- running ---------------------------------------------------------

    def run(self, procedure: Procedure) -> None:
        """Send the procedure's RSIP now, with a new transaction id."""
        context = self._context
        if procedure.done or context.stopped:
            return
        context.timers.cancel(procedure.timer)
        procedure.timer = None
        layer, procedure.layer = procedure.layer, None
        procedure.command = None
        if layer is not None:
            layer.cancel()  # a transaction still in flight (its errback sees it superseded)
        delay: int | None = procedure.delay or None
        if procedure.method is RestartMethod.DISCONNECTED:
            delay = int(context.clock.seconds() - (procedure.since or context.clock.seconds()))
        elif procedure.method in (RestartMethod.FORCED, RestartMethod.CANCEL_GRACEFUL):
            delay = None  # MUST NOT be sent with these (§2.3.12)
        command = Command.create(
            Verb.RSIP, context.allocate_transaction_id(), procedure.name,
            restart_method=procedure.method, restart_delay=delay, reason_code=procedure.reason,
            version=context.config.version,
        )
        procedure.command = command
        procedure.failed = False
        for ep in procedure.endpoints:
            if ep.procedure is procedure:
                ep.note(f"RSIP {procedure.method}")
        address = context.ne_address(procedure.endpoints[0])
        if isinstance(address, Deferred):
            address.addCallbacks(
                self._send, self._failed, callbackArgs=(procedure, command),
                errbackArgs=(procedure, command),
            )
        else:
            self._send(address, procedure, command)

    def _send(self, address: Any, procedure: Procedure, command: Command) -> None:
        if procedure.command is not command or self._context.stopped:
            return
        d = self._context.send_command(command, address)
        procedure.layer = d
        d.addCallbacks(
            self._answered, self._failed, callbackArgs=(procedure, command, d),
            errbackArgs=(procedure, command, d),
        )

    def before_response(self, procedure: Procedure) -> Command | None:
        """
        The RSIP to put ahead of a response for one of the procedure's
        endpoints; a procedure not in flight (waiting, backing off or
        stopped after an error) is sent now (§4.4.6, §4.4.7).
        """
        if procedure.done:
            return None
        if procedure.command is None:
            self.run(procedure)
        return procedure.command

    def command_arrived(self, ep: Endpoint) -> None:
        """Any command for the endpoint starts a waiting procedure."""
        procedure = ep.procedure
        if procedure is not None and not procedure.done and procedure.command is None:
            self.run(procedure)

    def activity(self, ep: Endpoint) -> None:
        """
        Local user activity: starts a waiting restart at once, and a
        disconnected procedure only when Tdmin passed since the
        disconnection or the last attempt (§4.4.7).
        """
        procedure = ep.procedure
        if procedure is None or procedure.done or procedure.command is not None:
            return
        if procedure.since is not None:
            now = self._context.clock.seconds()
            if now - max(procedure.since, procedure.last_end) < self._context.config.tdmin:
                return
        self.run(procedure)

    # -- outcomes --------------------------------------------------------

    def _answered(self, response: Response, procedure: Procedure, command: Command,
                  d: Deferred[Response]) -> None:
        if procedure.command is not command:
            return
        procedure.command = None
        procedure.layer = None
        context = self._context
        code = response.code
        if 200 <= code < 300:
            self._complete(procedure, response)
        elif code == 521 and ParamCode.NOTIFIED_ENTITY in response.params \
                and procedure.redirects < _REDIRECT_LIMIT:
            procedure.redirects += 1
            entity = response.params[ParamCode.NOTIFIED_ENTITY]
            self.log.info("RSIP redirected to {entity}", entity=str(entity))
            for ep in procedure.endpoints:
                context.set_notified_entity(ep, entity)
            self.run(procedure)
        elif 400 <= code < 500:
            procedure.retries += 1
            wait = min(float(2 ** min(procedure.retries, 16)), context.config.tdmax)
            procedure.timer = context.timers.call_later(wait, self.run, procedure)
        else:
            procedure.failed = True
            procedure.last_end = context.clock.seconds()
            self.log.warn(
                "RSIP {method} for {endpoint} refused with {code}: not retrying until a command arrives",
                method=str(procedure.method), endpoint=procedure.name, code=code,
            )
            procedure._fire(response)

    def _complete(self, procedure: Procedure, response: Response) -> None:
        context = self._context
        self._end(procedure)
        entity = response.params.get(ParamCode.NOTIFIED_ENTITY)
        for ep in procedure.endpoints:
            if ep.procedure is not procedure:
                continue
            ep.procedure = None
            if entity is not None and not entity.is_empty:
                context.set_notified_entity(ep, entity)
            if procedure.method is RestartMethod.DISCONNECTED:
                ep.restart_method = RestartMethod.RESTART
                ep.note("connected again")
            current = ep.current
            if current is not None and current.failed:
                ep.notification_done(current)
            context.flush_held(ep)
        procedure._fire(response)

    def _failed(self, failure: Failure, procedure: Procedure, command: Command,
                d: Deferred[Response] | None = None) -> None:
        if procedure.command is not command:
            return None  # superseded or cancelled
        procedure.command = None
        procedure.layer = None
        if failure.check(TransactionAborted):
            return None  # the gateway is stopping
        context = self._context
        if not failure.check(TransactionTimeout):
            # The call agent's name did not resolve: as unreachable as a timeout.
            self.log.info("RSIP for {endpoint} not sent: {error}", endpoint=procedure.name,
                          error=failure.getErrorMessage())
        now = context.clock.seconds()
        procedure.last_end = now
        if procedure.since is None:
            procedure.since = now
            procedure.interval = context.random.uniform(1.0, context.config.tdinit)
            self.log.info("{endpoint} is disconnected (no answer to RSIP {method})",
                          endpoint=procedure.name, method=str(procedure.method))
        else:
            procedure.interval = min(procedure.interval * 2, context.config.tdmax)
        procedure.timer = context.timers.call_later(procedure.interval, self.run, procedure)
        procedure._fire(failure)
        return None

    def stop(self) -> None:
        for procedure in list(self.procedures):
            procedure.timer = None
            procedure.layer = None
            procedure.command = None
        self.procedures.clear()
