# -*- test-case-name: tests.test_agent_calls -*-
"""
The call agent's way out: every command call control sends goes here.

L{Wire.send} counts the command against its gateway, records it (and its
answer) in the call's ladder, and sends it as its own transaction.  While
an NTFY is being handled, commands to the gateway that sent it are held
instead and handed back with the NTFY's response (L{Wire.collect} /
L{Wire.collected}): the transaction layer sends them in the response's
datagram (RFC 3435 §4.4.1: the piggybacked NTFY response and next RQNT),
each still its own transaction.

An active agent of a cluster sets L{Wire.notified_entity}: every command
that may carry C{N:} then does, so that whatever a gateway hears from it
makes it the endpoint's notified entity (RFC 3435 §4.1: this is how an
agent that takes over re-homes the endpoints, and keeps them).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import TransactionAborted, TransactionTimeout
from ..interfaces import ITransactionSender
from ..mgcp import DEFAULT_VERSION, Command, NotifiedEntity, Response, Verb
from ..transaction import Callbacks, Waiter
from .registry import in_profile

__all__ = ["Wire"]

#: The commands that may set an endpoint's notified entity (§2.3: audits may not).
_HOMING = frozenset((Verb.RQNT, Verb.CRCX, Verb.MDCX, Verb.DLCX))


class Wire:
    log = Logger()

    def __init__(self, clock: IReactorTime, sender: ITransactionSender, counters: Any) -> None:
        self._clock = clock
        self._sender = sender
        self._counters = counters
        self._holding: Any = None  # the gateway whose NTFY is being handled
        self._held: list[tuple[Command, Waiter]] = []
        self.notified_entity: NotifiedEntity | None = None
        #: A fresh transaction id for a command (the layer's, bound once).
        self.txid: Callable[[], int] = sender.allocate_transaction_id

    def send(self, gateway: Any, command: Command, call: Any = None) -> Deferred[Response]:
        """Send C{command} to C{gateway}; the Deferred fires with its final response."""
        command = self._outgoing(gateway, command)
        ladder = call.ladder if call is not None else None
        if ladder is not None:
            ladder.append((self._clock.seconds(), "out", gateway, command))
        if gateway is self._holding:
            d: Deferred[Response] = Deferred()
            self._held.append((command, d))
        else:
            d = self._sender.send_command(command, gateway.address)
        if ladder is not None:
            d.addCallback(_note_answer, self._clock, ladder, gateway)
        return d

    def request(
        self, gateway: Any, command: Command, call: Any,
        on_response: Callable[..., object], on_failure: Callable[..., object], *args: Any,
    ) -> None:
        """
        As L{send}, with C{on_response(response, *args)} or
        C{on_failure(failure, *args)} called instead of a Deferred fired:
        call control's commands, one per step of a call, have a single
        consumer each, and a Deferred cost more than the layer's own
        bookkeeping of the transaction (L{Callbacks}).
        """
        if call is not None and call.ladder is not None:
            # The ladder notes the answer before its consumer runs: send's way.
            self.send(gateway, command, call).addCallbacks(on_response, on_failure, args, errbackArgs=args)
            return
        command = self._outgoing(gateway, command)
        waiter = Callbacks(on_response, on_failure, *args)
        if gateway is self._holding:
            self._held.append((command, waiter))
        else:
            self._sender.send(command, gateway.address, waiter)

    def _outgoing(self, gateway: Any, command: Command) -> Command:
        """C{command} counted against C{gateway}, as it goes to it (our C{N:}, its profile)."""
        gateway.counters["commands_sent"] += 1
        if self.notified_entity is not None and command.verb in _HOMING:
            command = command.with_params(notified_entity=self.notified_entity)
        if gateway.version is not DEFAULT_VERSION:
            command = in_profile(gateway, command)
        return command

    def command_failed(self, failure: Failure, line: Any) -> None:
        """
        A line's command (an RQNT, a stray DLCX) got no answer: counted and
        logged; the line's next audit heals what it left.
        """
        if failure.trap(TransactionTimeout, TransactionAborted) is TransactionAborted:
            return  # shutting down
        self._counters["line_timeouts"] += 1
        self.log.info("{line}: command timed out", line=line.endpoint.name)

    def collect(self, gateway: Any) -> None:
        """Hold the commands for C{gateway} until L{collected} (an NTFY from it is handled)."""
        self._holding = gateway  # nothing is held meanwhile: L{collected} leaves the list empty

    def collected(self) -> tuple[tuple[Command, Waiter], ...]:
        """Stop holding; the held commands with what waits for their outcome, in order."""
        self._holding = None
        held = self._held
        if not held:
            return ()
        self._held = []
        return tuple(held)



def _note_answer(response: Response, clock: IReactorTime, ladder: list[Any], gateway: Any) -> Response:
    ladder.append((clock.seconds(), "in", gateway, response))
    return response
