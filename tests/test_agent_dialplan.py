"""The built-in static dial plan."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mgcpswitch.agent.dialplan import StaticDialPlan
from mgcpswitch.agent.model import ReleaseCause, RouteRequest
from mgcpswitch.config import parse_settings
from mgcpswitch.interfaces import IDialPlan

INI = """
[switch]
digit_map = (xxxx|9xxxx|0T)
[gateway:rgw1]
address = 127.0.0.2
lines = 2
numbers = 1001-1002
digit_map = (xxxx|0T)
[gateway:rgw2]
address = 127.0.0.3
lines = 2
numbers = 2001, 2005
[dialplan]
9xxxx = aaln/2@rgw2
"""


class Static(SynchronousTestCase):
    def setUp(self) -> None:
        self.plan = StaticDialPlan.from_settings(parse_settings(INI))

    def test_interface(self) -> None:
        """It provides IDialPlan."""
        verifyObject(IDialPlan, self.plan)

    def test_numbers_patterns_and_unknown(self) -> None:
        """Directory numbers route to their line, patterns after them, the rest is rejected."""
        route = lambda digits: self.plan.route(RouteRequest("aaln/1@rgw1", digits))
        self.assertEqual(route("1002").target, "aaln/2@rgw1")
        self.assertEqual(route("2005").target, "aaln/2@rgw2")
        self.assertEqual(route("91234").target, "aaln/2@rgw2")
        rejected = route("3000")
        self.assertIsNone(rejected.target)
        self.assertEqual(rejected.cause, ReleaseCause.UNKNOWN_NUMBER)

    def test_digit_map_per_gateway(self) -> None:
        """A gateway's own digit map wins over the switch's."""
        self.assertEqual(str(self.plan.digit_map("aaln/1@rgw1")), "(xxxx|0T)")
        self.assertEqual(str(self.plan.digit_map("aaln/1@RGW2")), "(xxxx|9xxxx|0T)")
