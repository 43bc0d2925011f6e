"""
The password-guess throttle (issue 16: 20 clients made 231 wrong guesses in
21 s and kept both cores busy with PBKDF2): token buckets per source and
per user name on a L{Clock}, the checker refusing past the allowance before
deriving any hash, and the admin answering 429 with C{Retry-After} and a
JSON reason.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.web.auth import BasicCredentials, LoginThrottled, PasswordFileChecker, PasswordHash, hash_password
from mgcpswitch.web.throttle import SOURCE_BURST, SOURCE_RATE, USER_BURST, Buckets, GuessThrottle, source_key

from .test_web_auth import Counting
from .support.web import AuthSetup, WebCase, basic


class BucketTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.buckets = Buckets(self.clock, burst=3, rate=0.5, max_tracked=4)

    def test_burst_then_rate(self) -> None:
        """Three tokens at once, then one every 2 s of the clock."""
        for _ in range(3):
            self.assertEqual(self.buckets.wait("a"), 0)
            self.buckets.take("a")
        self.assertEqual(self.buckets.wait("a"), 2.0)
        self.clock.advance(1.5)
        self.assertAlmostEqual(self.buckets.wait("a"), 0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.buckets.wait("a"), 0)
        self.assertEqual(self.buckets.wait("b"), 0)  # keys are independent

    def test_give_back(self) -> None:
        """A token given back is available again, never beyond the burst."""
        for _ in range(3):
            self.buckets.take("a")
        self.buckets.give_back("a")
        self.assertEqual(self.buckets.wait("a"), 0)
        self.buckets.give_back("a")
        self.buckets.give_back("a")
        self.buckets.give_back("a")
        self.assertEqual(len(self.buckets), 0)  # full again: forgotten

    def test_full_buckets_are_forgotten(self) -> None:
        """A bucket that has refilled is removed at the next use of the table (the clock drives the removal)."""
        self.buckets.take("a")
        self.assertEqual(len(self.buckets), 1)
        self.clock.advance(2)
        self.buckets.take("b")
        self.assertEqual(len(self.buckets), 1)

    def test_bounded(self) -> None:
        """At most max_tracked buckets; the least recently used goes first."""
        for key in "abcdef":
            self.buckets.take(key)
        self.assertEqual(len(self.buckets), 4)
        self.assertEqual(self.buckets.wait("a"), 0)  # forgotten: a fresh bucket
        self.buckets.take("c")
        self.buckets.take("c")
        self.assertGreater(self.buckets.wait("c"), 0)

    def test_bad_values(self) -> None:
        """A burst under 1 or a rate of 0 is refused."""
        self.assertRaises(ValueError, Buckets, self.clock, 0, 1.0)
        self.assertRaises(ValueError, Buckets, self.clock, 1, 0.0)


class SourceKeys(SynchronousTestCase):
    def test_keys(self) -> None:
        """IPv4 as is (also v4-mapped), IPv6 by /64, UNIX sockets by their text."""
        self.assertEqual(source_key(IPv4Address("TCP", "192.0.2.7", 1)), "192.0.2.7")
        self.assertEqual(source_key(IPv6Address("TCP", "::ffff:192.0.2.7", 1)), "192.0.2.7")
        self.assertEqual(source_key(IPv6Address("TCP", "2001:db8:1:2:aaaa::1", 1)), "2001:db8:1:2::/64")
        self.assertEqual(source_key(IPv6Address("TCP", "2001:db8:1:2:bbbb::9", 1)), "2001:db8:1:2::/64")
        self.assertEqual(source_key(UNIXAddress(None)), str(UNIXAddress(None)))


class Checker(SynchronousTestCase):
    """The password checker spends no PBKDF2 on a throttled guess."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.run = Counting()
        users = {"alice": PasswordHash.parse(hash_password("wonderland", iterations=1000))}
        self.checker = PasswordFileChecker(users, self.clock, self.run)

    def guess(self, password: bytes, source: str = "192.0.2.1", user: bytes = b"alice") -> Any:
        """The checker's answer, at once: the user name or a Failure."""
        outcome: list[Any] = []
        self.checker.requestAvatarId(BasicCredentials(user, password, source)).addBoth(outcome.append)
        return outcome[0]

    def test_source_throttled_before_pbkdf2(self) -> None:
        """After SOURCE_BURST wrong guesses a source waits 1/SOURCE_RATE s; the refusals derive nothing."""
        for _ in range(SOURCE_BURST):
            self.guess(b"nope").trap(UnauthorizedLogin)
        self.assertEqual(self.run.calls, SOURCE_BURST)
        for _ in range(100):
            failure = self.guess(b"nope")
            failure.trap(LoginThrottled)
        self.assertEqual(failure.value.retry_after, round(1 / SOURCE_RATE))
        self.assertEqual(self.run.calls, SOURCE_BURST)
        # Even the right password waits: the source is out of guesses.
        self.guess(b"wonderland").trap(LoginThrottled)
        self.clock.advance(1 / SOURCE_RATE)
        self.assertEqual(self.guess(b"wonderland"), "alice")
        self.assertEqual(self.run.calls, SOURCE_BURST + 1)

    def test_user_throttled_across_sources(self) -> None:
        """Guesses at one user from many sources stop after USER_BURST; other users are not affected."""
        for n in range(USER_BURST):
            self.guess(b"nope", source=f"192.0.2.{n}").trap(UnauthorizedLogin)
        self.guess(b"nope", source="198.51.100.1").trap(LoginThrottled)
        self.guess(b"nope", source="198.51.100.1", user=b"bob").trap(UnauthorizedLogin)

    def test_right_password_does_not_count(self) -> None:
        """Successes give their token back: an operator logging in often is never throttled."""
        for _ in range(3 * SOURCE_BURST):
            self.checker._remembered.clear()  # force a full check every time
            self.assertEqual(self.guess(b"wonderland"), "alice")
        self.assertEqual(self.run.calls, 3 * SOURCE_BURST)

    def test_remembered_while_throttled(self) -> None:
        """A session already verified goes on while its source or user is throttled."""
        self.assertEqual(self.guess(b"wonderland"), "alice")
        for n in range(USER_BURST + SOURCE_BURST):
            self.guess(b"nope", source=f"203.0.113.{n % 250}")
        self.guess(b"nope").trap(LoginThrottled)
        self.assertEqual(self.guess(b"wonderland"), "alice")

    def test_plain_credentials(self) -> None:
        """Credentials without a source (Twisted's own) are throttled under one shared source."""
        for _ in range(SOURCE_BURST):
            self.failureResultOf(self.checker.requestAvatarId(UsernamePassword(b"alice", b"x")), UnauthorizedLogin)
        self.failureResultOf(self.checker.requestAvatarId(UsernamePassword(b"alice", b"x")), LoginThrottled)

    def test_throttle_is_shared(self) -> None:
        """A throttle passed in is the one used (the site shares one with its early refusals)."""
        throttle = GuessThrottle(self.clock, source_burst=1, source_rate=0.1)
        checker = PasswordFileChecker({}, self.clock, self.run, throttle=throttle)
        self.failureResultOf(checker.requestAvatarId(BasicCredentials(b"x", b"y", "s")), UnauthorizedLogin)
        failure = self.failureResultOf(checker.requestAvatarId(BasicCredentials(b"x", b"y", "s")), LoginThrottled)
        self.assertEqual(failure.value.retry_after, 10)


class Answers(AuthSetup, WebCase):
    """Through the admin: 429, Retry-After and a JSON reason."""

    def test_429(self) -> None:
        """Past the allowance a wrong password is answered 429 with Retry-After; after waiting, 401 again."""
        for _ in range(SOURCE_BURST):
            self.assertRefused(self.request("GET", "/api/calls", headers=basic("alice", "guess")), "bad credentials")
        answer = self.request("GET", "/api/calls", headers=basic("alice", "guess"))
        body = self.assertError(answer, 429, "too-many-requests", "too many failed logins; retry in 5 s")
        self.assertEqual(answer.header("retry-after"), "5")
        self.assertEqual(set(body), {"error", "reason"})
        # The right token still works (it is no password guess).
        self.assertEqual(self.request("GET", "/api/calls", headers={"authorization": "Bearer s3cret-token"}).code, 200)
        self.clock.advance(5)
        self.assertRefused(self.request("GET", "/api/calls", headers=basic("alice", "guess")), "bad credentials")
