# -*- test-case-name: tests.test_sip_trunk -*-
"""
Dialogs (RFC 3261 §12): the state two user agents share for the length
of a call, and the requests built from it.

A dialog is made from the INVITE and the response that carried the
remote tag (UAC, §12.1.2) or from the INVITE and the tag this side chose
(UAS, §12.1.1).  It keeps the route set, the remote target (refreshed by
a re-INVITE's Contact), and both sequence numbers: requests it builds
take the next local number (ACK and CANCEL reuse the INVITE's), and a
request from the peer with a lower number than the last is out of order
(§12.2.2: 500).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .headers import CSeq, NameAddress, Via
from .message import Headers, Method, Request, Response
from .uri import SipUri, Uri

__all__ = ["Dialog", "DialogId", "next_hop"]

DialogId = tuple[str, str, str]  # Call-ID, local tag, remote tag
Address = tuple[str, int]


def next_hop(uri: Uri, fallback: Address) -> Address:
    """Where a request for C{uri} goes: its host when that is an IP literal, else C{fallback} (no DNS here)."""
    if isinstance(uri, SipUri):
        try:
            ipaddress.ip_address(uri.host)
        except ValueError:
            return fallback
        return uri.address
    return fallback


@dataclass
class Dialog:
    """One confirmed (or early) dialog; C{local_seq} moves as requests are built."""

    call_id: str
    local_tag: str
    remote_tag: str
    local: NameAddress  # our From in requests we send (with our tag)
    remote: NameAddress  # their To in requests we send (with their tag)
    remote_target: Uri
    route_set: tuple[NameAddress, ...]
    local_seq: int
    remote_seq: int | None

    @property
    def id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uac(cls, invite: Request, response: Response) -> Dialog:
        """§12.1.2: route set from Record-Route reversed, target from the Contact."""
        assert response.to.tag is not None and invite.from_.tag is not None
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_.tag,
            remote_tag=response.to.tag,
            local=invite.from_,
            remote=response.to,
            remote_target=response.contact[0].uri if response.contact else invite.uri,
            route_set=tuple(reversed(response.record_route)),
            local_seq=invite.cseq.seq,
            remote_seq=None,
        )

    @classmethod
    def as_uas(cls, invite: Request, local_tag: str) -> Dialog:
        """§12.1.1: route set from Record-Route in order, target from the Contact."""
        assert invite.from_.tag is not None
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag,
            local=invite.to.with_tag(local_tag),
            remote=invite.from_,
            remote_target=invite.contact[0].uri if invite.contact else invite.from_.uri,
            route_set=invite.record_route,
            local_seq=0,
            remote_seq=invite.cseq.seq,
        )

    def _target(self) -> tuple[Uri, tuple[NameAddress, ...]]:
        """Request-URI and Route headers (§12.2.1.1: loose routing, or strict)."""
        if not self.route_set:
            return self.remote_target, ()
        first = self.route_set[0].uri
        if isinstance(first, SipUri) and first.param("lr") is not None:
            return self.remote_target, self.route_set
        strict_uri = first.without_params() if isinstance(first, SipUri) else first
        return strict_uri, self.route_set[1:] + (NameAddress(self.remote_target),)

    def destination(self, fallback: Address) -> Address:
        """The next hop of requests in this dialog."""
        return next_hop(self.route_set[0].uri if self.route_set else self.remote_target, fallback)

    def request(
        self, method: str, via: Via, *, contact: tuple[NameAddress, ...] = (), headers: Headers = (), body: bytes = b""
    ) -> Request:
        """A new request in the dialog, with the next local sequence number."""
        uri, route = self._target()
        return Request(
            method=method, uri=uri, via=(via,), from_=self.local, to=self.remote, call_id=self.call_id,
            cseq=CSeq(self.next_seq(), method), max_forwards=70, route=route, contact=contact,
            headers=headers, body=body,
        )

    def next_seq(self) -> int:
        """The next local sequence number (a request again with credentials takes one too, §22.2)."""
        self.local_seq += 1
        return self.local_seq

    def ack(self, invite: Request, via: Via) -> Request:
        """The ACK of a 2xx to C{invite} (§13.2.2.4): the INVITE's CSeq number, its credentials."""
        uri, route = self._target()
        credentials = tuple((n, v) for n, v in invite.headers if n in ("Authorization", "Proxy-Authorization"))
        return Request(
            method=Method.ACK, uri=uri, via=(via,), from_=self.local, to=self.remote, call_id=self.call_id,
            cseq=CSeq(invite.cseq.seq, Method.ACK), max_forwards=70, route=route, headers=credentials,
        )

    def accept_remote_seq(self, request: Request) -> bool:
        """Whether C{request}'s CSeq is in order (§12.2.2); records it if so."""
        if self.remote_seq is not None and request.cseq.seq < self.remote_seq:
            return False
        self.remote_seq = request.cseq.seq
        return True

    def refresh_target(self, message: Request | Response) -> None:
        """A target refresh (re-INVITE or its 2xx) moves the remote target to its Contact."""
        if message.contact:
            self.remote_target = message.contact[0].uri
