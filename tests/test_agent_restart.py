"""
The call agent restarts (its process killed: no goodbye to the gateways)
while calls talk, and the gateways stay up and have nothing to say: the new
agent must find them, take back the talking calls it has checkpoints of,
delete the connections it knows nothing of, arm every idle line, and close
the record of every call, whatever the keepalive setting (issue 16).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.agent.model import CallState, GatewayState, LineState, ReleaseCause
from mgcpswitch.agent.store import MemoryStore

from .support.switch import Switch, talking


class Restart(SynchronousTestCase):
    def switch(self, **options: Any) -> Switch:
        s = Switch(keepalive=0, store=MemoryStore(), **options)
        self.addCleanup(s.stop)
        return s

    def test_resync_without_keepalives(self) -> None:
        """
        keepalive_interval = 0: the restarted agent still probes and audits
        every gateway at start; every line is idle and armed within 5 s, and
        a call placed 2 s after the restart completes.
        """
        s = self.switch()
        s.restart_agent(store=MemoryStore())
        s.run(5.0)
        for name in ("rgw1", "rgw2"):
            self.assertIs(s.control.gateway(name).state, GatewayState.UP)
        self.assertTrue(s.idle())
        a, b = talking(s, "1001", "2002")
        a.on_hook()
        b.on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())
        self.assertEqual([r.cause for r in s.recorder.records], [ReleaseCause.NORMAL])

    def test_talking_calls_survive_a_restart(self) -> None:
        """
        A call talking when the agent dies is taken back from its checkpoint:
        its connections stay, its lines are watched for the hang-up again,
        and it ends normally with one record carrying its first answer time.
        """
        s = self.switch()
        a, b = talking(s, "1001", "2002")
        [before] = s.service.list_calls()
        s.restart_agent(down=3.0)
        s.run(5.0)
        [call] = s.service.list_calls()
        self.assertEqual((call.call_id, call.state, call.answered), (before.call_id, CallState.CONNECTED, before.answered))
        self.assertIs(s.line("aaln/1@rgw1").state, LineState.CONNECTED)
        self.assertEqual(len(a.connections) + len(b.connections), 2)
        self.assertEqual([str(r.name) for r in a.requested_events], ["L/hu", "L/hf"])  # and its flash
        b.on_hook()
        s.run(0.5)
        self.assertIn("L/bz", a.signals)
        a.on_hook()
        s.run(0.5)
        self.assertTrue(s.idle())
        [record] = s.control.store.records
        self.assertEqual((record.call_id, record.cause, record.answer), (before.call_id, ReleaseCause.NORMAL, before.answered))

    def test_a_party_hung_up_while_the_agent_was_down(self) -> None:
        """The audit finds the caller on hook: the call is released, the callee hears busy tone."""
        s = self.switch()
        a, b = talking(s, "1001", "2002")
        s.service.stopService()
        a.on_hook()  # its NTFY goes nowhere
        s.run(1.0)
        s.restart_agent()
        s.run(5.0)
        self.assertEqual(a.connections + b.connections, ())
        self.assertIn("L/bz", b.signals)
        b.on_hook()
        s.run(0.5)
        self.assertTrue(s.idle())
        [record] = s.control.store.records
        self.assertEqual(record.cause, ReleaseCause.NORMAL)

    def test_calls_gone_meanwhile_are_closed(self) -> None:
        """A checkpointed call whose connections the gateway no longer has ends with agent-restart."""
        s = self.switch()
        a, b = talking(s, "1001", "2002")
        s.service.stopService()
        s.gw2.restart_silently = True
        for connection in list(b.connections):  # gone, and nobody said so
            s.gw2.line(2)._ep.connections.pop(connection.connection_id)
        s.restart_agent()
        s.run(5.0)
        self.assertEqual(a.connections, ())
        [record] = s.control.store.records
        self.assertEqual(record.cause, ReleaseCause.AGENT_RESTART)
        a.on_hook()
        b.on_hook()
        s.run(0.5)
        self.assertTrue(s.idle())

    def test_without_checkpoints_the_connections_are_deleted(self) -> None:
        """
        An agent that knows none of the calls (its store was lost) deletes
        their connections at start, and the phones left off hook get dial
        tone from the audit.
        """
        s = self.switch()
        a, b = talking(s, "1001", "2002")
        s.restart_agent(store=MemoryStore())
        s.run(5.0)
        self.assertEqual(a.connections + b.connections, ())
        self.assertGreaterEqual(s.control.counters["stale_connections"], 2)
        self.assertIn("L/dl", a.signals)
        a.on_hook()
        b.on_hook()
        s.run(0.5)
        self.assertTrue(s.idle())

    def test_unknown_endpoints_close_their_records(self) -> None:
        """A checkpoint naming an endpoint the configuration no longer has ends at once, with its record."""
        from mgcpswitch.agent.model import CallCheckpoint, LegCheckpoint

        store = MemoryStore()
        store.call_answered(CallCheckpoint(
            "gone1", "9999", 1.0, 2.0,
            (LegCheckpoint("aaln/1@rgw9", True, "C1", "sendrecv"),
             LegCheckpoint("aaln/2@rgw1", False, "C2", "sendrecv")),
        ))
        s = Switch(keepalive=0, store=store)
        self.addCleanup(s.stop)
        s.run(2.0)
        [record] = store.records
        self.assertEqual((record.call_id, record.cause, record.answer), ("gone1", ReleaseCause.AGENT_RESTART, 2.0))
        self.assertEqual(store.calls, {})
        self.assertTrue(s.idle())
