# -*- test-case-name: tests.test_agent_calls -*-
"""
What a line hears and watches for: notification requests (RQNT, RFC 3435
§2.3.3) and what their answers mean for the line.

Every request gets a fresh request id (X:) from the line machine; an
answer that says the hook is not what we thought (401 already off hook,
402 already on hook) becomes the line input the hook change would have
been, so a request that lost a race with the phone never leaves the line
waiting.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import TransactionTimeout
from ..mgcp import DEFAULT_VERSION, Command, Response, ReturnCode, Verb, encode
from ..transaction import Callbacks, Encoded
from . import commands as cmd
from .lines import Line, LineInput, LineMachine
from .model import Hook
from .wire import Wire

__all__ = ["Requests"]

#: Stand-ins for the transaction id and the request id in an RQNT encoded
#: as a template (L{Requests.shed_request}): found by position, then cut out.
_TEMPLATE_TXID = 999999999
_TEMPLATE_REQUEST_ID = "5eedf00d5eedf00d"
#: Templates kept at most (one per line shed; a dynamic gateway's endpoints are not bounded).
_MAX_TEMPLATES = 65536


class Requests:
    log = Logger()

    def __init__(
        self,
        wire: Wire,
        lines: LineMachine,
        feed: Callable[[Line, LineInput], None],
        idle_events: tuple[Any, ...],
        counters: Any,
        flash_digit_map: Any = None,
        recheck: Callable[[Any], None] = lambda endpoint: None,
    ) -> None:
        self._wire = wire
        self._recheck = recheck
        self._lines = lines
        self._feed = feed
        self.idle_events = idle_events
        self._embedded = idle_events is cmd.DIALLING_ON_OFF_HOOK
        self._counters = counters
        self.flash_digit_map = flash_digit_map  # None: the line's digit map
        # The shed RQNT of each line shed so far, in bytes around its
        # transaction id and request id (L{shed_request}).
        self._shed_templates: dict[Any, tuple[tuple[Any, ...], bytes, bytes]] = {}

    def send(self, line: Line, events: tuple[Any, ...], signals: tuple[Any, ...] = cmd.NO_SIGNALS,
             dialling: bool = False, call: Any = None, digit_map: Any = None) -> Deferred[Response]:
        """An RQNT with a fresh request id; the digit map goes with requests that collect digits."""
        return self._wire.send(line.endpoint.gateway, self._rqnt(line, events, signals, dialling, digit_map), call)

    def _rqnt(self, line: Line, events: tuple[Any, ...], signals: tuple[Any, ...], dialling: bool,
              digit_map: Any) -> Command:
        endpoint = line.endpoint
        request_id = self._lines.new_request(line, dialling)
        if digit_map is None and (dialling or events is cmd.DIALLING_EVENTS):
            digit_map = endpoint.digit_map
        return cmd.rqnt(self._wire.txid(), endpoint.name, request_id, events, signals, digit_map)

    def dial_tone(self, line: Line) -> None:
        """Dial tone (stutter dial tone when a message waits: RFC 3660 L/sl), collecting digits."""
        signals = cmd.STUTTER_DIAL_TONE if line.endpoint.services.message_waiting else cmd.DIAL_TONE
        self._collect(line, cmd.DIALLING_EVENTS, signals)

    def stutter_dial_tone(self, line: Line) -> None:
        """The second stage of a star code: stutter dial tone, collecting the number."""
        self._collect(line, cmd.DIALLING_EVENTS, cmd.STUTTER_DIAL_TONE)

    def recall_dial_tone(self, line: Line) -> None:
        """After a flash put the call on hold: stutter dial tone, digits (the feature map), flash again."""
        self._collect(line, cmd.DIALLING_FLASH_EVENTS, cmd.STUTTER_DIAL_TONE, self.flash_digit_map)

    def _collect(self, line: Line, events: tuple[Any, ...], signals: tuple[Any, ...], digit_map: Any = None) -> None:
        if digit_map is None:
            digit_map = line.endpoint.digit_map
        command = self._rqnt(line, events, signals, False, digit_map)
        self._wire.request(line.endpoint.gateway, command, None, self._dial_tone_done, self._lost, line, line.request_id)

    def _dial_tone_done(self, response: Response, line: Line, request_id: str) -> None:
        if response.code == ReturnCode.ALREADY_ON_HOOK:
            self._lines.hook_seen(line, Hook.ON)
            self._feed(line, LineInput.ON_HOOK)
        elif response.code >= 300:
            self.line_error(line, response)
        elif line.request_id == request_id:
            self._feed(line, LineInput.ARMED)

    def arm_idle(self, line: Line) -> None:
        """
        Watch for the off-hook (with dial tone and digit collection embedded,
        if configured), and show the message-waiting indicator when it
        changed or the gateway may have forgotten it (RFC 3660: L/vmwi is
        refreshed after a restart, which resets the lines to unknown).
        """
        endpoint = line.endpoint
        events = self.idle_events
        waiting = endpoint.services.message_waiting
        if self._embedded and waiting:
            events = cmd.DIALLING_ON_OFF_HOOK_STUTTER
        signals = cmd.NO_SIGNALS
        if waiting or endpoint.mwi_shown:
            if endpoint.mwi_shown is not waiting:
                signals = cmd.MWI_ON if waiting else cmd.MWI_OFF
                endpoint.mwi_shown = waiting
        self._track(line, events, signals, dialling=self._embedded)

    def overload_tone(self, line: Line, signals: tuple[Any, ...]) -> None:
        """
        A new call shed at its first NTFY: the tone, and nothing more to
        hear from the line until its next off-hook (the gateway re-arms it
        on the hang-up, L{cmd.SHED_EVENTS}).  Answers are those of any
        request: 402 (hung up already) re-arms the line, a time-out audits it.
        """
        self._track(line, cmd.SHED_EVENTS, signals)

    def shed_request(self, line: Line, signals: tuple[Any, ...]) -> Optional[tuple[Encoded, Callbacks]]:
        """
        L{overload_tone}'s RQNT already encoded, with what waits for its
        answer (as L{_track}'s), to ride after the response of the NTFY
        being shed (L{Reply.after}); None when it must be built the usual
        way (the gateway speaks another profile, or an agent of a cluster
        names itself in C{N:}).  The line's RQNT is encoded once, as a
        template, and its transaction id and request id are spliced in:
        in a surge thousands of calls a second are shed, and building and
        encoding the command was near a tenth of a shed call's cost.  Its answers are those
        of any request (L{_armed}, L{_lost}).
        """
        endpoint = line.endpoint
        gateway = endpoint.gateway
        wire = self._wire
        if wire.notified_entity is not None or gateway.version is not DEFAULT_VERSION:
            return None
        name = endpoint.name
        template = self._shed_templates.get(name)
        if template is None or template[0] is not signals:
            template = self._shed_template(name, signals)
        request_id = self._lines.new_request(line, False)
        txid = wire.txid()
        gateway.counters["commands_sent"] += 1
        datagram = b"RQNT %d%s%s%s" % (txid, template[1], request_id.encode(), template[2])
        return (Encoded(Verb.RQNT, txid, name, datagram), Callbacks(self._armed, self._lost, line, request_id))

    def _shed_template(self, name: Any, signals: tuple[Any, ...]) -> tuple[tuple[Any, ...], bytes, bytes]:
        """The shed RQNT to the endpoint C{name}: the bytes between the txid and the request id, and after it."""
        data = encode(cmd.rqnt(_TEMPLATE_TXID, name, _TEMPLATE_REQUEST_ID, cmd.SHED_EVENTS, signals))
        head = b"RQNT %d" % _TEMPLATE_TXID
        middle, found, tail = data[len(head):].partition(b"\r\nX: %s\r\n" % _TEMPLATE_REQUEST_ID.encode())
        assert data.startswith(head) and found, data
        template = (signals, middle + b"\r\nX: ", b"\r\n" + tail)
        if len(self._shed_templates) >= _MAX_TEMPLATES:
            self._shed_templates.clear()
        self._shed_templates[name] = template
        return template

    def busy_tone(self, line: Line) -> None:
        self._track(line, self._watch(line), cmd.BUSY_TONE)

    def reorder_tone(self, line: Line) -> None:
        self._track(line, self._watch(line), cmd.REORDER_TONE)

    def watch_hang_up(self, line: Line, call: Optional[Any] = None) -> None:
        """The line talks: watch for its hang-up (and its flash, when its services use it)."""
        self._track(line, line.endpoint.call_events, call=call)

    watch_call = watch_hang_up

    def ringback(self, line: Line) -> None:
        """The caller hears ringback again (after a flash with nothing to do)."""
        self._track(line, line.endpoint.call_events, cmd.RINGBACK)

    def ring(self, line: Line) -> None:
        """Ring the line again for a call it left on hold (recall)."""
        self._track(line, cmd.OFF_HOOK_EVENTS, cmd.RINGING)

    def confirm(self, line: Line) -> None:
        """A star code took effect: the confirmation tone (G/cf), then wait for the hang-up."""
        self._track(line, cmd.HANG_UP_EVENTS, cmd.CONFIRMATION_TONE)

    @staticmethod
    def _watch(line: Line) -> tuple[Any, ...]:
        """After a failed consultation call a flash brings the held call back: watch it too."""
        return line.endpoint.call_events if line.legs else cmd.HANG_UP_EVENTS

    def _track(self, line: Line, events: tuple[Any, ...], signals: tuple[Any, ...] = cmd.NO_SIGNALS,
               dialling: bool = False, call: Any = None) -> None:
        """Send the line an RQNT whose answer is that of any request (L{_armed}, L{_lost})."""
        command = self._rqnt(line, events, signals, dialling, None)
        self._wire.request(line.endpoint.gateway, command, call, self._armed, self._lost, line, line.request_id)

    def _lost(self, failure: Failure, line: Line, request_id: Optional[str]) -> None:
        """
        A request got no answer at all (every retransmission lost, T-MAX):
        the gateway may still run the line's previous request, which need
        not watch for the off-hook (or the hang-up), so the line could sit
        "idle" here while a subscriber lifts the handset for nothing.  When
        it is still the line's latest request and no call holds the line,
        the line is unknown until an audit reads its hook and arms it.
        """
        self._wire.command_failed(failure, line)
        if failure.check(TransactionTimeout) and line.request_id == request_id and not line.legs:
            self._feed(line, LineInput.RESET)
            self._recheck(line.endpoint)

    def _armed(self, response: Response, line: Line, request_id: Optional[str]) -> None:
        # request_id is L{_lost}'s: both get the one argument list (L{Wire.request}).
        code = response.code
        if code == ReturnCode.ALREADY_OFF_HOOK:
            # Glare: the line went off hook before our request arrived.
            self._lines.hook_seen(line, Hook.OFF)
            self._feed(line, LineInput.OFF_HOOK)
        elif code == ReturnCode.ALREADY_ON_HOOK:
            self._lines.hook_seen(line, Hook.ON)
            self._feed(line, LineInput.ON_HOOK)
        elif code >= 300:
            self.line_error(line, response)

    def line_error(self, line: Line, response: Response) -> None:
        """An error answer for a line: an endpoint the gateway does not have is out of service."""
        self._counters["line_errors"] += 1
        self.log.warn(
            "{line}: the gateway answered {code} {comment}",
            line=line.endpoint.name, code=int(response.code), comment=response.comment,
        )
        if response.code in (ReturnCode.UNKNOWN_ENDPOINT, ReturnCode.ENDPOINT_NOT_READY):
            self._feed(line, LineInput.OUT_OF_SERVICE)
