"""
Another kind of trunk, as docs/PLUGINS.md shows it ("A trunk of another
kind"): the documented example, dropped in beside the package, is found by
its C{kind}, built from its C{[trunk:NAME]} section, and carries a line's
call through call control like the SIP trunk's: routed by the dial plan,
ringback, answered, released, recorded, with nothing left on either side.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mgcpswitch.agent.model import LineState, ReleaseCause
from mgcpswitch.interfaces import ITrunk, ITrunkFactory
from mgcpswitch.plugin import available

from .support.switch import Switch
from .test_plugins import DropIn, example

LOOP = """
[trunk:echo]
kind = loop
address = 127.0.0.1
max_channels = 1

[dialplan]
7xxx = trunk:echo
"""


class DocumentedTrunkKind(SynchronousTestCase):
    def setUp(self) -> None:
        dropin = DropIn()
        self.addCleanup(dropin.remove)
        dropin.add("loop_trunk", example("loop_trunk.py"))
        dropin.install()

    def switch(self) -> Switch:
        s = Switch(rgw2_extra=LOOP)
        self.addCleanup(s.stop)
        s.run(3.0)
        return s

    def test_found_and_built(self) -> None:
        """The kind is discovered by name and builds an ITrunk for its section."""
        factory = available(ITrunkFactory)["loop"]
        verifyObject(ITrunkFactory, factory)
        s = self.switch()
        trunk = s.service.trunks["echo"]
        verifyObject(ITrunk, trunk)
        self.assertEqual(trunk.view().max_channels, 1)

    def test_a_line_calls_through_it(self) -> None:
        """
        A number the dial plan routes to C{trunk:echo} is offered the
        line's SDP; ringback while the far side rings, the connection
        made sendrecv with the answer's SDP when it answers; the line's
        hang-up ends the far call; one record naming the trunk, cause
        normal; every line idle, no connection, no channel in use.
        """
        s = self.switch()
        trunk = s.service.trunks["echo"]
        phone = s.phone("1001")
        phone.off_hook()
        s.run(0.5)
        phone.dial("7001", gap=0.05)
        s.run(0.5)
        self.assertIn("G/rt", {str(x) for x in phone.signals})
        self.assertEqual(trunk.view().channels_in_use, 1)
        s.run(1.0)
        [connection] = phone.connections
        self.assertEqual(connection.mode, "sendrecv")
        self.assertEqual(connection.remote_sdp.audio.port, connection.local_sdp.audio.port)
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.CONNECTED)
        phone.on_hook()
        s.run(1.0)
        [record] = s.recorder.records
        self.assertEqual(record.cause, ReleaseCause.NORMAL)
        self.assertEqual(record.callee_endpoint, "trunk:echo")
        self.assertEqual(trunk.view().channels_in_use, 0)
        self.assertTrue(s.idle())

    def test_every_channel_busy(self) -> None:
        """
        With its one channel in use, the next call out is refused the way
        the example says (503 on a later turn): the caller hears reorder,
        cause congestion, and nothing is left.
        """
        s = self.switch()
        first, second = s.phone("1001"), s.phone("1002")
        for phone in (first, second):
            phone.off_hook()
            s.run(0.5)
            phone.dial("7001", gap=0.05)
            s.run(0.5)
        self.assertIn("L/ro", {str(x) for x in second.signals})
        second.on_hook()
        first.on_hook()
        s.run(1.0)
        causes = sorted(r.cause.value for r in s.recorder.records)
        self.assertEqual(causes, ["congestion", "normal"])
        self.assertTrue(s.idle())
