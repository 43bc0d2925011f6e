# -*- test-case-name: tests.test_web_api -*-
"""
The admin site: the JSON API, the HTML page and C{/metrics} under one
root, behind authentication when the settings ask for it, served by a
strports description.

Its requests (L{AdminRequest}) are refused on their headers when they
announce a body the admin will not take: no valid credentials (what
L{AuthenticatedResource.precheck} can tell without deriving a hash), a
throttled password guess, or more than C{max_body} bytes.  The answer
(401, 429 or 413, with its JSON reason) goes out at once and the
connection closes; nothing of the body is stored.  A body that is
accepted is kept in memory, never in a temporary file, and is cut off at
C{max_body} bytes also when it comes chunked.
"""

from __future__ import annotations

import os
from io import BytesIO
from typing import Any, Callable, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import pages
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from ..interfaces import ICallControl
from .api import MAX_BODY, STATS_INTERVAL, AgentAddress, ApiError, ApiRoot, raw_answer, too_large
from .auth import AuthenticatedResource, protect, thread_runner
from .listen import check_exposure, listen_endpoint
from .metrics import MetricsResource, make_registry
from .page import PAGE_HEADERS, CallPages, IndexPage, Template
from .settings import WebSettings

__all__ = ["STATIC", "AdminRequest", "AdminSite", "make_root", "make_site", "build_web_service"]

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

class _Asset(Resource):
    """One file of the pages (read once, at start)."""

    isLeaf = True

    def __init__(self, path: str, content_type: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        with open(path, "rb") as f:
            self.body = f.read()
        self.content_type = content_type

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        for name, value in PAGE_HEADERS.items():
            request.setHeader(name, value)
        return self.body


_TYPES = {
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}


class _Static(Resource):
    """C{/static/NAME}: the page's script and style, held in memory."""

    def __init__(self, directory: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        for name in sorted(os.listdir(directory)):
            content_type = _TYPES.get(os.path.splitext(name)[1])
            if content_type is not None:
                self.putChild(name.encode("utf-8"), _Asset(os.path.join(directory, name), content_type))

    def getChild(self, path: bytes, request: Any) -> IResource:
        return pages.notFound("Not found", "No such file.")

    def render(self, request: Any) -> bytes:
        return pages.notFound("Not found", "No such file.").render(request)  # type: ignore[no-any-return]  # IResource.render is unannotated upstream


class _Root(Resource):
    def getChild(self, path: bytes, request: Any) -> IResource:
        return pages.notFound("Not found", "Try / for the admin page or /api for the JSON API.")


def make_root(
    call_control: ICallControl,
    settings: WebSettings,
    reactor: IReactorTime,
    agent: AgentAddress | None = None,
    stats_interval: float = STATS_INTERVAL,
) -> Any:
    """The admin's resource tree, authentication included."""
    control = ICallControl(call_control)
    root = _Root()  # type: ignore[no-untyped-call]  # its __init__ is Resource's, unannotated upstream
    root.putChild(b"", IndexPage(Template(os.path.join(STATIC, "index.html")), control, reactor))
    root.putChild(b"calls", CallPages(Template(os.path.join(STATIC, "call.html")), control, reactor, agent))
    root.putChild(b"static", _Static(STATIC))
    root.putChild(b"api", ApiRoot(control, reactor, agent, stats_interval))
    root.putChild(b"metrics", MetricsResource(make_registry(control)))
    return protect(root, settings, reactor, thread_runner(reactor))


class AdminRequest(Request):
    """
    A request that may be refused on its headers, before its body is read.

    Twisted's L{Request} stores a body as it arrives (in a temporary file
    past 100 kB) and renders the resource, where authentication happens,
    only once all of it is in: an unauthenticated POST announcing 10 GB
    filled a temporary file before its 401.  Here, when the headers are in
    and announce a body (L{gotLength}), the site's L{AdminSite.early_refusal}
    decides; a refused request is answered at once, the connection closed,
    and what of its body still arrives is dropped.  (The answer is written
    as HTTP/1.1 on the connection: the admin speaks nothing else, its TLS
    offering no ALPN, hence no HTTP/2.)
    """

    log = Logger()
    refused = False
    _received = 0

    @property
    def _site(self) -> AdminSite:
        """The site, before L{process} copies it onto the request."""
        site: AdminSite = self.channel.site  # type: ignore[attr-defined]  # set by Site.buildProtocol, undeclared upstream
        return site

    def gotLength(self, length: Optional[int]) -> None:  # noqa: N802
        self.content = BytesIO()
        if length == 0:
            return  # nothing to protect: the resource answers as usual
        error = self._site.early_refusal(self, length)
        if error is not None:
            self._refuse(error)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        if self.refused:
            return
        self._received += len(data)
        if self._received > self._site.max_body:  # chunked, or longer than announced
            self._refuse(too_large(self._site.max_body))
            return
        assert self.content is not None  # gotLength made it
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if not self.refused:
            super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]  # unannotated upstream

    def _refuse(self, error: ApiError) -> None:
        self.refused = True
        self.content = BytesIO()
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the refusal
        self.log.info(
            "admin: refused a request body from {client} before reading it: {code} {reason}",
            client=str(self.getClientAddress()),  # type: ignore[no-untyped-call]  # Request's, unannotated upstream code=error.code, reason=error.reason,
        )
        channel = self.channel
        if channel.transport is not None:
            channel.transport.write(raw_answer(error))
        channel.loseConnection()


class AdminSite(Site):
    """
    The admin's L{Site}: its requests are L{AdminRequest}s, refused early
    by C{gate} (L{AuthenticatedResource.precheck}, or None without
    authentication) and by C{max_body}.
    """

    requestFactory = AdminRequest
    displayTracebacks = False

    def __init__(
        self,
        resource: Any,
        reactor: Any,
        gate: Callable[[Any], ApiError | None] | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        super().__init__(resource, reactor=reactor)  # type: ignore[no-untyped-call]  # Twisted's Site is unannotated upstream
        self.gate = gate
        self.max_body = max_body

    def early_refusal(self, request: AdminRequest, length: Optional[int]) -> ApiError | None:
        """Why a request announcing a body of C{length} bytes (None: chunked) is refused, or None."""
        if self.gate is not None:
            error = self.gate(request)
            if error is not None:
                return error
        if length is not None and length > self.max_body:
            return too_large(self.max_body)
        return None


def make_site(
    call_control: ICallControl,
    settings: WebSettings,
    reactor: Any,
    *,
    agent: AgentAddress | None = None,
    stats_interval: float = STATS_INTERVAL,
) -> AdminSite:
    """
    The admin L{Site} on C{reactor} (a real one, or a L{Clock} in tests).
    C{agent} tells where the call agent listens, for the flows and pcaps of
    ladders that did not record it; C{stats_interval} paces the event
    stream's C{stats} samples.
    @raise mgcpswitch.web.auth.PasswordFileError: the users file is bad.
    """
    root = make_root(call_control, settings, reactor, agent, stats_interval)
    return AdminSite(root, reactor, root.precheck if isinstance(root, AuthenticatedResource) else None)


def build_web_service(
    call_control: ICallControl, settings: WebSettings, reactor: Any, *, agent: AgentAddress | None = None
) -> IService:
    """
    The admin as a service listening on C{settings.listen}.
    @raise mgcpswitch.errors.ConfigError: the description does not parse,
        or it would expose the admin beyond loopback without authentication
        (decided on the endpoint Twisted builds: see L{mgcpswitch.web.listen}).
    """
    check_exposure(settings)
    site = make_site(call_control, settings, reactor, agent=agent)
    service = StreamServerEndpointService(listen_endpoint(reactor, settings.listen), site)
    # A port in use must fail the start at once (and name [web] listen), as
    # twisted.application.strports.service arranges with this same flag.
    service._raiseSynchronously = True
    service.setName("web")
    return service
