"""
The webhook observer plugin: what it posts, which events, failures logged
and contained, timeouts, the bounded queue and its settings.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.application.service import IService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from zope.interface.verify import verifyObject

from mgcpswitch.agent.model import CallEnded, CallRecord, CallStarted, ReleaseCause
from mgcpswitch.errors import ConfigError
from mgcpswitch.interfaces import ICallObserver, ICallObserverFactory
from mgcpswitch.plugin import PluginContext, available, build, find, read_section
from mgcpswitch.plugins.webhook import WebhookObserver, webhook

from .support.fake_control import FakeCallControl

URL = "http://hooks.test/cdr"


class Receiver(Resource):
    """The webhook's far end: records every request, answers C{code}."""

    isLeaf = True

    def __init__(self, code: int = 204) -> None:
        super().__init__()
        self.code = code
        self.requests: list[tuple[str, dict[str, list[str]], bytes]] = []

    def render_POST(self, request: Any) -> bytes:
        headers = {k.decode().lower(): [v.decode() for v in vs] for k, vs in request.requestHeaders.getAllRawHeaders()}
        self.requests.append((request.uri.decode(), headers, request.content.read()))
        request.setResponseCode(self.code)
        return b""


class Hand:
    """An HTTP client whose answers the test gives by hand."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, bytes, Deferred[Any]]] = []

    def post(self, url: str, data: bytes, headers: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.posts.append((url, data, d))
        return d


def ended(fake: FakeCallControl, call_id: str = "c1") -> CallEnded:
    call = fake.calls[call_id]
    record = CallRecord(call_id, call.caller, call.callee, call.caller, call.callee, "A1", "A2", "PCMU",
                        call.started, call.answered, call.started + 60, ReleaseCause.NORMAL)
    return CallEnded(call, record)


class Capture:
    """Log events at warn and above, while the test runs."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.observe)
        case.addCleanup(globalLogPublisher.removeObserver, self.observe)

    def observe(self, event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.warn, LogLevel.error) and "url" in event:
            self.events.append(event)


class Plugin(SynchronousTestCase):
    def test_discovered_and_verified(self) -> None:
        """The plugin is found by name and provides its interfaces, as does what it builds."""
        self.assertIs(find(ICallObserverFactory, "webhook"), webhook)
        self.assertIn("webhook", available(ICallObserverFactory))
        verifyObject(IPlugin, webhook)
        verifyObject(ICallObserverFactory, webhook)
        observer = build(webhook, {"url": URL}, PluginContext(Clock(), extras={"http_client": Hand()}))
        verifyObject(ICallObserver, observer)
        verifyObject(IService, observer)
        self.assertEqual(observer.name, "webhook")

    def test_builds_its_own_client(self) -> None:
        """Without an injected client it makes a treq HTTPClient on the context's reactor."""
        from twisted.internet.testing import MemoryReactorClock

        observer = build(webhook, {"url": URL, "timeout": "2"}, PluginContext(MemoryReactorClock()))
        self.assertEqual(type(observer.http).__name__, "HTTPClient")
        self.assertEqual(observer.timeout, 2.0)

    def test_settings(self) -> None:
        """Settings are checked, each error naming its key."""
        self.assertEqual(
            read_section(webhook, {"url": URL, "events": "call-ended, call-started", "queue": "5",
                                   "authorization": "Bearer x"}),
            {"url": URL, "events": frozenset({"call-ended", "call-started"}), "timeout": 5.0, "queue": 5,
             "concurrency": 2, "authorization": "Bearer x"},
        )
        cases = [
            ({}, "url", "required"),
            ({"url": "ftp://x/"}, "url", "not an http"),
            ({"url": URL, "events": "call-ended, call-exploded"}, "events", "call-exploded"),
            ({"url": URL, "timeout": "soon"}, "timeout", "expected a number"),
            ({"url": URL, "queue": "0"}, "queue", "at least 1"),
            ({"url": URL, "concurrency": "1.5"}, "concurrency", "expected an integer"),
            ({"url": URL, "path": "/tmp"}, "path", "unknown key"),
        ]
        for settings, key, message in cases:
            with self.assertRaises(ConfigError) as caught:
                read_section(webhook, settings)
            self.assertEqual(caught.exception.path, ("plugin:webhook", key))
            self.assertIn(message, str(caught.exception))


class Posting(SynchronousTestCase):
    def setUp(self) -> None:
        self.fake = FakeCallControl()
        self.clock = Clock()
        self.receiver = Receiver()
        self.stub = StubTreq(self.receiver)
        self.log = Capture(self)

    def observer(self, **settings: str) -> WebhookObserver:
        return build(  # type: ignore[no-any-return]
            webhook, {"url": URL, **settings}, PluginContext(self.clock, extras={"http_client": self.stub})
        )

    def test_posts_call_record(self) -> None:
        """A call-ended event posts the call record as JSON, with the event named."""
        observer = self.observer(authorization="Bearer hook-secret")
        event = ended(self.fake)
        self.assertIsNone(observer.call_event(event))
        self.stub.flush()
        [(uri, headers, body)] = self.receiver.requests
        self.assertEqual(uri, "/cdr")
        self.assertEqual(json.loads(body), event.record.to_json())
        self.assertEqual(headers["content-type"], ["application/json"])
        self.assertEqual(headers["x-mgcpswitch-event"], ["call-ended"])
        self.assertEqual(headers["authorization"], ["Bearer hook-secret"])
        self.assertEqual(observer.stats(), {"sent": 1, "failed": 0, "dropped": 0, "queued": 0, "in_flight": 0})

    def test_event_filter(self) -> None:
        """Only the configured events are posted; other events as their own JSON."""
        default = self.observer()
        default.call_event(CallStarted(self.fake.calls["c1"]))
        self.stub.flush()
        self.assertEqual(self.receiver.requests, [])
        both = self.observer(events="call-started, call-ended")
        both.call_event(CallStarted(self.fake.calls["c1"]))
        both.call_event(object())  # not an event: ignored
        self.stub.flush()
        [(_, headers, body)] = self.receiver.requests
        self.assertEqual(headers["x-mgcpswitch-event"], ["call-started"])
        self.assertEqual(json.loads(body)["call"]["call_id"], "c1")
        everything = self.observer(events="*")
        everything.call_event(ended(self.fake))
        self.stub.flush()
        self.assertEqual(len(self.receiver.requests), 2)

    def test_error_answer(self) -> None:
        """A non-2xx answer is counted and logged with structured fields."""
        self.receiver.code = 500
        observer = self.observer()
        observer.call_event(ended(self.fake))
        self.stub.flush()
        self.assertEqual((observer.sent, observer.failed), (0, 1))
        [event] = self.log.events
        self.assertEqual((event["url"], event["code"], event["event"]), (URL, 500, "call-ended"))

    def test_connection_failure(self) -> None:
        """A client that fails (even at once) is logged; the observer goes on."""

        class Refusing:
            def post(self, url: str, data: bytes, headers: Any) -> Deferred[Any]:
                return fail(ConnectionRefusedError("hooks.test"))

        observer = WebhookObserver(URL, http=Refusing(), reactor=self.clock)
        observer.call_event(ended(self.fake))
        observer.call_event(ended(self.fake))
        self.assertEqual(observer.stats()["failed"], 2)
        self.assertIn("Connection was refused", self.log.events[0]["error"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        """A webhook slower than the timeout is cancelled; the next event goes out."""
        hand = Hand()
        observer = WebhookObserver(URL, http=hand, reactor=self.clock, timeout=5.0, concurrency=1)
        observer.call_event(ended(self.fake))
        observer.call_event(ended(self.fake))
        self.assertEqual(len(hand.posts), 1)
        self.clock.advance(5)
        self.assertEqual(observer.failed, 1)
        self.assertEqual(self.log.events[0]["error"], "no answer within 5 s")
        self.assertEqual(len(hand.posts), 2)

    def test_bounded_queue(self) -> None:
        """Beyond concurrency + queue, events are dropped and counted, warned about once."""
        hand = Hand()
        observer = WebhookObserver(URL, http=hand, reactor=self.clock, queue=3, concurrency=2)
        for _ in range(8):
            observer.call_event(ended(self.fake))
        self.assertEqual(observer.stats(), {"sent": 0, "failed": 0, "dropped": 3, "queued": 3, "in_flight": 2})
        self.assertEqual(len(self.log.events), 1)
        self.assertIn("queue full", self.log.events[0]["log_format"])

    def test_stop(self) -> None:
        """Stopping drops what waits and waits for what is in flight."""
        hand = Hand()
        observer = WebhookObserver(URL, http=hand, reactor=self.clock, concurrency=1)
        observer.startService()
        observer.call_event(ended(self.fake))
        observer.call_event(ended(self.fake))
        stopped = observer.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(observer.dropped, 1)
        hand.posts[0][2].callback(_Answer(200))
        self.successResultOf(stopped)
        observer.call_event(ended(self.fake))
        self.assertEqual((observer.sent, observer.dropped, len(hand.posts)), (1, 2, 1))


class _Answer:
    def __init__(self, code: int) -> None:
        self.code = code

    def content(self) -> Deferred[bytes]:
        return succeed(b"")
