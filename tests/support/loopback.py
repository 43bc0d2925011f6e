"""
Serving a site on 127.0.0.1 (port 0) in a trial test with a real reactor,
and taking it down cleanly: stop listening, then wait until every server
connection is closed, so the reactor is left clean.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.protocols.policies import WrappingFactory
from twisted.web.server import Site

__all__ = ["TrackingFactory", "serve", "closed_port"]


class TrackingFactory(WrappingFactory):
    """A factory wrapper that can tell when all its connections are gone."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._waiting: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def all_closed(self) -> Deferred[None]:
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def abort_all(self) -> None:
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()


def serve(testcase: Any, site: Site) -> str:
    """Listen on a free loopback port until the test ends; return the base URL."""
    factory = TrackingFactory(site)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")

    async def stop() -> None:
        await port.stopListening()
        factory.abort_all()
        await factory.all_closed().addTimeout(10, reactor)

    testcase.addCleanup(stop)
    return f"http://127.0.0.1:{port.getHost().port}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, never listened)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
