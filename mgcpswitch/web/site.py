# -*- test-case-name: tests.test_web_api -*-
"""
The admin site: the JSON API, the HTML page and C{/metrics} under one
root, behind authentication when the settings ask for it, served by a
strports description.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.web import pages
from twisted.web.resource import Resource
from twisted.web.server import Site

from ..interfaces import ICallControl
from .api import ApiRoot
from .auth import protect, thread_runner
from .listen import check_exposure, listen_endpoint
from .metrics import MetricsResource, make_registry
from .settings import WebSettings

__all__ = ["STATIC", "make_root", "make_site", "build_web_service"]

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

# The page loads nothing from elsewhere and runs no inline script.
_PAGE_HEADERS = {
    b"content-security-policy": b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-cache",
}


class _Asset(Resource):
    """One file of the page (read once, at start)."""

    isLeaf = True

    def __init__(self, path: str, content_type: bytes) -> None:
        super().__init__()
        with open(path, "rb") as f:
            self.body = f.read()
        self.content_type = content_type

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        for name, value in _PAGE_HEADERS.items():
            request.setHeader(name, value)
        return self.body


_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}


class _Static(Resource):
    """C{/static/NAME}: the page's script and style, held in memory."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        for name in sorted(os.listdir(directory)):
            content_type = _TYPES.get(os.path.splitext(name)[1])
            if content_type is not None:
                self.putChild(name.encode("utf-8"), _Asset(os.path.join(directory, name), content_type))

    def getChild(self, path: bytes, request: Any) -> Resource:
        return pages.notFound("Not found", "No such file.")

    def render(self, request: Any) -> bytes:
        return pages.notFound("Not found", "No such file.").render(request)  # type: ignore[no-any-return]


class _Root(Resource):
    def getChild(self, path: bytes, request: Any) -> Resource:
        return pages.notFound("Not found", "Try / for the admin page or /api for the JSON API.")


def make_root(call_control: ICallControl, settings: WebSettings, reactor: IReactorTime) -> Any:
    """The admin's resource tree, authentication included."""
    control = ICallControl(call_control)
    root = _Root()
    root.putChild(b"", _Asset(os.path.join(STATIC, "index.html"), _TYPES[".html"]))
    root.putChild(b"static", _Static(STATIC))
    root.putChild(b"api", ApiRoot(control, reactor))
    root.putChild(b"metrics", MetricsResource(make_registry(control)))
    return protect(root, settings, reactor, thread_runner(reactor))


def make_site(call_control: ICallControl, settings: WebSettings, reactor: Any) -> Site:
    """
    The admin L{Site} on C{reactor} (a real one, or a L{Clock} in tests).
    @raise mgcpswitch.web.auth.PasswordFileError: the users file is bad.
    """
    site = Site(make_root(call_control, settings, reactor), reactor=reactor)
    site.displayTracebacks = False
    return site


def build_web_service(call_control: ICallControl, settings: WebSettings, reactor: Any) -> IService:
    """
    The admin as a service listening on C{settings.listen}.
    @raise mgcpswitch.errors.ConfigError: the description does not parse,
        or it would expose the admin beyond loopback without authentication
        (decided on the endpoint Twisted builds: see L{mgcpswitch.web.listen}).
    """
    check_exposure(settings)
    site = make_site(call_control, settings, reactor)
    service = StreamServerEndpointService(listen_endpoint(reactor, settings.listen), site)
    service.setName("web")
    return service
