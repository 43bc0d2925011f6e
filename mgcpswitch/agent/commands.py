# -*- test-case-name: tests.test_agent_calls -*-
"""
The commands the call agent sends, built from typed constants.

Requested-event and signal lists are parsed once here, at import, and
shared by every command: the codec memoises their formatted text by
identity, so sending them costs a dictionary lookup, not a format.
Commands are assembled straight into L{Parameters} (the keyword path of
L{Command.create} parses and coerces each argument, which the hot path
does not need).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Optional

from ..mgcp import (
    Command,
    ConnectionMode,
    DigitMap,
    EndpointName,
    EventName,
    LocalConnectionOptions,
    ParamCode,
    ParamKey,
    Parameters,
    RequestedEvent,
    SessionDescription,
    SignalRequest,
    Verb,
    parse_requested_events,
    parse_signal_requests,
    trusted_command,
)

__all__ = [
    "OFF_HOOK_EVENTS",
    "DIALLING_ON_OFF_HOOK",
    "HANG_UP_EVENTS",
    "DIALLING_EVENTS",
    "rqnt",
    "crcx",
    "mdcx",
    "dlcx",
    "auep",
    "caller_id",
]

P = ParamCode
OFF_HOOK_EVENTS = parse_requested_events("L/hd(N)")
# The idle request with the dial-tone request embedded (RFC 3435 §2.3.3,
# §3.2.2.16): on off-hook the gateway plays dial tone and collects digits
# by itself, and its first NTFY carries L/hd with the digits, which saves
# the NTFY and the RQNT of the plain exchange.
DIALLING_ON_OFF_HOOK = parse_requested_events("L/hd(A,E(R(L/hu(N),D/[0-9#*T](D)),S(L/dl)))")
HANG_UP_EVENTS = parse_requested_events("L/hu(N)")
DIALLING_EVENTS = parse_requested_events("L/hu(N), D/[0-9#*T](D)")
# Lines with services (call waiting, three-way, transfer) are also asked
# for the hook-flash while in a call, and while dialling after one.
HANG_UP_FLASH_EVENTS = parse_requested_events("L/hu(N), L/hf(N)")
DIALLING_FLASH_EVENTS = parse_requested_events("L/hu(N), L/hf(N), D/[0-9#*T](D)")
# The idle request with stutter dial tone embedded (a message waits).
DIALLING_ON_OFF_HOOK_STUTTER = parse_requested_events("L/hd(A,E(R(L/hu(N),D/[0-9#*T](D)),S(L/sl)))")
# A new call shed by the overload guard: the caller hears the overload
# tone, and its hang-up re-arms the line for the next off-hook without an
# NTFY (RFC 3435 §2.3.3: E alone activates the embedded request, and does
# not notify).  An embedded request may not embed another, so the line is
# re-armed with the plain idle request even where the switch embeds dial
# tone: the next call from it takes the off-hook NTFY and dial-tone RQNT.
SHED_EVENTS = parse_requested_events("L/hu(E(R(L/hd(N))))")
NO_SIGNALS: tuple[SignalRequest, ...] = ()
DIAL_TONE = parse_signal_requests("L/dl")
STUTTER_DIAL_TONE = parse_signal_requests("L/sl")  # a message waits; recall dial tone after a flash
CALL_WAITING_TONE = parse_signal_requests("L/wt")
CONFIRMATION_TONE = parse_signal_requests("G/cf")  # RFC 3660 puts it in the generic package
MWI_ON = parse_signal_requests("L/vmwi(+)")
MWI_OFF = parse_signal_requests("L/vmwi(-)")
RINGBACK = parse_signal_requests("G/rt")
BUSY_TONE = parse_signal_requests("L/bz")
REORDER_TONE = parse_signal_requests("L/ro")
RINGING = parse_signal_requests("L/rg")
AUDIT_INFO = (P.CONNECTION_ID, P.NOTIFIED_ENTITY, P.EVENT_STATES)
KEEPALIVE_INFO: tuple[ParamCode, ...] = ()

_Items = dict[ParamKey, Any]  # a command's parameters before they are frozen
_Events = tuple[RequestedEvent, ...]
_Signals = tuple[SignalRequest, ...]


def rqnt(
    txid: int,
    endpoint: EndpointName,
    request_id: str,
    events: _Events,
    signals: _Signals = NO_SIGNALS,
    digit_map: Optional[DigitMap] = None,
) -> Command:
    return trusted_command(Verb.RQNT, txid, endpoint, Parameters(_request({}, request_id, events, signals, digit_map)))


def _request(
    items: _Items,
    request_id: Optional[str],
    events: _Events,
    signals: _Signals,
    digit_map: Optional[DigitMap] = None,
) -> _Items:
    """Add a notification request (X:, R:, S:, D:) to a command's parameters, if there is one."""
    if request_id is not None:
        items[P.REQUEST_ID] = request_id
        items[P.REQUESTED_EVENTS] = events
        items[P.SIGNAL_REQUESTS] = signals
        if digit_map is not None:
            items[P.DIGIT_MAP] = digit_map
    return items


def crcx(
    txid: int,
    endpoint: EndpointName,
    call_id: str,
    mode: ConnectionMode,
    options: LocalConnectionOptions,
    sdp: Optional[SessionDescription] = None,
    request_id: Optional[str] = None,
    events: _Events = (),
    signals: _Signals = (),
) -> Command:
    items: _Items = {P.CALL_ID: call_id, P.LOCAL_CONNECTION_OPTIONS: options, P.CONNECTION_MODE: mode}
    return trusted_command(Verb.CRCX, txid, endpoint, Parameters(_request(items, request_id, events, signals)), sdp)


def mdcx(
    txid: int,
    endpoint: EndpointName,
    call_id: str,
    connection_id: str,
    mode: ConnectionMode,
    sdp: Optional[SessionDescription] = None,
    request_id: Optional[str] = None,
    events: _Events = (),
    signals: _Signals = (),
) -> Command:
    items: _Items = {P.CALL_ID: call_id, P.CONNECTION_ID: (connection_id,), P.CONNECTION_MODE: mode}
    return trusted_command(Verb.MDCX, txid, endpoint, Parameters(_request(items, request_id, events, signals)), sdp)


def dlcx(
    txid: int,
    endpoint: EndpointName,
    call_id: Optional[str] = None,
    connection_id: Optional[str] = None,
    request_id: Optional[str] = None,
    events: _Events = (),
    signals: _Signals = (),
    digit_map: Optional[DigitMap] = None,
) -> Command:
    """
    Delete one connection (C + I), a call's connections (C), or all of the
    endpoint's (neither).  An encapsulated RQNT re-arms the line in the
    same transaction (only allowed with a single connection, §2.3.9).
    """
    items: _Items = {}
    if call_id is not None:
        items[P.CALL_ID] = call_id
    if connection_id is not None:
        items[P.CONNECTION_ID] = (connection_id,)
    return trusted_command(Verb.DLCX, txid, endpoint, Parameters(_request(items, request_id, events, signals, digit_map)))


def auep(txid: int, endpoint: EndpointName, info: tuple[ParamCode, ...] = AUDIT_INFO) -> Command:
    items: _Items = {P.REQUESTED_INFO: info} if info else {}
    return trusted_command(Verb.AUEP, txid, endpoint, Parameters(items))


_CALLER_ID = EventName("L/ci")


@functools.lru_cache(maxsize=4)
def _stamp(minute: int) -> str:
    """MM/DD/HH/MM of a minute since the epoch (UTC): every callee rung within a minute shares it."""
    t = time.gmtime(minute * 60)
    return f"{t.tm_mon:02d}/{t.tm_mday:02d}/{t.tm_hour:02d}/{t.tm_min:02d}"


def caller_id(now: float, number: Optional[str], name: Optional[str], private: bool = False) -> SignalRequest:
    """
    C{L/ci(time, number, name)} (RFC 3660 §2.4): time as MM/DD/HH/MM from
    the reactor clock (UTC); a missing number or name is C{O} (unavailable),
    a withheld one C{P} (private).
    """
    stamp = _stamp(int(now // 60))
    if private:
        return SignalRequest(_CALLER_ID, (stamp, "P", "P"))
    return SignalRequest(_CALLER_ID, (stamp, f'"{number}"' if number else "O", f'"{name}"' if name else "O"))

