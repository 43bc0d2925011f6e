"""
C{mgcpload answer}: lean lines that answer the calls something else places
on them, here a far SIP user agent calling through the switch's trunk, on
the in-memory network with the real CallControlService.  The lines answer,
hang up when the far end has, and end idle with the switch's.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.dialplan import StaticDialPlan
from mgcpswitch.agent.profiles import DEFAULT_PROFILE
from mgcpswitch.agent.service import CallControlService
from mgcpswitch.config import parse_settings
from mgcpswitch.load import LoadOptions, build_parser, make_config, options_from_args
from mgcpswitch.load.lean import LeanRunner
from mgcpswitch.sip.trunk import SipTrunk
from mgcpswitch.testing import MemoryNetwork, MemoryReactor

from .support.sip import Recorder, line_sdp, settings

TRUNK = """
[trunk:far]
address = 127.0.0.1
port = 5070
local_port = 5060
keepalive_interval = 0
"""


class Answering(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.network = MemoryNetwork(self.reactor, latency=0.0005)
        self.reactor.network = self.network
        self.settings = parse_settings(make_config(2, 3, base_port=31000, web="default") + TRUNK)
        self.service = CallControlService(
            self.reactor, self.settings, StaticDialPlan.from_settings(self.settings),
            {"default": DEFAULT_PROFILE}, [], random_source=random.Random(1),
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.far = SipTrunk(settings("far", 5070, 5060), self.reactor, lambda call: None, rng=random.Random(3))
        self.far.startService()
        self.addCleanup(self.far.stopService)
        self.runner = LeanRunner(self.reactor, self.settings, LoadOptions(duration=30.0, agent_pid=None),
                                 random=random.Random(2))
        self.addCleanup(self.runner.stop_gateways)

    def run_for(self, seconds: float) -> None:
        self.network.run(seconds, step=0.001)

    def test_lines_answer_and_release_calls_from_a_trunk(self) -> None:
        """
        Three calls in for three lines: each line answers (the far end is
        told answered), the far end hangs up, the line hears busy tone and
        goes on hook; the counts say so, and every line ends idle.
        """
        armed: list[float] = []
        result: list[Any] = []
        self.runner.answer(armed.append).addBoth(result.append)
        self.run_for(5.0)
        self.assertEqual(len(armed), 1, "every line armed")
        recorders = [Recorder() for _ in range(3)]
        calls = [self.far.call(number, line_sdp(6000 + i), recorder, caller="0123456")
                 for i, (number, recorder) in enumerate(zip(("1000", "1002", "1004"), recorders))]
        self.run_for(1.0)
        self.assertEqual([r.kinds()[-1] for r in recorders], ["answered"] * 3)
        self.assertEqual(sorted(ep.number for ep in self.runner.parties if ep.talking()), ["1000", "1002", "1004"])
        for call in calls:
            call.hang_up()
        self.run_for(2.0)
        self.assertTrue(all(ep.idle() for ep in self.runner.parties), self.runner.parties)
        self.assertEqual(self.service.control.calls(), [])
        self.runner.stop_answering()
        [counts] = result
        self.assertEqual((counts["answered"], counts["released"], counts["off_hook"], counts["lines"]), (3, 3, 0, 6))

    def test_the_time_is_up(self) -> None:
        """With nothing to answer, the run ends after its duration with zero counts."""
        result: list[Any] = []
        self.runner.answer().addBoth(result.append)
        self.run_for(40.0)
        [counts] = result
        self.assertEqual((counts["answered"], counts["released"]), (0, 0))

    def test_command_line(self) -> None:
        """C{mgcpload answer} reads its options; the lean generator's 2 ms tick."""
        args = build_parser().parse_args(["answer", "--config", "x.ini", "--duration", "12", "--gateways", "lg1"])
        options = options_from_args(args)
        self.assertEqual((options.duration, options.gateway_names, options.tick, options.agent_pid),
                         (12.0, ["lg1"], 0.002, None))
