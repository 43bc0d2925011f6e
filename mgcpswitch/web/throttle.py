# -*- test-case-name: tests.test_web_throttle -*-
"""
How many password guesses the admin checks: token buckets per client
source and per user name, on the injected clock.

Checking an HTTP Basic password costs a PBKDF2 derivation (about a quarter
of a second of CPU at the default iterations), so an attacker's guesses
cost the switch far more than they cost the attacker.  Every password
check that would run PBKDF2 takes one token from the bucket of its source
(an IPv4 address, or the /64 of an IPv6 one: a host owns a whole /64) and
one from the bucket of the user name it tries; a correct password gives
both back, so only wrong guesses count.  When either bucket is empty the
guess is refused at once with the seconds until the next token (the
admin's 429 and C{Retry-After}), before any PBKDF2.  Credentials already
verified are remembered by the password checker and are not counted, so an
operator whose name is under attack keeps a session that is already open.

The defaults (module constants, constructor arguments): a source may make
L{SOURCE_BURST} wrong guesses at once, then one every
1/L{SOURCE_RATE} seconds; a user name L{USER_BURST}, then one every
1/L{USER_RATE} seconds.  A bucket is forgotten once it has refilled (it
is then the same as a new one), and at most L{MAX_TRACKED} buckets of
each kind are kept (the least recently used go first).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorTime

__all__ = [
    "SOURCE_BURST",
    "SOURCE_RATE",
    "USER_BURST",
    "USER_RATE",
    "MAX_TRACKED",
    "Buckets",
    "GuessThrottle",
    "source_key",
]

SOURCE_BURST = 10
SOURCE_RATE = 0.2  # guesses per second once the burst is spent: one every 5 s
USER_BURST = 20
USER_RATE = 0.2
MAX_TRACKED = 4096


def source_key(address: Any) -> str:
    """
    Who a guess comes from: the IPv4 address (also when v4-mapped), the
    /64 network of an IPv6 address, or the address as text (UNIX sockets).
    """
    if not isinstance(address, (IPv4Address, IPv6Address)):
        return str(address)
    try:
        ip = ipaddress.ip_address(address.host.partition("%")[0])
    except ValueError:
        return address.host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Bucket:
    tokens: float
    at: float  # when C{tokens} was computed


class Buckets:
    """Token buckets by key: C{burst} tokens, refilled at C{rate} per second."""

    def __init__(self, clock: IReactorTime, burst: int, rate: float, max_tracked: int = MAX_TRACKED) -> None:
        if burst < 1 or rate <= 0 or max_tracked < 1:
            raise ValueError("burst and max_tracked must be at least 1 and rate positive")
        self.clock = clock
        self.burst = burst
        self.rate = rate
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self.burst)
        return min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)

    def wait(self, key: str) -> float:
        """Seconds until C{key} has a token (0: it has one now)."""
        level = self._level(key, self.clock.seconds())
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def take(self, key: str) -> None:
        """Spend one of C{key}'s tokens (call only when L{wait} is 0)."""
        now = self.clock.seconds()
        self._buckets[key] = _Bucket(self._level(key, now) - 1.0, now)
        self._buckets.move_to_end(key)
        self._forget(now)

    def give_back(self, key: str) -> None:
        """Return a token to C{key}."""
        now = self.clock.seconds()
        if key in self._buckets:
            self._buckets[key] = _Bucket(min(float(self.burst), self._level(key, now) + 1.0), now)
        self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop full buckets from the least recently used end, and any beyond the bound."""
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if len(self._buckets) <= self.max_tracked and self._level(key, now) < self.burst:
                break
            del self._buckets[key]


class GuessThrottle:
    """Password guesses allowed per source and per user name (see the module's docstring)."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        source_burst: int = SOURCE_BURST,
        source_rate: float = SOURCE_RATE,
        user_burst: int = USER_BURST,
        user_rate: float = USER_RATE,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.sources = Buckets(clock, source_burst, source_rate, max_tracked)
        self.users = Buckets(clock, user_burst, user_rate, max_tracked)

    def wait(self, source: str, user: str) -> int:
        """Whole seconds before a guess by C{source} for C{user} is checked (0: now)."""
        return math.ceil(max(self.sources.wait(source), self.users.wait(user)))

    def admit(self, source: str, user: str) -> int:
        """
        Take a token from both buckets and return 0 when a guess may be
        checked now; else take nothing and return the seconds to wait.
        """
        wait = self.wait(source, user)
        if wait == 0:
            self.sources.take(source)
            self.users.take(user)
        return wait

    def succeeded(self, source: str, user: str) -> None:
        """The guess was right: it does not count."""
        self.sources.give_back(source)
        self.users.give_back(user)
