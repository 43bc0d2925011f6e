# -*- test-case-name: tests.test_sip_trunk -*-
"""
Trunks of any kind: the frozen view the faces read, the error a trunk
call's C{update} fails with, and building the configured trunks through
their factories (L{ITrunkFactory} plugins, chosen by each
C{[trunk:NAME]} section's C{kind}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from enum import Enum
from typing import Any, Callable, Mapping

from .config import Settings
from .errors import ConfigError
from .interfaces import ITrunk, ITrunkFactory

__all__ = ["TrunkState", "RegistrationState", "TrunkView", "TrunkCallError", "build_trunks"]


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


def build_trunks(settings: Settings, context: Any, incoming: Callable[[str, Any], None]) -> dict[str, Any]:
    """
    Every C{[trunk:NAME]} built by the factory its C{kind} names, by name;
    a kind no plugin provides is a L{ConfigError} naming section and key.
    Each trunk's calls in go to C{incoming(NAME, call)}.
    """
    from .plugin import available

    factories = available(ITrunkFactory)
    trunks: dict[str, Any] = {}
    for trunk in settings.trunks:
        factory = factories.get(trunk.kind)
        if factory is None:
            raise ConfigError(
                (f"trunk:{trunk.name}", "kind"),
                f"no trunk kind {trunk.kind!r}; available: {', '.join(sorted(factories)) or 'none'}",
            )
        built = factory.build(trunk, context, partial(incoming, trunk.name))
        if not ITrunk.providedBy(built):
            raise TypeError(f"the {trunk.kind} trunk factory built {built!r}, not an ITrunk")
        trunks[trunk.name] = built
    return trunks
