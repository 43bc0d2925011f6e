# -*- test-case-name: tests.test_web_page -*-
"""
The admin's HTML pages, served with the state they show.

C{/} is C{static/index.html} with a snapshot of everything it shows (the
answers of C{/api/gateways}, C{/api/endpoints}, C{/api/calls} and
C{/api/stats}, taken at the same instant) embedded as a JSON data block;
C{/calls/ID} is C{static/call.html} with that call's flow
(C{/api/calls/ID/flow}).  Their scripts are render-blocking and draw from
the embedded data before the first paint, so the page never shows empty
tables while it fetches; then they open the event stream and stay live.

A data block is not executed, so the content security policy (no inline
script) holds; the JSON is escaped so that no C{<}, C{>} or C{&} can
end the block early.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web import pages
from twisted.web.resource import IResource, Resource

from ..agent.model import CallView
from ..interfaces import ICallControl
from .api import AgentAddress, call_flow, snapshot

__all__ = ["PAGE_HEADERS", "Template", "IndexPage", "CallPages", "embed"]

# The pages load nothing from elsewhere and run no inline script.
PAGE_HEADERS = {
    b"content-security-policy": b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-cache",
}

PLACEHOLDER = b"{{state}}"
HTML = b"text/html; charset=utf-8"


def embed(data: Any) -> bytes:
    """C{data} as JSON that can sit inside a C{<script type="application/json">} element."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode("ascii")


class Template:
    """An HTML file with one C{{{state}}} placeholder (read once, at start)."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            self.before, found, self.after = f.read().partition(PLACEHOLDER)
        if not found:
            raise ValueError(f"{path} has no {PLACEHOLDER.decode()} placeholder")

    def render(self, request: Any, data: Any) -> bytes:
        request.setHeader(b"content-type", HTML)
        for name, value in PAGE_HEADERS.items():
            request.setHeader(name, value)
        return self.before + embed(data) + self.after


class IndexPage(Resource):
    """C{/}: the admin page and the snapshot it starts from."""

    isLeaf = True

    def __init__(self, template: Template, control: ICallControl, clock: IReactorTime) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self.template = template
        self.control = control
        self.clock = clock

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        return self.template.render(request, snapshot(self.control, self.clock.seconds()))


class CallPages(Resource):
    """C{/calls/ID}: one call's page, its flow drawn as a sequence diagram."""

    def __init__(
        self, template: Template, control: ICallControl, clock: IReactorTime, agent: AgentAddress | None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self.template = template
        self.control = control
        self.clock = clock
        self.agent = agent

    def getChild(self, path: bytes, request: Any) -> IResource:  # noqa: N802
        try:
            call_id = path.decode("utf-8")
        except UnicodeDecodeError:
            return pages.notFound("No such call", "The call id is not UTF-8.")
        view = self.control.get_call(call_id) if call_id and not request.postpath else None
        if view is None:
            return pages.notFound("No such call", "Calls are kept for a while after they end; see / for the others.")
        return _CallPage(self, view)

    def render(self, request: Any) -> bytes:
        return pages.notFound("No such call", "Open a call from the list on /.").render(request)  # type: ignore[no-any-return]  # IResource.render is unannotated upstream


class _CallPage(Resource):
    isLeaf = True

    def __init__(self, calls: CallPages, view: CallView) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self.calls = calls
        self.view = view

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        calls = self.calls
        flow = call_flow(calls.control, self.view, calls.agent)
        return calls.template.render(request, dict(flow, now=calls.clock.seconds()))
