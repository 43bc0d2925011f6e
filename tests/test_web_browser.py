"""
The admin page in a real headless Chromium against a REAL running switch:
call control, two simulated gateways of eight lines and the web admin, all
on loopback UDP/TCP in this process (tests/support/live.py), the phones
answering when they ring.  Through the page's buttons: originate a call
between two lines, see it listed and connected, open its page and see its
real MGCP flow drawn, hang it up, see it gone; screenshots are written
under the test's temporary directory.  At the end the
phones hang up and all 16 lines are idle with no connection on either
gateway.  Chromium and chromedriver are stopped by their process ids
(tests/support/browser.py); the test skips, saying so loudly, when they are
not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from .support.browser import Browser, require_browser
from .support.live import LiveSwitch, wait_until
from .support.sip import Recorder, free_udp_port, line_sdp, settings

A, B = "aaln/2@rgw1", "aaln/5@rgw2"  # 1002 and 2005
PNG = b"\x89PNG\r\n\x1a\n"


def row(table: str, attribute: str, value: str) -> str:
    return f'#{table} tr[data-{attribute}="{value}"]'


class AdminPageOnARealSwitch(TestCase):
    timeout = 60

    def setUp(self) -> None:
        require_browser()
        # Chromium's profile, chromedriver's log and the screenshots; kept
        # for a look with MGCPSWITCH_KEEP_BROWSER_FILES=1.
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-browser-real-")
        if not os.environ.get("MGCPSWITCH_KEEP_BROWSER_FILES"):
            self.addCleanup(shutil.rmtree, self.directory, True)

    async def test_originate_and_hang_up_through_the_page(self) -> None:
        """Call between two real lines through the page: listed, connected, hung up, gone; all idle at the end."""
        switch = await LiveSwitch.start()
        self.addCleanup(switch.stop)
        switch.auto_answer()
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)  # before the switch stops (cleanups run last first)

        await browser.get(switch.url + "/")
        await browser.wait_for_text("#status", "live")
        for gateway in ("rgw1", "rgw2"):
            await browser.wait_until(
                f"document.querySelector({json.dumps(row('gateways', 'gateway', gateway))})?.dataset.state === 'up'",
                what=f"{gateway} up on the page",
            )
        await browser.wait_until("document.querySelectorAll('#endpoints tbody tr').length === 16", what="16 lines")
        states = await browser.execute(
            "return Array.from(document.querySelectorAll('#endpoints tbody tr')).map(r => r.dataset.state)"
        )
        self.assertEqual(states, ["idle"] * 16)
        self.assertIn("(2005)", await browser.text(f'#call-to option[value="{B}"]'))

        await browser.click(f'#call-from option[value="{A}"]')
        await browser.click(f'#call-to option[value="{B}"]')
        self.assertEqual(await browser.execute("return [document.querySelector('#call-from').value, "
                                               "document.querySelector('#call-to').value]"), [A, B])
        await browser.click("#call-button")
        await browser.wait_for_text("#message", "started")
        message = await browser.text("#message")
        self.assertIn(f"{A} → {B}", message)
        call_id = message.split()[1]
        call = row("calls", "call-id", call_id)
        await browser.wait_until(
            f"document.querySelector({json.dumps(call)})?.dataset.state === 'connected'",
            what=f"call {call_id} connected on the page",
        )
        # The page agrees with the switch: both phones answered and have a connection.
        view = switch.control.get_call(call_id)
        self.assertEqual((view.state.value, view.caller, view.callee), ("connected", A, B))
        self.assertEqual((len(switch.phone(A).connections), len(switch.phone(B).connections)), (1, 1))
        text = await browser.text(call)
        for part in ("connected", A, B, "2005", "PCMU"):
            self.assertIn(part, text)
        await browser.wait_until(
            f"document.querySelector({json.dumps(row('endpoints', 'endpoint', B))})?.dataset.state === 'connected'",
            what=f"{B} connected on the page",
        )
        await browser.screenshot(os.path.join(self.directory, "call-connected.png"))

        # The call's page draws its real MGCP flow, between real addresses and ports.
        await browser.click(call + " a")
        await browser.wait_for_text("#call-id", call_id)
        ladder = switch.control.get_call(call_id).ladder
        await browser.wait_until(f"document.querySelectorAll('#flow g.message').length >= {len(ladder)}",
                                 what="every message of the ladder drawn")
        columns = await browser.execute(
            "return Array.from(document.querySelectorAll('#flow g.column')).map(g => "
            "[g.dataset.key, g.querySelector('.address').textContent])"
        )
        self.assertEqual(dict(columns), {
            A: f"127.0.0.1:{switch.ports['gw1']}", "agent": f"127.0.0.1:{switch.ports['agent']}",
            B: f"127.0.0.1:{switch.ports['gw2']}",
        })
        arrows = await browser.execute(
            "return Array.from(document.querySelectorAll('#flow g.message')).map(g => "
            "[g.dataset.label, g.dataset.source, g.dataset.target])"
        )
        self.assertIn(["CRCX", "agent", A], [[label.split()[0], s, t] for label, s, t in arrows])
        self.assertIn(["CRCX", "agent", B], [[label.split()[0], s, t] for label, s, t in arrows])
        await browser.screenshot(os.path.join(self.directory, "call-flow.png"))
        await browser.get(switch.url + "/")
        await browser.wait_for_text("#status", "live")

        await browser.click(call + ' button[data-action="hangup"]')
        await browser.wait_for_absence(call)
        await browser.wait_for_text("#message", f"call {call_id} hung up")
        await browser.wait_until(
            f"document.querySelector({json.dumps(row('recent-calls', 'call-id', call_id))})?.dataset.state === 'ended'",
            what="the call among the recent ones, ended",
        )
        self.assertIn("admin", await browser.execute(
            f"return document.querySelector({json.dumps(row('recent-calls', 'call-id', call_id))}).textContent"
        ))
        ended = switch.control.get_call(call_id)
        self.assertEqual((ended.state.value, ended.cause.value), ("ended", "admin"))
        self.assertEqual(sum(g.connection_count() for g in switch.gateways.values()), 0)
        self.assertEqual(await browser.execute("return document.querySelectorAll('#calls tbody tr').length"), 0)

        path = await browser.screenshot(os.path.join(self.directory, "call-hung-up.png"))
        self.assertTrue(path.startswith(self.directory))
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), PNG)
        self.assertGreater(os.path.getsize(path), 1000)

        # Both handsets are still off hook (busy tone); they hang up: everything idle.
        await switch.hang_up_all()
        self.assertTrue(switch.idle(), switch.describe())
        await browser.wait_until(
            "Array.from(document.querySelectorAll('#endpoints tbody tr')).every(r => r.dataset.state === 'idle')",
            what="every line idle on the page",
        )


TRUNK = """
[trunk:far]
address = 127.0.0.1
port = {far}
local_port = {local}
keepalive_interval = 0.5
max_channels = 4
"""


class TrunkAndOverloadOnARealSwitch(TestCase):
    timeout = 60

    def setUp(self) -> None:
        require_browser()
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-browser-real-")
        if not os.environ.get("MGCPSWITCH_KEEP_BROWSER_FILES"):
            self.addCleanup(shutil.rmtree, self.directory, True)

    async def test_trunk_table_and_overload_badge(self) -> None:
        """
        The trunk shows up (OPTIONS answered), a call in from it is listed
        on its row with a channel held, and gone after; the overload badge
        shows the real guard shedding and goes when it recovers.
        """
        from mgcpswitch.sip.trunk import SipTrunk

        far_port, local_port = free_udp_port(), free_udp_port()
        far_calls: list[Any] = []
        far = SipTrunk(settings("peer", far_port, local_port), reactor, far_calls.append)
        far.startService()
        self.addCleanup(far.stopService)
        switch = await LiveSwitch.start(sections=TRUNK.format(far=far_port, local=local_port))
        self.addCleanup(switch.stop)
        switch.auto_answer()
        browser = await Browser.start(reactor, self.directory)
        self.addCleanup(browser.stop)

        await browser.get(switch.url + "/")
        await browser.wait_for_text("#status", "live")
        await browser.wait_until("document.querySelector('#trunks tr[data-trunk=far]')?.dataset.state === 'up'",
                                 what="the trunk up on the page")
        self.assertIn(f"127.0.0.1:{far_port}", await browser.text(row("trunks", "trunk", "far")))

        far.call("2005", line_sdp(6000, "127.0.0.50"), Recorder(), caller="0123456")
        await wait_until(lambda: [c for c in switch.control.list_calls() if c.state.value == "connected"], 10,
                         "the call in connected")
        [call] = switch.control.list_calls()
        await browser.wait_for_text(row("trunks", "trunk", "far") + f' a[href="/calls/{call.call_id}"]', call.call_id)
        self.assertIn("1 / 4", await browser.text(row("trunks", "trunk", "far")))

        guard = switch.control.control.overload
        guard.stop()  # the test makes the lateness: the probe would smooth it away meanwhile
        while guard.share > 0.3:
            guard.observe(0.2)
        shedding = round((1 - guard.share) * 100)
        await browser.wait_for_text("#overload", f"overload: shedding {shedding}%")
        await browser.screenshot(os.path.join(self.directory, "trunk-and-overload.png"))
        while guard.state.value == "overloaded":
            guard.observe(0.0, busy=0.0)  # on time, and idle
        await browser.wait_until("document.querySelector('#overload').hidden", what="the overload badge gone")

        [far_call] = far.channels
        far_call.hang_up()
        await browser.wait_until(
            "!document.querySelector('#trunks tr[data-trunk=far] a')", what="no call left on the trunk's row")
        await switch.hang_up_all()
        self.assertTrue(switch.idle(), switch.describe())
        self.assertEqual(switch.control.get_trunk("far").channels_in_use, 0)
