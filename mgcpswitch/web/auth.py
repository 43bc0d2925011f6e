# -*- test-case-name: tests.test_web_auth,tests.test_web_api -*-
"""
Who may use the admin: C{twisted.cred} checkers for HTTP Basic (a file of
PBKDF2-hashed passwords) and bearer tokens, and the resource that asks for
them.

The users file has one C{user:pbkdf2_sha256$ITERATIONS$SALT$HASH} line per
user (salt and hash in standard base64); blank lines and lines starting
with C{#} are ignored.  C{mgcpctl hash-password USER} prints such a line.

Why not L{twisted.web.guard.HTTPAuthSessionWrapper}: it answers a refusal
with a plain-text C{Unauthorized} page and tries an anonymous login when no
header is sent, where every answer of this admin is JSON with a reason.
L{AuthenticatedResource} is the same idea in a few lines (pick the
credential factory by scheme, C{decode}, C{portal.login}, render the
avatar), and the cred parts (L{Portal}, the checkers, Twisted's
L{BasicCredentialFactory}) are used as they are.

Deriving a PBKDF2 hash is deliberately slow (about a quarter of a second
at the default iterations), so it runs off the reactor thread when the
reactor has threads, and a successful check is remembered for a few
minutes (under an HMAC with a per-process key) so that a browser sending
Basic credentials with every request does not pay it each time.  Wrong
guesses are throttled per source and per user name
(L{mgcpswitch.web.throttle}): past the allowance a guess is answered 429
with C{Retry-After} before any PBKDF2 is derived.

L{AuthenticatedResource.precheck} is what can be refused from the headers
alone (no credentials, an unknown scheme, a wrong token, a throttled
guess): the admin's request refuses a body with it before reading the body
(L{mgcpswitch.web.site.AdminRequest}).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.guard import BasicCredentialFactory
from twisted.web.iweb import ICredentialFactory
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.util import DeferredResource
from zope.interface import Attribute, implementer

from ..errors import ConfigError
from .api import ApiError, error_body, write_json
from .settings import WebSettings
from .throttle import GuessThrottle, source_key

__all__ = [
    "SCHEME",
    "DEFAULT_ITERATIONS",
    "PasswordHash",
    "PasswordFileError",
    "hash_password",
    "load_password_file",
    "PasswordFileChecker",
    "ISourcedCredentials",
    "BasicCredentials",
    "BasicFromSourceFactory",
    "LoginThrottled",
    "IBearerToken",
    "BearerToken",
    "BearerCredentialFactory",
    "TokenChecker",
    "AdminRealm",
    "AuthenticatedResource",
    "protect",
]

SCHEME = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
MAX_ITERATIONS = 10_000_000
SALT_BYTES = 16

Runner = Callable[..., Deferred[Any]]


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A parsed C{pbkdf2_sha256$ITERATIONS$SALT$HASH}."""

    iterations: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """@raise ValueError: with what is wrong, for the file's error message."""
        parts = text.split("$")
        if len(parts) != 4 or parts[0] != SCHEME:
            raise ValueError(f"expected {SCHEME}$ITERATIONS$SALT$HASH")
        try:
            iterations = int(parts[1])
        except ValueError:
            raise ValueError(f"iterations {parts[1]!r} is not a number") from None
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"iterations must be between 1 and {MAX_ITERATIONS}")
        try:
            salt = base64.b64decode(parts[2], validate=True)
            digest = base64.b64decode(parts[3], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("salt and hash must be base64") from None
        if not salt or len(digest) != hashlib.sha256().digest_size:
            raise ValueError("the salt is empty or the hash is not 32 bytes")
        return cls(iterations, salt, digest)

    def encode(self) -> str:
        return "$".join(
            (SCHEME, str(self.iterations), base64.b64encode(self.salt).decode(), base64.b64encode(self.digest).decode())
        )

    def verify(self, password: bytes) -> bool:
        """Whether C{password} (UTF-8) hashes to this, in constant time."""
        derived = hashlib.pbkdf2_hmac("sha256", password, self.salt, self.iterations)
        return hmac.compare_digest(derived, self.digest)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """The C{pbkdf2_sha256$...} text for C{password}, with a fresh random salt."""
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return PasswordHash(iterations, salt, digest).encode()


class PasswordFileError(ConfigError):
    """The users file cannot be read or has a bad line (named with its number)."""

    def __init__(self, filename: str, message: str, line: int | None = None) -> None:
        where = filename if line is None else f"{filename} line {line}"
        super().__init__(("web", "users_file"), f"{where}: {message}")
        self.filename = filename
        self.line = line


def parse_password_lines(lines: Iterable[str], filename: str) -> dict[str, PasswordHash]:
    users: dict[str, PasswordHash] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, encoded = line.partition(":")
        if not colon or not user:
            raise PasswordFileError(filename, "expected user:pbkdf2_sha256$ITERATIONS$SALT$HASH", number)
        if user in users:
            raise PasswordFileError(filename, f"user {user!r} appears twice", number)
        try:
            users[user] = PasswordHash.parse(encoded)
        except ValueError as e:
            raise PasswordFileError(filename, f"user {user!r}: {e}", number) from None
    return users


def load_password_file(filename: str) -> dict[str, PasswordHash]:
    """Read the users file; L{PasswordFileError} names the file and line."""
    try:
        with open(filename, encoding="utf-8") as f:
            return parse_password_lines(f, filename)
    except OSError as e:
        raise PasswordFileError(filename, f"cannot read it: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise PasswordFileError(filename, "is not UTF-8 text") from None


def _synchronous(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    try:
        return succeed(f(*args))
    except Exception:
        return fail()


def thread_runner(reactor: Any) -> Runner:
    """Run a function in the reactor's thread pool (or here, without threads)."""
    if not IReactorThreads.providedBy(reactor):
        return _synchronous

    def run(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    return run


class ISourcedCredentials(ICredentials):
    """Credentials that know where they came from, for throttling guesses."""

    source = Attribute("the client's source key (L{mgcpswitch.web.throttle.source_key})")


@implementer(IUsernamePassword, ISourcedCredentials)
@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """An HTTP Basic user name and password, and the source that sent them."""

    username: bytes
    password: bytes
    source: str

    def checkPassword(self, password: bytes) -> bool:  # noqa: N802
        return hmac.compare_digest(self.password, password)


class BasicFromSourceFactory(BasicCredentialFactory):
    """Twisted's Basic factory, whose credentials carry the client's source."""

    def decode(self, response: bytes, request: Any) -> BasicCredentials:
        credentials = super().decode(response, request)  # type: ignore[no-untyped-call]  # unannotated upstream
        return BasicCredentials(credentials.username, credentials.password, source_key(request.getClientAddress()))


class LoginThrottled(LoginFailed):
    """Too many wrong guesses: try again in C{retry_after} seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


def _source(credentials: Any) -> str:
    return credentials.source if ISourcedCredentials.providedBy(credentials) else ""


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """
    Checks user names and passwords against L{PasswordHash}es: a
    remembered success at once, else through C{throttle} (a refused guess
    costs no PBKDF2), else by deriving the hash with C{run}.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(
        self,
        users: Mapping[str, PasswordHash],
        clock: IReactorTime,
        run: Runner = _synchronous,
        remember: float = 300.0,
        remember_max: int = 128,
        throttle: GuessThrottle | None = None,
    ) -> None:
        self.users = dict(users)
        self.clock = clock
        self.run = run
        self.remember = remember
        self.remember_max = remember_max
        self.throttle = GuessThrottle(clock) if throttle is None else throttle
        self._key = os.urandom(32)
        self._remembered: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        # Unknown users cost as much as known ones.
        iterations = max((h.iterations for h in self.users.values()), default=DEFAULT_ITERATIONS)
        self._decoy = PasswordHash(iterations, b"mgcpswitch-decoy", bytes(32))

    @classmethod
    def from_file(
        cls, filename: str, clock: IReactorTime, run: Runner = _synchronous, throttle: GuessThrottle | None = None
    ) -> PasswordFileChecker:
        return cls(load_password_file(filename), clock, run, throttle=throttle)

    def remembered(self, credentials: Any) -> str | None:
        """The user, if these credentials were verified in the last few minutes."""
        try:
            user = credentials.username.decode("utf-8")
        except UnicodeDecodeError:
            return None
        remembered = self._remembered.get(self._memo(user, credentials.password))
        return remembered[0] if remembered is not None and remembered[1] > self.clock.seconds() else None

    def _memo(self, user: str, password: bytes) -> bytes:
        return hmac.new(self._key, user.encode("utf-8") + b"\0" + password, hashlib.sha256).digest()

    def requestAvatarId(self, credentials: Any) -> Deferred[str]:  # type: ignore[override]  # ICredentialsChecker says bytes; cred hands any avatar id to the realm, ours are user names
        try:
            user: str = credentials.username.decode("utf-8")
        except UnicodeDecodeError:
            return fail(UnauthorizedLogin("user name is not UTF-8"))
        if self.remembered(credentials) is not None:
            return succeed(user)
        source = _source(credentials)
        wait = self.throttle.admit(source, user)
        if wait:
            return fail(LoginThrottled(wait))
        password = credentials.password
        stored = self.users.get(user)
        d = self.run((stored or self._decoy).verify, password)

        def checked(ok: bool) -> str:
            if not ok or stored is None:
                raise UnauthorizedLogin("bad user name or password")
            self.throttle.succeeded(source, user)
            key = self._memo(user, password)
            self._remembered[key] = (user, self.clock.seconds() + self.remember)
            self._remembered.move_to_end(key)
            while len(self._remembered) > self.remember_max:
                self._remembered.popitem(last=False)
            return user

        return d.addCallback(checked)


class IBearerToken(ICredentials):
    """An C{Authorization: Bearer TOKEN} credential."""

    token = Attribute("the token (bytes)")


@implementer(IBearerToken)
@dataclass(frozen=True, slots=True)
class BearerToken:
    token: bytes


@implementer(ICredentialFactory)
class BearerCredentialFactory:
    """Reads C{Authorization: Bearer TOKEN} (RFC 6750)."""

    scheme = b"bearer"

    def __init__(self, realm: str) -> None:
        self.realm = realm

    def getChallenge(self, request: Any) -> dict[str, str]:
        return {"realm": self.realm}

    def decode(self, response: bytes, request: Any) -> BearerToken:
        token = response.strip()
        if not token or b" " in token:
            raise LoginFailed("malformed bearer token")
        return BearerToken(token)


@implementer(ICredentialsChecker)
class TokenChecker:
    """Accepts the configured tokens; the avatar is C{token#N} (N from 1)."""

    credentialInterfaces = (IBearerToken,)

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = [t.encode("utf-8") for t in tokens]

    def requestAvatarId(self, credentials: Any) -> Deferred[str]:  # type: ignore[override]  # ICredentialsChecker says bytes; cred hands any avatar id to the realm, ours are user names
        found = None
        for number, token in enumerate(self.tokens, 1):
            # Compare with every token, so timing says nothing of which.
            if hmac.compare_digest(token, credentials.token) and found is None:
                found = f"token#{number}"
        if found is None:
            return fail(UnauthorizedLogin("unknown bearer token"))
        return succeed(found)


@implementer(IRealm)
class AdminRealm:
    """Every authenticated user gets the whole admin (there are no roles)."""

    def __init__(self, resource: IResource) -> None:
        self.resource = resource

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> tuple[Any, Any, Callable[[], None]]:
        if IResource not in interfaces:
            raise NotImplementedError("the admin realm only gives out web resources")
        return IResource, self.resource, lambda: None


def _quoted(value: str | bytes) -> str:
    text = value.decode("utf-8") if isinstance(value, bytes) else value
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ErrorResource(Resource):
    """Answers every request with an L{ApiError} (its code, headers and JSON reason)."""

    isLeaf = True

    def __init__(self, error: ApiError) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self.error = error

    def render(self, request: Any) -> int:
        write_json(request, self.error.code, error_body(self.error.error, self.error.reason), self.error.headers)
        return NOT_DONE_YET


@implementer(IResource)
class AuthenticatedResource:
    """
    Renders C{resource} only for requests whose C{Authorization} header
    the portal accepts; everything else gets a JSON 401 with the challenges
    (or a 429 when guessing passwords too fast).
    """

    isLeaf = False
    log = Logger()

    def __init__(self, portal: Portal, factories: Sequence[Any], passwords: PasswordFileChecker | None = None) -> None:
        self.portal = portal
        self.factories = list(factories)
        self.passwords = passwords

    def getChildWithDefault(self, path: bytes, request: Any) -> Any:
        # Consume nothing: put the segment back for the avatar to traverse.
        request.postpath.insert(0, request.prepath.pop())
        return DeferredResource(self._authorize(request))

    def render(self, request: Any) -> Any:
        return DeferredResource(self._authorize(request)).render(request)

    def putChild(self, path: bytes, child: Any) -> None:
        raise NotImplementedError("put children on the protected resource")

    def unauthorized(self, request: Any, reason: str) -> ApiError:
        """A 401 with every scheme's challenge."""
        challenges = []
        for factory in self.factories:
            params = ", ".join(f"{k}={_quoted(v)}" for k, v in factory.getChallenge(request).items())
            scheme = factory.scheme.decode("ascii").capitalize()
            challenges.append(f"{scheme} {params}".encode("utf-8"))
        return ApiError(401, "unauthorized", reason, {b"www-authenticate": challenges})

    def _credentials(self, request: Any) -> Any:
        """The credentials of the C{Authorization} header, or the L{ApiError} (401) refusing them."""
        header = request.getHeader(b"authorization")
        if not header:
            return self.unauthorized(request, "authentication required")
        scheme, _, rest = header.strip().partition(b" ")
        factory = next((f for f in self.factories if f.scheme == scheme.lower()), None)
        if factory is None:
            return self.unauthorized(
                request,
                "unsupported authorization scheme; use "
                + " or ".join(f.scheme.decode("ascii").capitalize() for f in self.factories),
            )
        try:
            return factory.decode(rest.strip(), request)
        except LoginFailed:
            return self.unauthorized(request, "malformed credentials")

    def precheck(self, request: Any) -> ApiError | None:
        """
        What the headers alone refuse, without deriving any hash: no or
        malformed credentials, a wrong bearer token (checked now: it is
        cheap), a password guess the throttle refuses.  None when the
        request may go on (a password not remembered is checked once the
        body, bounded, has arrived).
        """
        credentials = self._credentials(request)
        if isinstance(credentials, ApiError):
            return credentials
        if IUsernamePassword.providedBy(credentials):
            if self.passwords is None or self.passwords.remembered(credentials) is not None:
                return None
            try:
                user = credentials.username.decode("utf-8")
            except UnicodeDecodeError:
                return self.unauthorized(request, "bad credentials")
            wait = self.passwords.throttle.wait(_source(credentials), user)
            return _too_many(LoginThrottled(wait)) if wait else None
        outcome: list[Any] = []
        self.portal.login(credentials, None, IResource).addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            if outcome[0].check(UnauthorizedLogin, LoginFailed):
                return self.unauthorized(request, "bad credentials")
            outcome[0].raiseException()
        return None

    def _refuse(self, request: Any, error: ApiError, detail: str) -> Resource:
        self.log.info(
            "admin: refused {method} {uri} from {client}: {detail}",
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "replace"),
            client=str(request.getClientAddress()),
            detail=detail,
        )
        return ErrorResource(error)

    def _authorize(self, request: Any) -> Deferred[IResource]:
        credentials = self._credentials(request)
        if isinstance(credentials, ApiError):
            return succeed(self._refuse(request, credentials, credentials.reason))
        d = self.portal.login(credentials, None, IResource)

        def refused(failure: Failure) -> Resource:
            if isinstance(failure.value, LoginThrottled):
                return self._refuse(request, _too_many(failure.value), str(failure.value))
            failure.trap(UnauthorizedLogin, LoginFailed)
            return self._refuse(request, self.unauthorized(request, "bad credentials"), str(failure.value))

        def broken(failure: Failure) -> Resource:
            self.log.failure("admin: checking credentials failed", failure=failure)
            return ErrorResource(ApiError(500, "internal-error", "checking credentials failed; see the switch's log"))

        return d.addCallback(lambda result: IResource(result[1])).addErrback(refused).addErrback(broken)


def _too_many(throttled: LoginThrottled) -> ApiError:
    return ApiError(
        429, "too-many-requests", f"too many failed logins; retry in {throttled.retry_after} s",
        {b"retry-after": b"%d" % throttled.retry_after},
    )


def protect(resource: IResource, settings: WebSettings, clock: IReactorTime, run: Runner = _synchronous) -> Any:
    """
    C{resource} behind the authentication C{settings} ask for (or as is
    when they ask for none).  Reads the users file now: a bad file fails
    here, with L{PasswordFileError}, not at the first request.
    """
    if not settings.auth_required:
        return resource
    checkers: list[Any] = []
    factories: list[Any] = []
    passwords = None
    if settings.users_file:
        passwords = PasswordFileChecker.from_file(settings.users_file, clock, run)
        checkers.append(passwords)
        factories.append(BasicFromSourceFactory(settings.realm.encode("utf-8")))  # type: ignore[no-untyped-call]  # its __init__ is Twisted's, unannotated
    if settings.tokens:
        checkers.append(TokenChecker(settings.tokens))
        factories.append(BearerCredentialFactory(settings.realm))
    return AuthenticatedResource(Portal(AdminRealm(resource), checkers), factories, passwords)
