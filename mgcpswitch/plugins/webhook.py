# -*- test-case-name: tests.test_webhook -*-
"""
The C{webhook} observer plugin: POSTs call records (and, if asked, other
events) as JSON to a URL, with treq.

    [switch]
    observers = webhook

    [plugin:webhook]
    url = https://billing.example.com/mgcp/cdr
    events = call-ended                 ; or several, comma-separated, or *
    timeout = 5                         ; seconds per POST, body included
    queue = 1000                        ; events waiting beyond this are dropped
    concurrency = 2                     ; POSTs in flight at once
    authorization = Bearer 0123abcd     ; optional Authorization header

For C{call-ended} the body is the call record (L{CallRecord.to_json}); for
the other events it is the event's own JSON.  The C{X-Mgcpswitch-Event}
header names the event either way.  A webhook that fails, answers non-2xx
or is too slow is logged and counted; it never reaches call control.  Events
wait in a bounded queue, so a dead webhook costs at most C{queue} bodies
of memory: beyond it they are dropped and counted.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Mapping
from urllib.parse import urlsplit

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, DeferredList, TimeoutError, ensureDeferred
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from mgcpswitch.agent.model import (
    CallEnded,
    CallStarted,
    CallStateChanged,
    EndpointStateChanged,
    GatewayStateChanged,
)
from mgcpswitch.config import REQUIRED, Key, integer, names, number, optional_text
from mgcpswitch.interfaces import ICallObserver, ICallObserverFactory

__all__ = ["WebhookObserver", "WebhookPlugin", "webhook", "EVENT_NAMES"]

EVENT_NAMES = frozenset(
    {"call-started", "call-state-changed", "call-ended", "gateway-state-changed", "endpoint-state-changed"}
)
_EVENT_TYPES = {
    CallStarted: "call-started",
    CallStateChanged: "call-state-changed",
    CallEnded: "call-ended",
    GatewayStateChanged: "gateway-state-changed",
    EndpointStateChanged: "endpoint-state-changed",
}


@implementer(ICallObserver, IService)
class WebhookObserver(Service):
    """
    Queues the events it is told of and POSTs them, C{concurrency} at a
    time.  C{http} is anything with treq's C{post(url, data=, headers=)}:
    an L{treq.client.HTTPClient}, the treq module, or a StubTreq in tests.
    """

    name = "webhook"
    log = Logger()

    def __init__(
        self,
        url: str,
        *,
        http: Any,
        reactor: Any,
        events: frozenset[str] = frozenset({"call-ended"}),
        timeout: float = 5.0,
        queue: int = 1000,
        concurrency: int = 2,
        authorization: str | None = None,
    ) -> None:
        self.url = url
        self.http = http
        self.reactor = reactor
        self.events = events
        self.timeout = timeout
        self.queue_size = queue
        self.concurrency = concurrency
        self.headers = {"Content-Type": ["application/json"], "User-Agent": ["mgcpswitch-webhook"]}
        if authorization:
            self.headers["Authorization"] = [authorization]
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: deque[tuple[str, bytes]] = deque()
        self._in_flight: set[Deferred[Any]] = set()
        self._overflowing = False
        self._stopped = False

    def stats(self) -> dict[str, int]:
        """Counters, for logs and metrics."""
        return {
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "queued": len(self._queue),
            "in_flight": len(self._in_flight),
        }

    # ICallObserver
    def call_event(self, event: Any) -> None:
        name = _EVENT_TYPES.get(type(event))
        if name is None or ("*" not in self.events and name not in self.events):
            return
        if self._stopped or len(self._queue) >= self.queue_size:
            self._drop(name)
            return
        body = event.record.to_json() if isinstance(event, CallEnded) else event.to_json()
        self._queue.append((name, json.dumps(body, separators=(",", ":")).encode("utf-8")))
        self._pump()

    def _drop(self, name: str) -> None:
        self.dropped += 1
        if not self._overflowing:
            self._overflowing = True
            self.log.warn(
                "webhook {url}: queue full ({queued} waiting, {in_flight} in flight); dropping {event} events",
                url=self.url,
                queued=len(self._queue),
                in_flight=len(self._in_flight),
                event=name,
            )

    def _pump(self) -> None:
        while self._queue and len(self._in_flight) < self.concurrency:
            name, body = self._queue.popleft()
            d = ensureDeferred(self._post(name, body))
            d.addTimeout(self.timeout, self.reactor)
            d.addCallbacks(self._answered, self._failed, callbackArgs=(name,), errbackArgs=(name,))
            if not d.called:
                self._in_flight.add(d)
                d.addBoth(self._finished, d)
        if not self._queue:
            self._overflowing = False

    async def _post(self, name: str, body: bytes) -> int:
        headers = dict(self.headers, **{"X-Mgcpswitch-Event": [name]})
        response = await self.http.post(self.url, data=body, headers=headers)
        await response.content()  # read it all, so the connection can be reused
        return int(response.code)

    def _answered(self, code: int, name: str) -> None:
        if 200 <= code < 300:
            self.sent += 1
            return
        self.failed += 1
        self.log.warn("webhook {url} answered {code} to a {event} event", url=self.url, code=code, event=name)

    def _failed(self, failure: Failure, name: str) -> None:
        self.failed += 1
        if failure.check(TimeoutError):
            error = f"no answer within {self.timeout:g} s"
        else:
            error = failure.getErrorMessage() or repr(failure.value)
        self.log.warn("webhook {url} failed for a {event} event: {error}", url=self.url, event=name, error=error)

    def _finished(self, result: Any, d: Deferred[Any]) -> None:
        self._in_flight.discard(d)
        self._pump()

    # IService
    def stopService(self) -> Deferred[Any]:
        """Drop what waits (counted), and wait for the POSTs in flight."""
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        self._stopped = True
        if self._queue:
            self.log.warn(
                "webhook {url}: stopping; {count} queued events not sent", url=self.url, count=len(self._queue)
            )
            self.dropped += len(self._queue)
            self._queue.clear()
        return DeferredList(list(self._in_flight))


def _url(value: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url


def _events(value: str) -> frozenset[str]:
    events = frozenset(names(value))
    unknown = sorted(events - EVENT_NAMES - {"*"})
    if unknown or not events:
        raise ValueError(
            f"unknown events {', '.join(unknown) or '(none given)'}; choose from {', '.join(sorted(EVENT_NAMES))} or *"
        )
    return events


@implementer(IPlugin, ICallObserverFactory)
class WebhookPlugin:
    """Builds a L{WebhookObserver} from C{[plugin:webhook]}."""

    name = "webhook"
    keys: Mapping[str, Key] = {
        "url": Key(_url, REQUIRED, "the http:// or https:// URL to post to"),
        "events": Key(_events, frozenset({"call-ended"}), "events to post, comma-separated, or *"),
        "timeout": Key(number(0.001), 5.0, "seconds per POST, body included"),
        "queue": Key(integer(1), 1000, "events waiting beyond this are dropped"),
        "concurrency": Key(integer(1), 2, "POSTs in flight at once"),
        "authorization": Key(optional_text, None, "the Authorization header to send"),
    }

    def build(self, settings: Mapping[str, Any], context: Any) -> WebhookObserver:
        options = dict(settings)
        http = context.extras.get("http_client")
        if http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            pool = HTTPConnectionPool(context.reactor, persistent=True)
            http = HTTPClient(Agent(context.reactor, pool=pool, connectTimeout=options["timeout"]))
        return WebhookObserver(options.pop("url"), http=http, reactor=context.reactor, **options)


webhook = WebhookPlugin()
