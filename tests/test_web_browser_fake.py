"""
The admin pages in a real headless Chromium, against a fake call control
served on a loopback port: the tables are drawn from the embedded state
before the first paint, the Call button originates, the call appears live
(server-sent events), its page draws its MGCP flow as a sequence diagram
(columns, arrows, retransmissions, piggybacked datagrams), Hang up removes
it, the live chart plots the stream's samples, a line's services are
edited in their dialog, a call's parties and history are listed, a standby
is obvious and its buttons disabled until it takes over, and screenshots
are written.  Proves the browser helper (tests/support/browser.py) before the
test against the real switch.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

import json
from dataclasses import replace

from mgcpswitch.agent.model import CallStateChanged, LadderEntry
from mgcpswitch.trunk import TrunkState
from mgcpswitch.web import WebSettings, make_site
from mgcpswitch.web.auth import hash_password

from .support.browser import Browser, require_browser
from .support.fake_control import ACTIVE, GW1, GW2, FakeCallControl
from .support.loopback import serve
from .support.web import FLOW, flow_call, three_way

A1, A3, A4 = f"aaln/1@{GW1}", f"aaln/3@{GW1}", f"aaln/4@{GW1}"


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

        await browser.screenshot(os.path.join(self.directory, "call-connected.png"))
        await browser.click(row("calls", "call-id", "call-1") + " a")  # the call's page
        await browser.wait_for_text("#call-id", "call-1")
        await browser.wait_until("document.querySelectorAll('#flow g.message').length === 2", what="a flow of 2")
        self.assertEqual(await browser.execute(
            "return Array.from(document.querySelectorAll('#flow g.message')).map(g => g.dataset.label)"
        ), ["CRCX 1001", "200 1001 OK"])
        await browser.get(self.url + "/")

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

    async def test_first_paint(self) -> None:
        """Both pages are drawn from the state they embed before the first paint and before any API request."""
        self.fake.calls["c9"] = flow_call(reactor.seconds() - 5)
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        for path, table in (("/", "#gateways tbody tr"), ("/calls/c9", "#flow g.message")):
            await browser.get(self.url + path)
            await browser.wait_until("performance.getEntriesByType('paint').length > 0", what="a paint")
            drawn, paint, api = await browser.execute(
                "const paint = performance.getEntriesByType('paint')[0];"
                "const api = performance.getEntriesByType('resource').filter(r => r.name.includes('/api/'));"
                "return [Number(document.body.dataset.drawnAt), paint.startTime, api.map(r => r.startTime)];"
            )
            self.assertLess(drawn, paint, path)
            self.assertTrue(all(start > drawn for start in api), (path, drawn, api))
            self.assertGreater(await browser.execute(f"return document.querySelectorAll({json.dumps(table)}).length"), 0)
        await browser.get(self.url + "/")
        self.assertEqual(await browser.text(row("gateways", "gateway", GW1) + " td:nth-child(5)"), "1")

    async def test_gateway_addresses(self) -> None:
        """The gateways' table writes an IPv6 address in brackets ([::1]:2427), an IPv4 one as it is."""
        self.fake.gateways[GW2] = replace(self.fake.gateways[GW2], host="::1")
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/")
        self.assertEqual(await browser.text(row("gateways", "gateway", GW1) + " td:nth-child(3)"), "127.0.0.1:2427")
        self.assertEqual(await browser.text(row("gateways", "gateway", GW2) + " td:nth-child(3)"), "[::1]:2427")

    async def test_call_flow_diagram(self) -> None:
        """A call's page draws its ladder: endpoints and agent as columns, an arrow per message, marks, the text."""
        started = reactor.seconds() - 5
        self.fake.calls["c9"] = flow_call(started)
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/calls/c9")
        await browser.wait_until("document.querySelectorAll('#flow g.message').length === 10", what="10 arrows")
        columns = await browser.execute(
            "return Array.from(document.querySelectorAll('#flow g.column')).map(g => "
            "[g.dataset.key, g.querySelector('line').getAttribute('x1'), g.querySelector('.address').textContent])"
        )
        self.assertEqual([(key, address) for key, _, address in columns], [
            (A3, "127.0.0.1:2427"),
            ("agent", "127.0.0.1:2727"), (f"aaln/1@{GW2}", "127.0.0.2:2427"),
        ])
        x = {key: float(x1) for key, x1, _ in columns}
        arrows = await browser.execute(
            "return Array.from(document.querySelectorAll('#flow g.message')).map(g => {"
            " const line = g.querySelector('line.arrow');"
            " return [g.dataset.label, g.dataset.source, g.dataset.target, g.classList.contains('retransmission'),"
            "  g.classList.contains('piggybacked'), Number(line.getAttribute('x1')), Number(line.getAttribute('x2')),"
            "  getComputedStyle(line).strokeDasharray, g.querySelector('text.time').textContent]; })"
        )
        self.assertEqual([tuple(a[:5]) for a in arrows], FLOW)
        for label, source, target, again, _, x1, x2, dashes, _ in arrows:
            self.assertEqual((x1, x2), (x[source], x[target]), label)
            self.assertEqual(dashes != "none", again, label)
        self.assertEqual([a[8] for a in arrows][:3], ["+0.000 s", "+0.200 s", "+0.250 s"])
        brackets = await browser.execute(
            "return Array.from(document.querySelectorAll('#flow g.piggyback')).map(g => g.dataset.datagram)"
        )
        self.assertEqual(brackets, ["6"])
        self.assertIn("ladder.pcap", await browser.execute("return document.querySelector('#pcap').href"))

        await browser.click('#flow g.message[data-index="5"] text.label')
        await browser.wait_for_text("#message-text", "NTFY 77")
        self.assertIn(f"aaln/1@{GW2} → call agent", await browser.text("#text-title"))
        await browser.screenshot(os.path.join(self.directory, "call-flow.png"))

        # The call goes on: the page redraws from the event stream.
        await browser.wait_for_text("#status", "live")
        before = self.fake.calls["c9"]
        after = replace(before, ladder=before.ladder + (
            LadderEntry(started + 1, "out", GW1, "", "DLCX 2005 aaln/3@gw1.example.net MGCP 1.0\r\n"),))
        self.fake.calls["c9"] = after
        self.fake.emit(CallStateChanged(after, before.state))
        await browser.wait_until("document.querySelectorAll('#flow g.message').length === 11", what="11 arrows")
        self.assertEqual(await browser.execute(
            "return document.querySelector('#flow g.message[data-index=\"10\"]').dataset.label"), "DLCX 2005")

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


class FastSamples(TestCase):
    """The page of a fake switch whose event stream samples five times a second: tests see several soon."""

    timeout = 90

    def setUp(self) -> None:
        require_browser()
        self.fake = FakeCallControl(reactor)
        self.url = serve(self, make_site(self.fake, WebSettings(), reactor, stats_interval=0.2))
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-browser-")
        if not os.environ.get("MGCPSWITCH_KEEP_BROWSER_FILES"):
            self.addCleanup(shutil.rmtree, self.directory, True)


class Faces(FastSamples):
    """What the page shows of the phone services and of the cluster (issues 13 and 14)."""

    async def test_services_dialog(self) -> None:
        """An endpoint's services are shown in its row; Services… opens a form whose Save PATCHes what changed."""
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/")
        await browser.wait_for_text(row("endpoints", "endpoint", A3) + " td.services", "busy \u2192 1004")
        self.assertIn("message waiting", await browser.text(row("endpoints", "endpoint", A3) + " td.services"))
        await browser.click(row("endpoints", "endpoint", A4) + ' button[data-action="services"]')
        await browser.wait_until("document.querySelector('#services-dialog').open", what="the dialog open")
        self.assertEqual(await browser.text("#services-endpoint"), f"{A4} (1004)")
        self.assertTrue(await browser.execute("return document.querySelector('#services-form').elements.call_waiting.checked"))
        await browser.click('#services-form input[name="dnd"]')
        await browser.click('#services-form input[name="three_way"]')
        await browser.execute("document.querySelector('#services-form').elements.forward_always.value = '1003'")
        await browser.screenshot(os.path.join(self.directory, "services-dialog.png"))
        await browser.click("#services-save")
        await browser.wait_for_text(row("endpoints", "endpoint", A4) + " td.services", "do not disturb")
        self.assertEqual(self.fake.actions, [
            ("services", A4, {"dnd": True, "three_way": False, "forward_always": "1003"}),
        ])
        self.assertEqual(await browser.text(row("endpoints", "endpoint", A4) + " td.services"),
                         "do not disturb, forward \u2192 1003, no three-way")
        await browser.wait_for_text("#message", f"{A4}: do not disturb")
        # Cancel sends nothing; a change made elsewhere arrives on the stream.
        await browser.click(row("endpoints", "endpoint", A4) + ' button[data-action="services"]')
        await browser.click('#services-form input[name="dnd"]')
        await browser.click('#services-form button[value="cancel"]')
        self.assertEqual(len(self.fake.actions), 1)
        self.fake.set_line_services("1003", {"forward_busy": None})
        await browser.wait_until(
            f"!document.querySelector({json.dumps(row('endpoints', 'endpoint', A3) + ' td.services')})"
            ".textContent.includes('busy')", what="the change made elsewhere")
        await browser.screenshot(os.path.join(self.directory, "services.png"))

    async def test_call_parties(self) -> None:
        """A call's page lists its parties, held, waiting or three-way, and how the call came about."""
        self.fake.calls["c7"] = three_way(reactor.seconds() - 5)
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/calls/c7")
        await browser.wait_until("document.querySelectorAll('#legs tbody tr').length === 3", what="three parties")
        parties = await browser.execute(
            "return Array.from(document.querySelectorAll('#legs tbody tr')).map(r => "
            "Array.from(r.cells).map(c => c.textContent))"
        )
        self.assertEqual(parties, [
            [A1, "1001", "caller", "C1", "confrnce", "open", "three-way"],
            [A3, "1003", "called", "C3", "sendrecv", "open", "held"],
            [A4, "1004", "called", "", "", "new", "waiting"],
        ])
        self.assertEqual(await browser.text("#call-facts"),
                         f"forwarded from aaln/2@{GW1} \u00b7 transferred by {A1} \u00b7 related: c5, c6")
        self.assertEqual(await browser.execute(
            "return Array.from(document.querySelectorAll('#call-facts a')).map(a => a.getAttribute('href'))"),
            ["/calls/c5", "/calls/c6"])
        await browser.screenshot(os.path.join(self.directory, "call-parties.png"))
        await browser.get(self.url + "/")
        await browser.wait_for_text(row("calls", "call-id", "c7") + " td.notes", "1003 held")
        self.assertIn("forwarded from", await browser.text(row("calls", "call-id", "c7") + " td.notes"))

    async def test_standby(self) -> None:
        """
        A standby is obvious at a glance (badge, banner, tinted header) and
        its change buttons are disabled with the reason; once it takes over,
        the page follows within a sample and the buttons work again.
        """
        self.fake.stand_by()
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/")
        await browser.wait_for_text("#cluster", "STANDBY")
        reason = f"this call agent stands by: make changes at the active agent ({ACTIVE})"
        self.assertEqual(await browser.text("#cluster"), f"STANDBY \u00b7 epoch 7 \u00b7 active: {ACTIVE} \u00b7 lease 0.4 s")
        self.assertIn(reason, await browser.text("#read-only"))
        self.assertEqual(await browser.execute("return document.body.dataset.role"), "standby")
        buttons = await browser.execute(
            "return Array.from(document.querySelectorAll('main button:not([value=cancel])'))"
            ".map(b => [b.textContent, b.disabled, b.title])"
        )
        self.assertEqual({label for label, _, _ in buttons},
                         {"Call", "Hang up", "Audit", "Services\u2026", "Take out of service", "Save"})
        self.assertEqual({(disabled, title) for _, disabled, title in buttons}, {(True, reason)}, buttons)
        await browser.screenshot(os.path.join(self.directory, "standby.png"))

        self.fake.take_over()
        await browser.wait_for_text("#cluster", "ACTIVE \u00b7 epoch 8")
        await browser.wait_until("document.querySelector('#read-only').hidden", what="the banner gone")
        self.assertEqual(await browser.execute(
            "return Array.from(document.querySelectorAll('main button')).filter(b => b.disabled).length"), 0)
        await browser.click(row("calls", "call-id", "c1") + ' button[data-action="hangup"]')
        await browser.wait_for_text("#message", "call c1 hung up")
        self.assertEqual(self.fake.actions, [("hangup", "c1")])


class LiveChart(FastSamples):

    async def test_chart_follows_the_stream(self) -> None:
        """Calls in progress, calls/s and transactions/s are plotted from the stream's stats samples."""
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/")
        await browser.wait_until("Number(document.querySelector('#chart-active').dataset.points) >= 3",
                                 what="three samples")
        self.assertEqual(await browser.text("#chart-active .value"), "1")
        self.fake.originate(A3, A4)
        self.fake.stats["counters"]["commands_sent CRCX"] += 100
        await browser.wait_for_text("#chart-active .value", "2")
        await browser.wait_until(
            "document.querySelector('#chart-transactions').title.match(/peak (\\S+)/)[1] > 0"
            " && document.querySelector('#chart-calls').title.match(/peak (\\S+)/)[1] > 0",
            what="a rise in calls/s and transactions/s",
        )
        points = await browser.execute(
            "return Array.from(document.querySelectorAll('figure.chart')).map(f => "
            "[f.dataset.series, Number(f.dataset.points), f.querySelector('polyline').getAttribute('points')"
            ".split(' ').filter(Boolean).length])"
        )
        for series, count, drawn in points:
            self.assertEqual(count, drawn, series)
            self.assertGreater(count, 2, series)
        await browser.screenshot(os.path.join(self.directory, "chart.png"))


class OverloadAndTrunks(FastSamples):

    async def test_overload_badge_and_trunks_table(self) -> None:
        """
        The overload badge appears while the guard sheds ("overload:
        shedding 75%") and goes when it stops, from the stream's samples;
        the trunks table shows each trunk's state, registration, channels
        and calls, and follows a trunk going down and a call on it.
        """
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)
        await browser.get(self.url + "/")
        await browser.wait_for_text("#status", "live")
        self.assertTrue(await browser.execute("return document.querySelector('#overload').hidden"))
        self.assertFalse(await browser.execute("return document.querySelector('#trunks-section').hidden"))
        provider = await browser.execute(
            "return Array.from(document.querySelector('#trunks tr[data-trunk=provider]').cells).map(c => c.textContent)")
        self.assertEqual(provider[:9], ["provider", "up", "registered", "192.0.2.10:5060", "2 / 30", "", "9 / 12",
                                        "4 / 5", "1"])
        self.assertIn("out 486 \u00d72", provider[9])
        self.assertEqual(await browser.text(row("trunks", "trunk", "backup") + " td.state"), "down")

        self.fake.overload(0.25, shed=120, lateness_ms=80.0)
        await browser.wait_for_text("#overload", "overload: shedding 75%")
        self.assertIn("120 calls shed", await browser.execute("return document.querySelector('#overload').title"))
        self.fake.trunks["provider"] = replace(self.fake.trunks["provider"], state=TrunkState.DOWN, calls=("c1",))
        await browser.wait_until(
            "document.querySelector('#trunks tr[data-trunk=provider]').dataset.state === 'down'", what="provider down")
        await browser.wait_for_text(row("trunks", "trunk", "provider") + ' a[href="/calls/c1"]', "c1")
        await browser.screenshot(os.path.join(self.directory, "overload-and-trunks.png"))

        # The share back at one, the admission rate still refusing calls.
        self.fake.stats["overload"] = {**self.fake.stats["overload"], "admitted_share": 1.0, "admission_rate": 412.5,
                                       "cpu_per_call_ms": 2.18, "calls_refused_by_rate": 30}
        await browser.wait_for_text("#overload", "overload: at most 413 calls/s")
        self.assertIn("2.18 ms of CPU a call; 30 refused by that rate",
                      await browser.execute("return document.querySelector('#overload').title"))
        self.fake.overload(1.0, shed=121)
        await browser.wait_until("document.querySelector('#overload').hidden", what="the overload badge gone")
        self.fake.trunks.clear()
        await browser.wait_until("document.querySelector('#trunks-section').hidden", what="no trunks section")


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
