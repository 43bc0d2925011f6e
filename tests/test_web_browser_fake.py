"""
The admin page in a real headless Chromium, against a fake call control
served on a loopback port: the tables fill, the Call button originates,
the call appears live (server-sent events), its ladder opens on click,
Hang up removes it, and a screenshot is written.  Proves the browser
helper (tests/support/browser.py) before the test against the real switch.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from mgcpswitch.web import WebSettings, make_site
from mgcpswitch.web.auth import hash_password

from .support.browser import Browser, require_browser
from .support.fake_control import GW1, GW2, FakeCallControl
from .support.loopback import serve

A3, A4 = f"aaln/3@{GW1}", f"aaln/4@{GW1}"


def row(table: str, attribute: str, value: str) -> str:
    return f'#{table} tr[data-{attribute}="{value}"]'


class AdminPage(TestCase):
    timeout = 90

    def setUp(self) -> None:
        require_browser()
        self.fake = FakeCallControl(reactor)
        self.url = serve(self, make_site(self.fake, WebSettings(), reactor))
        # Chromium's profile, chromedriver's log and the screenshots; kept
        # for a look with MGCPSWITCH_KEEP_BROWSER_FILES=1.
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-browser-")
        if not os.environ.get("MGCPSWITCH_KEEP_BROWSER_FILES"):
            self.addCleanup(shutil.rmtree, self.directory, True)

    async def test_originate_and_hang_up_through_the_page(self) -> None:
        """Tables fill; Call originates; the call shows live, connects, shows its ladder; Hang up ends it."""
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/")

        await browser.wait_for_text(row("gateways", "gateway", GW1), "up")
        await browser.wait_for_text(row("gateways", "gateway", GW2), "down")
        await browser.wait_for_text(row("endpoints", "endpoint", A3), "idle")
        await browser.wait_for_text("#status", "live")
        self.assertIn("connected", await browser.text(row("calls", "call-id", "c1")))

        await browser.click(f'#call-from option[value="{A3}"]')
        await browser.click(f'#call-to option[value="{A4}"]')
        await browser.click("#call-button")
        await browser.wait_for_text(row("calls", "call-id", "call-1"), "alerting")
        self.assertEqual(self.fake.actions, [("originate", A3, A4)])
        await browser.wait_for_text("#message", "call call-1 started")
        await browser.wait_for_text(row("endpoints", "endpoint", A3), "ringing")

        self.fake.connect("call-1")  # what the lines would do: both answer
        await browser.wait_for_text(row("calls", "call-id", "call-1"), "connected")

        await browser.click(row("calls", "call-id", "call-1") + ' button[data-action="ladder"]')
        await browser.wait_for_text("#ladder-title", "call-1")
        await browser.wait_until("document.querySelectorAll('#ladder tbody tr').length === 2", what="a ladder of 2")
        self.assertIn("CRCX 1001", await browser.text("#ladder tbody tr"))
        await browser.screenshot(os.path.join(self.directory, "call-connected.png"))

        await browser.click(row("calls", "call-id", "call-1") + ' button[data-action="hangup"]')
        await browser.wait_for_absence(row("calls", "call-id", "call-1"))
        self.assertEqual(self.fake.actions[-1], ("hangup", "call-1"))
        await browser.wait_for_text("#message", "call call-1 hung up")

        await browser.click(row("gateways", "gateway", GW1) + ' button[data-action="gateway-out"]')
        await browser.wait_for_text(row("gateways", "gateway", GW1), "out-of-service")
        await browser.click(row("endpoints", "endpoint", A3) + ' button[data-action="audit"]')
        await browser.wait_for_text("#message", f"{A3}: idle, hook on")

        path = await browser.screenshot(os.path.join(self.directory, "admin.png"))
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertEqual(
            self.fake.actions[-2:], [("in_service", GW1, False), ("audit", A3)]
        )

    async def test_refusals_are_shown(self) -> None:
        """A refused originate shows the API's reason on the page."""
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/")
        await browser.wait_for_text(row("endpoints", "endpoint", A3), "idle")
        await browser.click(f'#call-from option[value="aaln/1@{GW1}"]')
        await browser.click(f'#call-to option[value="{A3}"]')
        await browser.click("#call-button")
        await browser.wait_for_text("#message", "busy")
        self.assertEqual(await browser.execute("return document.querySelector('#message').dataset.kind"), "error")


class AdminPageWithBasicAuth(TestCase):
    timeout = 90

    def setUp(self) -> None:
        require_browser()
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-browser-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        users = os.path.join(self.directory, "users")
        with open(users, "w") as f:
            f.write("alice:" + hash_password("wonderland", iterations=1000) + "\n")
        self.fake = FakeCallControl(reactor)
        self.url = serve(self, make_site(self.fake, WebSettings(users_file=users), reactor))

    async def test_page_behind_basic_auth(self) -> None:
        """Opened with credentials, the page's API calls and event stream are authenticated too."""
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url.replace("http://", "http://alice:wonderland@") + "/")
        await browser.wait_for_text(row("gateways", "gateway", GW1), "up")
        await browser.wait_for_text("#status", "live")
        await browser.click(f'#call-from option[value="{A3}"]')
        await browser.click(f'#call-to option[value="{A4}"]')
        await browser.click("#call-button")
        await browser.wait_for_text(row("calls", "call-id", "call-1"), "alerting")
