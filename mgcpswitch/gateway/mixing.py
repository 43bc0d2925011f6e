# -*- test-case-name: tests.test_gateway_mixing -*-
"""
Who hears whom on one endpoint: the connection modes' mixing rules of RFC
3435 §2.3.1 and Appendix D ("Mode Interactions"), as a pure function of the
modes of the endpoint's connections.

An endpoint has one local source and sink, its line: the handset (C{H}),
whose microphone is C{Hi} and whose earpiece is C{Ho}.  Each connection
C{X} receives C{Xi} from the network and sends C{Xo} to it.  Appendix D's
table gives, for two connections A and B, what goes to C{Ao}, C{Bo} and
C{Ho}; §2.3.1 says that with more connections the streams are unioned.
The table is the union of these rules, each checked cell by cell in
tests/test_gateway_mixing.py:

  - the handset hears every connection in C{recvonly}, C{sendrecv} or
    C{confrnce} mode (§2.3.1: "mixed and sent to the endpoint");
  - a connection in C{sendonly}, C{sendrecv} or C{confrnce} mode sends the
    handset's audio (§2.3.1: "transmitted over all connections whose mode
    is send, send/receive or conference");
  - a C{confrnce} connection also sends what every other C{confrnce}
    connection receives (App. D: C{Ao=Hi+Bi}, C{Bo=Hi+Ai}); a C{sendrecv}
    connection beside it does not (C{Ao=Hi}): only conference connections
    are bridged to each other;
  - a C{netwloop} or C{netwtest} connection sends back what it receives
    (App. D: C{Ao=Ai}) and gives nothing to the handset;
  - C{recvonly} and C{inactive} connections send nothing;
  - while any connection is in C{loopback} or C{conttest} mode, the
    handset's audio goes out nowhere and no connection reaches the
    handset: the line's signal is looped back to it (§2.3.1: "the gateway
    is expected to return the incoming signal from the endpoint back into
    that same endpoint"; the simulated line treats a continuity test the
    same way).

There is no C{data} mode in MGCP 1.0 (App. A's grammar; the codec refuses
it with 517), so it has no row here.
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Union

from ..mgcp import ConnectionMode

__all__ = ["Handset", "HANDSET", "Mix", "mix", "TO_HANDSET", "FROM_HANDSET", "BRIDGED", "ECHOING", "LOOPING", "line_source", "receivers", "sends_handset"]


class Handset(enum.Enum):
    """The endpoint's own line: the source C{Hi} and the sink C{Ho} of App. D."""

    H = "handset"

    def __repr__(self) -> str:
        return "HANDSET"


HANDSET = Handset.H

#: What a connection's output can carry: the handset or another connection (by id).
Source = Union[Handset, str]

M = ConnectionMode
#: Modes whose received media is played to the handset (§2.3.1).
TO_HANDSET = frozenset({M.RECVONLY, M.SENDRECV, M.CONFRNCE})
#: Modes that send the handset's media (§2.3.1).
FROM_HANDSET = frozenset({M.SENDONLY, M.SENDRECV, M.CONFRNCE})
#: Modes bridged to each other (App. D: confrnce with confrnce).
BRIDGED = frozenset({M.CONFRNCE})
#: Modes that return what they receive to the network (App. D: netw).
ECHOING = frozenset({M.NETWLOOP, M.NETWTEST})
#: Modes that loop the handset back to itself and suppress its media (§2.3.1).
LOOPING = frozenset({M.LOOPBACK, M.CONTTEST})


@dataclass(frozen=True, slots=True)
class Mix:
    """
    The endpoint's mixing: C{outputs} maps each connection id to the sources
    it sends (C{Xo}), C{handset} the sources the handset hears (C{Ho}).
    """

    outputs: Mapping[str, frozenset[Source]]
    handset: frozenset[Source]

    def sent_on(self, connection_id: str) -> frozenset[Source]:
        """C{Xo}: what connection C{connection_id} sends (nothing for an unknown id)."""
        return self.outputs.get(connection_id, frozenset())

    def receivers(self, source: Source) -> frozenset[Source]:
        """Where what C{source} receives goes: connection ids, and C{HANDSET} when the handset hears it."""
        found: set[Source] = {cid for cid, sent in self.outputs.items() if source in sent}
        if source in self.handset:
            found.add(HANDSET)
        return frozenset(found)


def mix(modes: Mapping[str, ConnectionMode]) -> Mix:
    """
    The mixing of an endpoint whose connections (by id) have C{modes}:
    RFC 3435 §2.3.1 and Appendix D, as the module docstring sets out.
    """
    looping = any(mode in LOOPING for mode in modes.values())
    outputs: dict[str, frozenset[Source]] = {}
    bridged = [cid for cid, mode in modes.items() if mode in BRIDGED]
    for cid, mode in modes.items():
        sent: set[Source] = set()
        if mode in FROM_HANDSET and not looping:
            sent.add(HANDSET)
        if mode in BRIDGED:
            sent.update(other for other in bridged if other != cid)
        if mode in ECHOING:
            sent.add(cid)
        outputs[cid] = frozenset(sent)
    if looping:
        handset: frozenset[Source] = frozenset({HANDSET})
    else:
        handset = frozenset(cid for cid, mode in modes.items() if mode in TO_HANDSET)
    return Mix(outputs, handset)


@lru_cache(maxsize=4096)
def receivers(modes: tuple[tuple[str, ConnectionMode], ...], connection_id: str) -> tuple[Source, ...]:
    """
    L{Mix.receivers} of C{connection_id} on an endpoint whose connections
    have C{modes} (C{(id, mode)} pairs), memoised: a connection asks for
    every packet it receives, and an endpoint's modes change far less often
    (the cache is bounded; a call's connections fill one entry per mode set).
    """
    return tuple(mix(dict(modes)).receivers(connection_id))


@lru_cache(maxsize=4096)
def sends_handset(modes: tuple[tuple[str, ConnectionMode], ...], connection_id: str) -> bool:
    """Whether C{connection_id} sends the handset's audio (C{Hi} in its C{Xo}), memoised like L{receivers}."""
    return HANDSET in mix(dict(modes)).sent_on(connection_id)


def line_source(endpoint_name: str) -> int:
    """
    The RTP source id (SSRC) of a line's audio: the same in each of its
    connections (each is its own RTP session, where RFC 3550 §8 asks an SSRC
    to be unique), derived from the endpoint's name so that a test or an
    operator can tell whom a packet's CSRC names.
    """
    return zlib.crc32(endpoint_name.lower().encode("utf-8"))
