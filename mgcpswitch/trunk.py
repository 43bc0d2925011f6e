# -*- test-case-name: tests.test_sip_trunk -*-
"""
Trunks of any kind: the frozen view the faces read and the error a trunk
call's C{update} fails with.  The configured trunks are built through
their factories by L{mgcpswitch.plugin.build_trunks}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


__all__ = ["TrunkState", "RegistrationState", "TrunkView", "TrunkCallError"]


class TrunkCallError(Exception):
    """
    Why a trunk call's C{update(sdp)} failed.  C{code} is a SIP-style
    status: the far end's final answer, or one the trunk gives itself
    (500 the call is not answered yet, 481 it has ended, 488 no codec in
    common, 408 no answer from the peer).  C{ended} tells whether the
    call is over (its listener is told C{ended} right after the Deferred
    fails, or was told before; not when call control hung up itself);
    else the call goes on with the media it had before the update.
    """

    def __init__(self, code: int, reason: str, *, ended: bool = False) -> None:
        super().__init__(code, reason, ended)
        self.code = code
        self.reason = reason
        self.ended = ended

    def __str__(self) -> str:
        return f"{self.code} {self.reason}" + (" (the call has ended)" if self.ended else "")


class TrunkState(Enum):
    """Whether the peer answers: UNKNOWN until a keepalive says (calls are tried)."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class RegistrationState(Enum):
    NONE = "none"  # not configured
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


@dataclass(frozen=True)
class TrunkView:
    """
    A trunk as the admin and /metrics show it.  C{statuses} counts the
    final statuses of calls, both ways (C{"out 486"}, C{"in 200"}).
    C{calls} are the ids of the calls in progress with a leg on the trunk:
    call control's side, set by it (L{ICallControl.list_trunks}); a
    trunk's own view leaves it empty.
    """

    name: str
    kind: str
    peer: str
    state: TrunkState
    registration: RegistrationState
    channels_in_use: int
    max_channels: int
    calls_out: int = 0
    calls_in: int = 0
    answered_out: int = 0
    answered_in: int = 0
    refused_full: int = 0
    statuses: Mapping[str, int] = field(default_factory=dict)
    messages: Mapping[str, int] = field(default_factory=dict)
    calls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "peer": self.peer,
            "state": self.state.value,
            "registration": self.registration.value,
            "channels_in_use": self.channels_in_use,
            "max_channels": self.max_channels,
            "calls_out": self.calls_out,
            "calls_in": self.calls_in,
            "answered_out": self.answered_out,
            "answered_in": self.answered_in,
            "refused_full": self.refused_full,
            "statuses": dict(sorted(self.statuses.items())),
            "messages": dict(self.messages),
            "calls": list(self.calls),
        }
