# -*- test-case-name: tests.test_agent_dialplan -*-
"""
The built-in static dial plan: directory numbers from the gateway
sections (C{numbers = 1001-1008}) and patterns from C{[dialplan]}.

Exact numbers are a dictionary lookup; patterns are digit maps tried in
file order (C{9xxx = aaln/1@rgw2}), the first complete match wins.  Each
line gets the gateway's digit map, or the switch's.
"""

from __future__ import annotations

from typing import Mapping, Optional

from zope.interface import implementer

from ..config import Settings
from ..interfaces import IDialPlan
from ..mgcp import DigitMap, MatchStatus
from .model import ReleaseCause, RouteDecision, RouteRequest

__all__ = ["StaticDialPlan"]


@implementer(IDialPlan)
class StaticDialPlan:
    name = "static"

    def __init__(
        self,
        numbers: Mapping[str, str],
        patterns: Mapping[str, str] = {},
        digit_map: str = "(xxxx|*xx|0T|00T)",
        digit_maps: Mapping[str, str] = {},
    ) -> None:
        """
        @param numbers: directory number -> endpoint name.
        @param patterns: digit-map pattern -> endpoint name, tried in order.
        @param digit_map: the default digit map pushed to every line.
        @param digit_maps: gateway domain -> its own digit map.
        """
        self._numbers = {number: endpoint for number, endpoint in numbers.items()}
        self._patterns = [(DigitMap.parse(p), target) for p, target in patterns.items()]
        self._default_map = DigitMap.parse(digit_map)
        self._maps = {domain.lower(): DigitMap.parse(m) for domain, m in digit_maps.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> StaticDialPlan:
        numbers: dict[str, str] = {}
        digit_maps: dict[str, str] = {}
        for gateway in settings.gateways:
            for local, number in zip(gateway.endpoints, gateway.numbers):
                numbers[number] = gateway.endpoint_name(local)
            if gateway.digit_map:
                digit_maps[gateway.name] = gateway.digit_map
        patterns = {k: v for k, v in settings.dialplan.items() if k != "digit_map"}
        return cls(
            numbers,
            patterns,
            settings.dialplan.get("digit_map", settings.switch.digit_map),
            digit_maps,
        )

    def digit_map(self, endpoint: str) -> DigitMap:
        return self._maps.get(endpoint.rpartition("@")[2].lower(), self._default_map)

    def route(self, request: RouteRequest) -> RouteDecision:
        digits = request.digits
        target: Optional[str] = self._numbers.get(digits)
        if target is None:
            # A pattern ended by the timer (9x.T) matches the number without its T too.
            timed = digits if digits.endswith("T") else digits + "T"
            for pattern, endpoint in self._patterns:
                if pattern.match(digits).status is MatchStatus.COMPLETE \
                        or pattern.match(timed).status is MatchStatus.COMPLETE:
                    target = endpoint
                    break
        if target is None:
            return RouteDecision.reject(ReleaseCause.UNKNOWN_NUMBER, f"no route for {request.digits}")
        return RouteDecision.to(target)
