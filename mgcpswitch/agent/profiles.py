# -*- test-case-name: tests.test_agent_registry -*-
"""
Gateway profiles: per-gateway quirks and capabilities (L{IGatewayProfile}).

C{default} is an RFC 3435 residential gateway; C{osmo-mgw} is Osmocom's
media gateway, which answers C{K:} with 539 and never sends NTFY or RSIP.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.plugin import IPlugin
from zope.interface import implementer

from ..interfaces import IGatewayProfile

__all__ = ["GatewayProfile", "DEFAULT_PROFILE", "OSMO_MGW_PROFILE"]


@implementer(IPlugin, IGatewayProfile)
@dataclass(frozen=True)
class GatewayProfile:
    name: str
    response_acks: bool = True
    supports_notifications: bool = True
    packages: tuple[str, ...] = ("L", "D", "G")
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    packetization: int = 20


DEFAULT_PROFILE = GatewayProfile("default")
OSMO_MGW_PROFILE = GatewayProfile(
    "osmo-mgw", response_acks=False, supports_notifications=False, packages=(), codecs=("PCMU",)
)
