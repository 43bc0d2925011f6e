# -*- test-case-name: tests.test_sip_sdp_digest -*-
"""
Digest authentication as a client (RFC 3261 §22, RFC 2617, RFC 7616's
algorithms as RFC 8760 brings them to SIP): read the challenges of a 401
or 407, pick one, compute the credentials.

RFC 8760 §2.4: a server may offer several challenges, most preferred
first, and the client uses the topmost one whose algorithm it supports;
here those are MD5, MD5-sess, SHA-256, SHA-256-sess, SHA-512-256 and
SHA-512-256-sess.  qop C{auth} is used when offered (C{auth-int} when it
is the only one), with a client nonce the caller gives, so a computation
is a pure function of its inputs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

__all__ = ["Algorithm", "Challenge", "parse_challenge", "choose_challenge", "authorization"]


class Algorithm(Enum):
    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    SHA_512_256 = "SHA-512-256"
    SHA_512_256_SESS = "SHA-512-256-sess"

    @property
    def session(self) -> bool:
        return self.value.endswith("-sess")

    def hash(self, data: bytes) -> str:
        if self in (Algorithm.MD5, Algorithm.MD5_SESS):
            return hashlib.md5(data, usedforsecurity=False).hexdigest()
        if self in (Algorithm.SHA_256, Algorithm.SHA_256_SESS):
            return hashlib.sha256(data).hexdigest()
        return hashlib.new("sha512_256", data).hexdigest()


_ALGORITHMS = {a.value.lower(): a for a in Algorithm}
_PARAM_RE = re.compile(r"[ \t]*([A-Za-z0-9\-_]+)[ \t]*=[ \t]*(\"(?:[^\"\\]|\\.)*\"|[^\s,\"]+)[ \t]*(?:,|\Z)")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One C{Digest} challenge of a WWW-Authenticate or Proxy-Authenticate header."""

    realm: str
    nonce: str
    algorithm: Algorithm = Algorithm.MD5
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # from Proxy-Authenticate: answered in Proxy-Authorization


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenge(value: str, *, proxy: bool = False) -> Challenge | None:
    """
    A Digest challenge, or None for another scheme, an unknown algorithm
    or a challenge without realm or nonce.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM_RE.match(rest, pos)
        if match is None or match.end() == pos:
            return None
        params[match.group(1).lower()] = _unquote(match.group(2))
        pos = match.end()
    algorithm = _ALGORITHMS.get(params.get("algorithm", "MD5").lower())
    if algorithm is None or "realm" not in params or "nonce" not in params:
        return None
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    if qop and not {"auth", "auth-int"} & set(qop):
        return None
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        proxy=proxy,
    )


def choose_challenge(challenges: list[Challenge]) -> Challenge | None:
    """The topmost challenge this client can answer (RFC 8760 §2.4)."""
    return challenges[0] if challenges else None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """
    The value of the Authorization (or Proxy-Authorization) header
    answering C{challenge} for a request C{method} to C{uri}.
    """
    algorithm = challenge.algorithm

    def h(text: str) -> str:
        return algorithm.hash(text.encode("utf-8"))

    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if algorithm.session:
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    qop = "auth" if "auth" in challenge.qop else ("auth-int" if "auth-int" in challenge.qop else None)
    if qop == "auth-int":
        ha2 = h(f"{method}:{uri}:{algorithm.hash(body)}")
    else:
        ha2 = h(f"{method}:{uri}")
    nc_text = f"{nc:08x}"
    if qop:
        response = h(f"{ha1}:{challenge.nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")
    else:
        response = h(f"{ha1}:{challenge.nonce}:{ha2}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm.value}",
    ]
    if qop:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)
