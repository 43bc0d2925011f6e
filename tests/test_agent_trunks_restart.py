"""
A trunk call and an agent restart, on the in-memory network: the call
cannot outlive the agent's process (its far party was that process's SIP
dialog), so the restarted agent closes its record and the audit deletes
the line's connection.
"""

from __future__ import annotations

from mgcpswitch.agent.model import ReleaseCause
from mgcpswitch.agent.store import MemoryStore

from .support.sip import line_sdp
from .test_agent_trunks import Trunked


class ARestart(Trunked):
    def test_a_talking_trunk_call_is_closed_and_its_connection_deleted(self) -> None:
        """
        A line talks through the trunk when the agent restarts: its record
        is closed with cause agent-restart, naming the trunk's party; the
        line loses its connection and, once on hook, is idle.
        """
        s, far = self.switch(store=MemoryStore(), keepalive=0)
        far.script = lambda call: call.answer(line_sdp(7000, "127.0.0.60"))
        phone = self.dial_out(s)
        self.assertEqual([c.mode for c in phone.connections], ["sendrecv"])
        s.restart_agent(down=1.0)
        s.run(5.0)
        self.assertEqual(phone.connections, ())
        [record] = s.control.store.records
        self.assertEqual((record.cause, record.caller_endpoint, record.callee_endpoint),
                         (ReleaseCause.AGENT_RESTART, "aaln/1@rgw1", "trunk:provider"))
        phone.on_hook()
        s.run(1.0)
        self.assertTrue(s.idle())
