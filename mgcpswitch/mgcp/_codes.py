# -*- test-case-name: tests.test_codec -*-
"""
The names of MGCP as enums: verbs, return codes and parameter codes
(RFC 3435 §2.3, §2.4, §3.2.2).

The bottom of the core: the parameter table (L{_params}) and the message
values (L{_message}) both build on these, and this module imports nothing
of the core.
"""

from __future__ import annotations

import enum
import sys
from typing import Union

__all__ = ["Verb", "ReturnCode", "code_class", "ParamCode", "ParamKey", "VERBS", "CODES"]

if sys.version_info < (3, 12) and "__getattr__" in vars(enum.EnumType):
    # Python 3.11's EnumType.__getattr__ (a fallback that finds nothing:
    # every member is in its class's __dict__) makes every C{Enum.MEMBER}
    # go through the interpreter's slowest attribute path, ~900 machine
    # instructions instead of ~40, and the call agent reads ~230 a call
    # (LegState.CREATING, ReturnCode.OVERLOADED...).  Python 3.12 removed
    # the method for that reason (python/cpython#106762); removing it
    # here gives 3.11 the same lookup.  Only misses differ: an
    # AttributeError that names the class.
    delattr(enum.EnumType, "__getattr__")


class Verb(enum.Enum):
    """The commands of MGCP 1.0 and the base package (RFC 3435 §2.3, App. B.3)."""

    # Members are singletons compared by identity, so the C identity hash is
    # right; Enum's own __hash__ is Python code run on every dict lookup.
    __hash__ = object.__hash__

    EPCF = "EPCF"
    CRCX = "CRCX"
    MDCX = "MDCX"
    DLCX = "DLCX"
    RQNT = "RQNT"
    NTFY = "NTFY"
    AUEP = "AUEP"
    AUCX = "AUCX"
    RSIP = "RSIP"
    MESG = "MESG"

    def __str__(self) -> str:
        return self._value_


class ReturnCode(enum.IntEnum):
    """Return codes of RFC 3435 §2.4 (meanings as RFC 3661 refines them)."""

    ACK = 0
    TRANSACTION_EXECUTING = 100
    TRANSACTION_QUEUED = 101
    OK = 200
    CONNECTION_DELETED = 250
    TRANSIENT_ERROR = 400
    ALREADY_OFF_HOOK = 401
    ALREADY_ON_HOOK = 402
    INSUFFICIENT_RESOURCES_NOW = 403
    INSUFFICIENT_BANDWIDTH_NOW = 404
    ENDPOINT_RESTARTING = 405
    TRANSACTION_TIMEOUT = 406
    TRANSACTION_ABORTED = 407
    OVERLOADED = 409
    NO_ENDPOINT_AVAILABLE = 410
    UNKNOWN_ENDPOINT = 500
    ENDPOINT_NOT_READY = 501
    INSUFFICIENT_RESOURCES = 502
    WILDCARD_TOO_COMPLICATED = 503
    UNKNOWN_COMMAND = 504
    UNSUPPORTED_REMOTE_DESCRIPTOR = 505
    CANNOT_SATISFY_OPTIONS_AND_DESCRIPTOR = 506
    UNSUPPORTED_FUNCTIONALITY = 507
    UNKNOWN_QUARANTINE_HANDLING = 508
    REMOTE_DESCRIPTOR_ERROR = 509
    PROTOCOL_ERROR = 510
    UNRECOGNIZED_EXTENSION = 511
    CANNOT_DETECT_EVENT = 512
    CANNOT_GENERATE_SIGNAL = 513
    CANNOT_SEND_ANNOUNCEMENT = 514
    INCORRECT_CONNECTION_ID = 515
    UNKNOWN_CALL_ID = 516
    UNSUPPORTED_MODE = 517
    UNSUPPORTED_PACKAGE = 518
    NO_DIGIT_MAP = 519
    ENDPOINT_RESTARTING_LEGACY = 520
    ENDPOINT_REDIRECTED = 521
    NO_SUCH_EVENT_OR_SIGNAL = 522
    UNKNOWN_ACTION = 523
    INCONSISTENT_OPTIONS = 524
    UNKNOWN_OPTION_EXTENSION = 525
    INSUFFICIENT_BANDWIDTH = 526
    MISSING_REMOTE_DESCRIPTOR = 527
    INCOMPATIBLE_VERSION = 528
    HARDWARE_FAILURE = 529
    CAS_SIGNALING_ERROR = 530
    TRUNK_GROUP_FAILURE = 531
    UNSUPPORTED_OPTION_VALUE = 532
    RESPONSE_TOO_LARGE = 533
    CODEC_NEGOTIATION_FAILURE = 534
    PACKETIZATION_NOT_SUPPORTED = 535
    UNKNOWN_RESTART_METHOD = 536
    UNKNOWN_DIGIT_MAP_EXTENSION = 537
    EVENT_PARAMETER_ERROR = 538
    INVALID_PARAMETER = 539
    CONNECTION_LIMIT_EXCEEDED = 540
    INVALID_OPTION = 541

    @property
    def is_provisional(self) -> bool:
        return 100 <= self < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self < 300

    @property
    def default_comment(self) -> str:
        return COMMENTS.get(self, "")


def code_class(code: int) -> int:
    """
    The class an unknown code is handled as (RFC 3435 §2.4, RFC 3661 §3.2):
    0xx→000, 1xx→100, 2xx→200, 3xx→521, 4xx→400, 5xx–9xx→510.
    """
    hundreds = code // 100
    return {0: 0, 1: 100, 2: 200, 3: 521, 4: 400}.get(hundreds, 510)


COMMENTS: dict[int, str] = {
    ReturnCode.ACK: "",
    ReturnCode.TRANSACTION_EXECUTING: "Transaction executing",
    ReturnCode.TRANSACTION_QUEUED: "Transaction queued",
    ReturnCode.OK: "OK",
    ReturnCode.CONNECTION_DELETED: "Connection deleted",
}


class ParamCode(enum.Enum):
    """
    Parameter names of RFC 3435 §3.2.2 (and the base package's B/PR, B/NS).
    C{RC} and C{LC} name the connection descriptors inside C{F:} only.
    """

    __hash__ = object.__hash__

    BEARER_INFORMATION = "B"
    CALL_ID = "C"
    CAPABILITIES = "A"
    CONNECTION_ID = "I"
    CONNECTION_MODE = "M"
    CONNECTION_PARAMETERS = "P"
    DETECT_EVENTS = "T"
    DIGIT_MAP = "D"
    EVENT_STATES = "ES"
    LOCAL_CONNECTION_OPTIONS = "L"
    MAX_DATAGRAM = "MD"
    NOTIFIED_ENTITY = "N"
    OBSERVED_EVENTS = "O"
    PACKAGE_LIST = "PL"
    QUARANTINE_HANDLING = "Q"
    REASON_CODE = "E"
    REQUESTED_EVENTS = "R"
    REQUESTED_INFO = "F"
    REQUEST_ID = "X"
    RESPONSE_ACK = "K"
    RESTART_DELAY = "RD"
    RESTART_METHOD = "RM"
    SECOND_CONNECTION_ID = "I2"
    SECOND_ENDPOINT_ID = "Z2"
    SIGNAL_REQUESTS = "S"
    SPECIFIC_ENDPOINT_ID = "Z"
    PERSISTENT_EVENTS = "B/PR"
    NOTIFICATION_STATE = "B/NS"
    REMOTE_DESCRIPTOR = "RC"
    LOCAL_DESCRIPTOR = "LC"

    def __str__(self) -> str:
        return self._value_


ParamKey = Union[ParamCode, str]


#: verb text -> verb, for the decoder and L{Command.create}.
VERBS = {v.value: v for v in Verb}
#: code -> its L{ReturnCode} member (codes the RFC does not name map to nothing).
CODES: dict[int, int] = {c.value: c for c in ReturnCode}
