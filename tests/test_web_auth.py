"""
The admin's credentials: the PBKDF2 users file (parsing, errors with line
numbers, hashing round trip), the checkers and the bearer factory.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted.cred.checkers import ICredentialsChecker
from twisted.web.iweb import ICredentialFactory

from mgcpswitch.errors import ConfigError
from mgcpswitch.web.auth import (
    SCHEME,
    BearerCredentialFactory,
    BearerToken,
    IBearerToken,
    PasswordFileChecker,
    PasswordFileError,
    PasswordHash,
    TokenChecker,
    hash_password,
    load_password_file,
    parse_password_lines,
)

SALT = b"0123456789abcdef"


class Hashing(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """A hash parses back and verifies its password only."""
        text = hash_password("correct horse", iterations=1000)
        self.assertTrue(text.startswith(SCHEME + "$1000$"))
        parsed = PasswordHash.parse(text)
        self.assertEqual(parsed.encode(), text)
        self.assertTrue(parsed.verify("correct horse".encode()))
        self.assertFalse(parsed.verify(b"correct horse "))

    def test_salted(self) -> None:
        """Two hashes of one password differ (fresh salt); a given salt is repeatable."""
        self.assertNotEqual(hash_password("pw", iterations=1000), hash_password("pw", iterations=1000))
        self.assertEqual(
            hash_password("pw", iterations=1000, salt=SALT), hash_password("pw", iterations=1000, salt=SALT)
        )

    def test_known_vector(self) -> None:
        """The hash is plain PBKDF2-HMAC-SHA256 (RFC 7914 §11 test vector)."""
        parsed = PasswordHash.parse(hash_password("passwd", iterations=1, salt=b"salt"))
        self.assertEqual(parsed.digest.hex()[:32], "55ac046e56e3089fec1691c22544b605")

    def test_unicode(self) -> None:
        """Passwords are UTF-8."""
        parsed = PasswordHash.parse(hash_password("pässwörd", iterations=1000))
        self.assertTrue(parsed.verify("pässwörd".encode("utf-8")))

    def test_bad_hashes(self) -> None:
        """Each malformed hash says what is wrong."""
        good = hash_password("x", iterations=1000, salt=SALT)
        _, iterations, salt, digest = good.split("$")
        cases = {
            "md5$1000$" + salt + "$" + digest: "expected pbkdf2_sha256",
            f"{SCHEME}$many${salt}${digest}": "not a number",
            f"{SCHEME}$0${salt}${digest}": "between 1 and",
            f"{SCHEME}$1000$!!!${digest}": "base64",
            f"{SCHEME}$1000${salt}$AAAA": "32 bytes",
            f"{SCHEME}$1000${salt}": "expected",
        }
        for text, message in cases.items():
            with self.assertRaises(ValueError) as caught:
                PasswordHash.parse(text)
            self.assertIn(message, str(caught.exception))


class PasswordFile(SynchronousTestCase):
    def test_parse(self) -> None:
        """Comments and blank lines are skipped; each user maps to its hash."""
        alice = hash_password("a", iterations=1000)
        users = parse_password_lines(["# users\n", "\n", f"alice:{alice}\n", "  \n"], "users")
        self.assertEqual(list(users), ["alice"])
        self.assertTrue(users["alice"].verify(b"a"))

    def test_errors_name_file_and_line(self) -> None:
        """A bad line fails with the file, the line number and what is wrong."""
        good = hash_password("a", iterations=1000)
        cases = [
            (["# ok", "alice"], 2, "expected user:"),
            ([f":{good}"], 1, "expected user:"),
            ([f"alice:{good}", "", f"alice:{good}"], 3, "appears twice"),
            (["", "", "", "bob:plaintext"], 4, "user 'bob': expected pbkdf2_sha256"),
        ]
        for lines, number, message in cases:
            with self.assertRaises(PasswordFileError) as caught:
                parse_password_lines(lines, "/etc/mgcpswitch/users")
            error = caught.exception
            self.assertEqual(error.line, number)
            self.assertIn(f"/etc/mgcpswitch/users line {number}: ", str(error))
            self.assertIn(message, str(error))
            self.assertIsInstance(error, ConfigError)
            self.assertEqual(error.path, ("web", "users_file"))

    def test_load(self) -> None:
        """The file is read from disk; a missing file is a clear error."""
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "users")
        self.addCleanup(os.rmdir, directory)
        with self.assertRaises(PasswordFileError) as caught:
            load_password_file(path)
        self.assertIn("cannot read it", str(caught.exception))
        with open(path, "w") as f:
            f.write("carol:" + hash_password("c", iterations=1000) + "\n")
        self.addCleanup(os.remove, path)
        self.assertEqual(list(load_password_file(path)), ["carol"])
        with open(path, "wb") as f:
            f.write(b"\xff\xfe")
        self.assertIn("not UTF-8", str(self.assertRaises(PasswordFileError, load_password_file, path)))


class Counting:
    """A runner that counts the hashes it derives (synchronously)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, f: Callable[..., Any], *args: Any) -> Deferred:
        self.calls += 1
        return succeed(f(*args))


class Checkers(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.run = Counting()
        users = {"alice": PasswordHash.parse(hash_password("wonderland", iterations=1000))}
        self.checker = PasswordFileChecker(users, self.clock, self.run)

    def test_interfaces(self) -> None:
        """The checkers and the bearer factory provide their cred interfaces."""
        verifyObject(ICredentialsChecker, self.checker)
        verifyObject(ICredentialsChecker, TokenChecker(["t"]))
        verifyObject(ICredentialFactory, BearerCredentialFactory("r"))
        verifyObject(IBearerToken, BearerToken(b"t"))

    def test_password(self) -> None:
        """The right password gives the user name; others are refused."""
        self.assertEqual(self.successResultOf(self.checker.requestAvatarId(UsernamePassword(b"alice", b"wonderland"))),
                         "alice")
        self.failureResultOf(self.checker.requestAvatarId(UsernamePassword(b"alice", b"x")), UnauthorizedLogin)
        self.failureResultOf(self.checker.requestAvatarId(UsernamePassword(b"\xff", b"x")), UnauthorizedLogin)

    def test_unknown_user_costs_a_hash(self) -> None:
        """An unknown user is refused after deriving a decoy hash (no timing tell)."""
        self.failureResultOf(self.checker.requestAvatarId(UsernamePassword(b"mallory", b"x")), UnauthorizedLogin)
        self.assertEqual(self.run.calls, 1)

    def test_success_remembered(self) -> None:
        """A success is remembered for five minutes; failures never are."""
        good = UsernamePassword(b"alice", b"wonderland")
        for _ in range(3):
            self.successResultOf(self.checker.requestAvatarId(good))
        self.assertEqual(self.run.calls, 1)
        for _ in range(2):
            self.failureResultOf(self.checker.requestAvatarId(UsernamePassword(b"alice", b"no")))
        self.assertEqual(self.run.calls, 3)
        self.clock.advance(301)
        self.successResultOf(self.checker.requestAvatarId(good))
        self.assertEqual(self.run.calls, 4)

    def test_remembered_bounded(self) -> None:
        """The memory of successes holds at most remember_max entries."""
        users = {f"u{i}": PasswordHash.parse(hash_password("p", iterations=1)) for i in range(5)}
        checker = PasswordFileChecker(users, self.clock, self.run, remember_max=3)
        for i in range(5):
            self.successResultOf(checker.requestAvatarId(UsernamePassword(f"u{i}".encode(), b"p")))
        self.assertEqual(len(checker._remembered), 3)

    def test_tokens(self) -> None:
        """A configured token names its position; another is refused."""
        checker = TokenChecker(["first", "second"])
        self.assertEqual(self.successResultOf(checker.requestAvatarId(BearerToken(b"second"))), "token#2")
        self.failureResultOf(checker.requestAvatarId(BearerToken(b"third")), UnauthorizedLogin)
        self.failureResultOf(checker.requestAvatarId(BearerToken(b"secon")), UnauthorizedLogin)

    def test_bearer_factory(self) -> None:
        """The factory reads one token and challenges with the realm."""
        factory = BearerCredentialFactory("mgcpswitch")
        self.assertEqual(factory.decode(b"abc", None), BearerToken(b"abc"))
        self.assertRaises(LoginFailed, factory.decode, b"", None)
        self.assertRaises(LoginFailed, factory.decode, b"a b", None)
        self.assertEqual(factory.getChallenge(None), {"realm": "mgcpswitch"})
