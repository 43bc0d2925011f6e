"""
SIP for the switch's trunks.

The modules imported here are the protocol core, pure Python in the
style of L{mgcpswitch.mgcp} (no Twisted, no I/O, no clock: a test checks):
messages (L{message}), URIs (L{uri}), structured headers (L{headers}),
offer/answer (L{sdp}) and digest authentication (L{digest}).  The parts
that keep time and talk to the network use the injected reactor:
L{mgcpswitch.sip.transaction} (RFC 3261 §17), L{mgcpswitch.sip.dialog}
(§12), L{mgcpswitch.sip.agent} (the UDP user agent) and
L{mgcpswitch.sip.trunk} (the trunk, its calls in L{mgcpswitch.sip.outgoing}
and L{mgcpswitch.sip.incoming} over L{mgcpswitch.sip.calls}, its OPTIONS and
REGISTER in L{mgcpswitch.sip.peer}).  docs/SIP.md says why and how.
"""

from .digest import Algorithm, Challenge, authorization, choose_challenge, parse_challenge
from .headers import CSeq, NameAddress, Via, parse_cseq, parse_name_address, parse_via, split_commas
from .message import (
    COMPACT_FORMS,
    REASONS,
    Malformed,
    Message,
    Method,
    Request,
    Response,
    decode,
    encode,
    reply_to_malformed,
    response_to,
)
from .sdp import Origin, check_answer, make_answer, make_offer, parse_sdp
from .uri import OtherUri, SipUri, Uri, parse_uri

__all__ = [
    "Algorithm", "Challenge", "authorization", "choose_challenge", "parse_challenge",
    "CSeq", "NameAddress", "Via", "parse_cseq", "parse_name_address", "parse_via", "split_commas",
    "COMPACT_FORMS", "REASONS", "Malformed", "Message", "Method", "Request", "Response",
    "decode", "encode", "reply_to_malformed", "response_to",
    "Origin", "check_answer", "make_answer", "make_offer", "parse_sdp",
    "OtherUri", "SipUri", "Uri", "parse_uri",
]
