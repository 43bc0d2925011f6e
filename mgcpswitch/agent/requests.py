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

from ..mgcp import Response, ReturnCode
from . import commands as cmd
from .lines import Line, LineInput, LineMachine
from .model import Hook
from .wire import Wire

__all__ = ["Requests"]


class Requests:
    log = Logger()

    def __init__(
        self,
        wire: Wire,
        lines: LineMachine,
        feed: Callable[[Line, LineInput], None],
        idle_events: tuple[Any, ...],
        counters: Any,
    ) -> None:
        self._wire = wire
        self._lines = lines
        self._feed = feed
        self.idle_events = idle_events
        self._embedded = idle_events is cmd.DIALLING_ON_OFF_HOOK
        self._counters = counters

    def send(self, line: Line, events: tuple[Any, ...], signals: tuple[Any, ...] = cmd.NO_SIGNALS,
             dialling: bool = False, call: Any = None) -> Deferred[Response]:
        """An RQNT with a fresh request id; the digit map goes with requests that collect digits."""
        endpoint = line.endpoint
        request_id = self._lines.new_request(line, dialling)
        digit_map = endpoint.digit_map if dialling or events is cmd.DIALLING_EVENTS else None
        command = cmd.rqnt(self._wire.txid(), endpoint.name, request_id, events, signals, digit_map)
        return self._wire.send(endpoint.gateway, command, call)

    def dial_tone(self, line: Line) -> None:
        self.send(line, cmd.DIALLING_EVENTS, cmd.DIAL_TONE).addCallbacks(
            self._dial_tone_done, self._wire.command_failed, (line, line.request_id), None, (line,)
        )

    def _dial_tone_done(self, response: Response, line: Line, request_id: str) -> None:
        if response.code == ReturnCode.ALREADY_ON_HOOK:
            self._lines.hook_seen(line, Hook.ON)
            self._feed(line, LineInput.ON_HOOK)
        elif response.code >= 300:
            self.line_error(line, response)
        elif line.request_id == request_id:
            self._feed(line, LineInput.ARMED)

    def arm_idle(self, line: Line) -> None:
        """Watch for the off-hook (with dial tone and digit collection embedded, if configured)."""
        self._track(self.send(line, self.idle_events, dialling=self._embedded), line)

    def busy_tone(self, line: Line) -> None:
        self._track(self.send(line, cmd.HANG_UP_EVENTS, cmd.BUSY_TONE), line)

    def reorder_tone(self, line: Line) -> None:
        self._track(self.send(line, cmd.HANG_UP_EVENTS, cmd.REORDER_TONE), line)

    def watch_hang_up(self, line: Line, call: Optional[Any] = None) -> None:
        """The callee answered: its ringing stopped on the off-hook; watch for its hang-up."""
        self._track(self.send(line, cmd.HANG_UP_EVENTS, call=call), line)

    def _track(self, d: Deferred[Response], line: Line) -> None:
        d.addCallbacks(self._armed, self._wire.command_failed, (line,), None, (line,))

    def _armed(self, response: Response, line: Line) -> None:
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
