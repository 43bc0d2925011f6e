# -*- test-case-name: tests.test_web_flow -*-
"""
A call's MGCP ladder as a flow graph: who sent what to whom, datagram by
datagram, with real addresses and times, for the call's page (a sequence
diagram, as Wireshark's VoIP flow graph) and for its pcap.

Pure: views in, frozen values out; no Twisted, no clock.

Each ladder entry (L{LadderEntry}) is one MGCP message.  Its columns are
the call agent and the endpoint it concerns: a command names it on its
first line; a response concerns the endpoint of the command with the same
transaction id on the same gateway.  Addresses come from the entry
(C{local}, C{remote}) when call control recorded them, else from what the
admin knows: the gateway's view (C{host:port}) and the agent's address it
was given.  A message is marked a retransmission when the entry says so or
when the same text went the same way to the same gateway earlier in the
call.  Consecutive entries marked C{piggybacked}, in the same direction
to the same peer at the same time, travelled in one datagram.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping

from ..agent.model import CallView, GatewayView, LadderEntry

__all__ = ["AGENT", "UNKNOWN_HOST", "Column", "Message", "Datagram", "Flow", "build_flow", "parse_address"]

AGENT = "agent"
UNKNOWN_HOST = "0.0.0.0"  # an address nobody recorded: the pcap still opens
CALL_AGENT_PORT = 2727
GATEWAY_PORT = 2427

Address = tuple[str, int]


def parse_address(text: str | None) -> Address | None:
    """C{"host:port"} (an IPv6 host bracketed or not: the port is after the last colon) as (host, port)."""
    if not text:
        return None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        number = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, number = text.rpartition(":")
    if not number.isdigit() or not _is_ip(host):
        return None
    return host, int(number)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    return True


def _show(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Column:
    """A lifeline: the call agent, or one endpoint (at its gateway's address)."""

    key: str  # AGENT or the endpoint name
    gateway: str | None
    address: str  # "host:port" (IPv6 in brackets)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "gateway": self.gateway, "address": self.address}


@dataclass(frozen=True)
class Message:
    """One MGCP message of the flow: an arrow of the diagram."""

    index: int  # its place in the ladder
    time: float
    offset: float  # seconds since the call started
    outgoing: bool  # from the agent to the gateway
    source: str  # column keys
    target: str
    label: str  # "CRCX 1001" or "200 1001 OK"
    verb: str | None
    code: int | None
    transaction_id: str
    retransmission: bool
    piggybacked: bool
    datagram: int  # index of the datagram it travelled in
    text: str

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "time": self.time, "offset": self.offset,
            "direction": "out" if self.outgoing else "in", "source": self.source, "target": self.target,
            "label": self.label, "verb": self.verb, "code": self.code, "transaction_id": self.transaction_id,
            "retransmission": self.retransmission, "piggybacked": self.piggybacked, "datagram": self.datagram,
            "text": self.text,
        }


@dataclass(frozen=True)
class Datagram:
    """One UDP datagram: its messages (more than one when piggybacked)."""

    time: float
    source: Address
    destination: Address
    payload: bytes


@dataclass(frozen=True)
class Flow:
    columns: tuple[Column, ...]
    messages: tuple[Message, ...]
    datagrams: tuple[Datagram, ...]

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns], "messages": [m.to_json() for m in self.messages]}


@dataclass(frozen=True)
class _FirstLine:
    verb: str | None
    code: int | None
    transaction_id: str
    endpoint: str | None
    label: str


def _first_line(entry: LadderEntry) -> _FirstLine:
    line = (entry.text.split("\n", 1)[0] or entry.summary).strip()
    words = line.split()
    if not words:
        return _FirstLine(None, None, "", None, entry.summary)
    if entry.gateway.startswith("trunk:"):  # SIP beside the MGCP: "INVITE sip:... SIP/2.0", "SIP/2.0 180 Ringing"
        if words[0].upper().startswith("SIP/") and len(words) > 1 and words[1].isdigit():
            return _FirstLine(None, int(words[1]), "", entry.gateway, " ".join(words[1:]))
        return _FirstLine(words[0].upper(), None, "", entry.gateway, words[0].upper())
    txid = words[1] if len(words) > 1 else ""
    if words[0].isdigit():
        code = int(words[0])
        comment = " ".join(words[2:])
        return _FirstLine(None, code, txid, None, " ".join(filter(None, (words[0], txid, comment))))
    endpoint = words[2] if len(words) > 2 else None
    return _FirstLine(words[0].upper(), None, txid, endpoint, f"{words[0].upper()} {txid}".strip())


def build_flow(
    call: CallView, gateways: Mapping[str, GatewayView], agent: Address | None = None
) -> Flow:
    """
    The flow of C{call}'s ladder.  C{gateways} by name give their
    addresses, C{agent} is the call agent's (host, port) when known.
    """
    lines = [_first_line(entry) for entry in call.ladder]
    # (gateway, txid, sent by the agent) -> endpoint, from the commands; the
    # two sides' transaction ids are separate spaces.
    endpoints: dict[tuple[str, str, bool], str] = {}
    spelled: dict[str, str] = {}  # lower-case endpoint -> first spelling seen
    for entry, line in zip(call.ladder, lines):
        if line.endpoint is not None:
            endpoint = spelled.setdefault(line.endpoint.lower(), line.endpoint)
            endpoints.setdefault((entry.gateway, line.transaction_id, entry.direction == "out"), endpoint)

    columns: dict[str, Column] = {}
    messages: list[Message] = []
    datagrams: list[Datagram] = []
    texts: list[bytes] = []
    seen: set[tuple[bool, str, str]] = set()
    previous: LadderEntry | None = None
    for index, (entry, line) in enumerate(zip(call.ladder, lines)):
        outgoing = entry.direction == "out"
        sent_by_agent = outgoing if line.verb is not None else not outgoing
        if entry.gateway.startswith("trunk:"):
            endpoint = entry.gateway  # a trunk's column: its party
        else:
            endpoint = endpoints.get((entry.gateway, line.transaction_id, sent_by_agent)) or f"*@{entry.gateway}"
        local = parse_address(entry.local) or agent or (UNKNOWN_HOST, CALL_AGENT_PORT)
        remote = parse_address(entry.remote) or _gateway_address(gateways.get(entry.gateway))
        if endpoint not in columns:
            columns[endpoint] = Column(endpoint, entry.gateway, _show(remote))
        if AGENT not in columns and len(columns) == 1:
            columns[AGENT] = Column(AGENT, None, _show(local))
        key = (outgoing, entry.gateway, entry.text)
        retransmission = entry.retransmission or key in seen
        seen.add(key)
        source, destination = (local, remote) if outgoing else (remote, local)
        joins = (
            entry.piggybacked and previous is not None and previous.piggybacked
            and previous.direction == entry.direction and previous.gateway == entry.gateway
            and previous.time == entry.time and datagrams and datagrams[-1].source == source
            and datagrams[-1].destination == destination
        )
        text = entry.text if entry.text.endswith("\n") else entry.text + "\r\n"
        if joins:
            texts[-1] += b".\r\n" + text.encode("utf-8")
            datagrams[-1] = Datagram(datagrams[-1].time, source, destination, texts[-1])
        else:
            texts.append(text.encode("utf-8"))
            datagrams.append(Datagram(entry.time, source, destination, texts[-1]))
        messages.append(Message(
            index=index, time=entry.time, offset=entry.time - call.started, outgoing=outgoing,
            source=AGENT if outgoing else endpoint, target=endpoint if outgoing else AGENT,
            label=line.label, verb=line.verb, code=line.code, transaction_id=line.transaction_id,
            retransmission=retransmission, piggybacked=entry.piggybacked, datagram=len(datagrams) - 1,
            text=entry.text,
        ))
        previous = entry
    if AGENT not in columns:
        columns[AGENT] = Column(AGENT, None, _show(agent or (UNKNOWN_HOST, CALL_AGENT_PORT)))
    return Flow(tuple(columns.values()), tuple(messages), tuple(datagrams))


def _gateway_address(view: GatewayView | None) -> Address:
    if view is None:
        return (UNKNOWN_HOST, GATEWAY_PORT)
    return (view.host if view.host and _is_ip(view.host) else UNKNOWN_HOST, view.port)
