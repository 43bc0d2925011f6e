"""
A headless Chromium for tests, driven over the W3C WebDriver protocol
(plain JSON over HTTP, with treq: no selenium).

L{Browser.start} spawns C{/usr/bin/chromedriver --port=0} through the
reactor, reads the port it chose from its output, and opens a session on
C{/usr/bin/chromium} with a private profile directory.  Everything is
asynchronous, so the switch under test keeps being served by the same
reactor while the browser talks to it.  Waiting is done inside the
browser: L{Browser.wait_until} runs a script that polls the page until an
expression holds or a short budget runs out, and repeats that until the
deadline; nothing sleeps.

L{Browser.stop} ends the session (Chromium quits), then stops chromedriver
by its process id and, should one outlive it, the Chromium processes it
started (by their ids, found under /proc before it stopped).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

__all__ = ["Browser", "WebDriverError", "CHROMIUM", "CHROMEDRIVER", "require_browser"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C element reference key

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--window-size=1400,1100",
]


def require_browser() -> None:
    """Skip, saying why, when Chromium or chromedriver is not installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        raise SkipTest(
            f"BROWSER TEST SKIPPED: {', '.join(missing)} not installed; install the Debian packages "
            "chromium and chromium-driver (scripts/run-tests and .ci/run do so as root)"
        )


class WebDriverError(Exception):
    """WebDriver answered with an error (C{error} is its W3C error code)."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message


class _Driver(ProcessProtocol):
    """chromedriver's output: tells us its port; notices when it ends."""

    def __init__(self) -> None:
        self.output = b""
        self.port: Deferred[int] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.done = False

    def outReceived(self, data: bytes) -> None:
        self.output += data
        match = re.search(rb"started successfully on port (\d+)", self.output)
        if match and not self.port.called:
            self.port.callback(int(match.group(1)))

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.done = True
        if not self.port.called:
            self.port.errback(RuntimeError("chromedriver ended before listening: " + self.output.decode(errors="replace")))
        self.ended.callback(None)


class Browser:
    """One chromedriver and one Chromium session."""

    def __init__(self, reactor: Any, directory: str, driver: _Driver, process: Any, port: int) -> None:
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        self.reactor = reactor
        self.directory = directory
        self.driver = driver
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.http = HTTPClient(Agent(reactor, pool=self.pool))
        self.session: str | None = None

    @classmethod
    async def start(cls, reactor: Any, directory: str, timeout: float = 30.0) -> Browser:
        """Start chromedriver and a Chromium session; files go in C{directory}."""
        require_browser()
        driver = _Driver()
        process = reactor.spawnProcess(
            driver,
            CHROMEDRIVER,
            [CHROMEDRIVER, "--port=0", "--log-path=" + os.path.join(directory, "chromedriver.log")],
            env=dict(os.environ),
        )
        browser: Browser | None = None
        try:
            port = await driver.port.addTimeout(timeout, reactor)
            browser = cls(reactor, directory, driver, process, port)
            profile = os.path.join(directory, "chromium-profile")
            os.makedirs(profile, exist_ok=True)
            answer = await browser._call(
                "POST",
                "/session",
                {
                    "capabilities": {
                        "alwaysMatch": {
                            "browserName": "chrome",
                            "pageLoadStrategy": "normal",
                            "goog:chromeOptions": {
                                "binary": CHROMIUM,
                                "args": CHROMIUM_ARGS + ["--user-data-dir=" + profile],
                            },
                        }
                    }
                },
                timeout=timeout,
            )
            browser.session = answer["sessionId"]
            await browser._session("POST", "/timeouts", {"script": 60_000, "pageLoad": 30_000, "implicit": 0})
            return browser
        except BaseException:
            if browser is not None:
                await browser.stop()
            else:
                await _terminate(reactor, driver, process)
            raise

    # -- the protocol -----------------------------------------------------

    async def _call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        kwargs: dict[str, Any] = {"timeout": timeout, "reactor": self.reactor}
        if body is not None:
            kwargs["json"] = body
        response = await self.http.request(method, self.base + path, **kwargs)
        data = json.loads(await response.content())
        value = data.get("value") if isinstance(data, dict) else None
        if response.code >= 400:
            value = value if isinstance(value, dict) else {}
            raise WebDriverError(value.get("error", str(response.code)), value.get("message", ""))
        return value

    async def _session(self, method: str, path: str, body: Any = None) -> Any:
        assert self.session is not None, "no WebDriver session"
        return await self._call(method, f"/session/{self.session}{path}", body)

    # -- what tests use ---------------------------------------------------

    async def get(self, url: str) -> None:
        """Load C{url} and wait for the page (and its deferred scripts) to load."""
        await self._session("POST", "/url", {"url": url})

    async def find(self, css: str) -> str:
        """The element matching C{css} (WebDriverError 'no such element' if none)."""
        value = await self._session("POST", "/element", {"using": "css selector", "value": css})
        assert isinstance(value, dict) and ELEMENT in value, value
        return value[ELEMENT]  # type: ignore[no-any-return]

    async def find_all(self, css: str) -> list[str]:
        values = await self._session("POST", "/elements", {"using": "css selector", "value": css})
        return [v[ELEMENT] for v in values]

    async def click(self, css: str) -> None:
        """Click the element matching C{css} (scrolled into view, as a user would)."""
        element = await self.find(css)
        await self._session("POST", f"/element/{element}/click", {})

    async def text(self, css: str) -> str:
        """The rendered text of the element matching C{css}."""
        element = await self.find(css)
        return await self._session("GET", f"/element/{element}/text")  # type: ignore[no-any-return]

    async def execute(self, script: str, *args: Any) -> Any:
        """Run C{script} (a function body; C{arguments} are C{args}) in the page."""
        return await self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    async def wait_until(self, expression: str, timeout: float = 15.0, what: str | None = None) -> Any:
        """
        Poll the JavaScript C{expression} in the page until it is truthy;
        return its value.  Each round polls inside the browser for at most
        two seconds, so a failing page is reported at the deadline with the
        expression that never held.
        """
        script = (
            "const done = arguments[arguments.length - 1];"
            "const end = Date.now() + arguments[0];"
            "(function poll() {"
            "  let value;"
            f"  try {{ value = ({expression}); }} catch (e) {{ value = undefined; }}"
            "  if (value) { done(value); }"
            "  else if (Date.now() >= end) { done(null); }"
            "  else { setTimeout(poll, 20); }"
            "})();"
        )
        deadline = self.reactor.seconds() + timeout
        while True:
            budget = max(0.0, min(2.0, deadline - self.reactor.seconds()))
            value = await self._session("POST", "/execute/async", {"script": script, "args": [int(budget * 1000)]})
            if value:
                return value
            if self.reactor.seconds() >= deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what or expression}")

    async def wait_for_text(self, css: str, text: str, timeout: float = 15.0) -> None:
        """Wait until the element matching C{css} exists and its text contains C{text}."""
        selector = json.dumps(css)
        await self.wait_until(
            f"(document.querySelector({selector}) || {{}}).textContent?.includes({json.dumps(text)})",
            timeout,
            what=f"{text!r} in {css}",
        )

    async def wait_for_absence(self, css: str, timeout: float = 15.0) -> None:
        await self.wait_until(f"!document.querySelector({json.dumps(css)})", timeout, what=f"no {css}")

    async def screenshot(self, path: str) -> str:
        """Save a PNG of the window at C{path}; return the path."""
        data = await self._session("GET", "/screenshot")
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    async def stop(self) -> None:
        """End the session (Chromium quits), then chromedriver; close our connections."""
        if self.session is not None:
            session, self.session = self.session, None
            try:
                await self._call("DELETE", f"/session/{session}", timeout=15.0)
            except Exception:
                pass  # chromedriver may already be gone; the processes are stopped below anyway
        await self.pool.closeCachedConnections()
        await _terminate(self.reactor, self.driver, self.process)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    found = []
    for child in _children(pid):
        found.append(child)
        found.extend(_descendants(child))
    return found


async def _terminate(reactor: Any, driver: _Driver, process: Any) -> None:
    """Stop chromedriver by its pid (and any Chromium it leaves, by theirs)."""
    if driver.done:
        return
    leftovers = _descendants(process.pid)
    process.signalProcess("TERM")
    try:
        await driver.ended.addTimeout(10, reactor)
    except Exception:
        if not driver.done:
            process.signalProcess("KILL")
            await driver.ended
    for pid in leftovers:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"chrom" not in f.read():
                    continue
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass  # already gone
