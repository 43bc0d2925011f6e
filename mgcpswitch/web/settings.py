# -*- test-case-name: tests.test_web_api -*-
"""
The web admin's settings, as the C{[web]} section of the configuration
fills them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WebSettings", "DEFAULT_LISTEN"]

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"


@dataclass(frozen=True, slots=True)
class WebSettings:
    """
    Where the admin listens and who may use it.

    @ivar listen: a server strports description: C{tcp:PORT:interface=ADDR}
        or, for HTTPS, C{ssl:PORT:interface=ADDR:privateKey=KEY:certKey=CERT}.
        Loopback by default.
    @ivar users_file: a file of C{user:pbkdf2_sha256$...} lines (see
        L{mgcpswitch.web.auth}); enables HTTP Basic authentication.
    @ivar tokens: bearer tokens accepted in C{Authorization: Bearer ...}.
    @ivar realm: the realm named in the HTTP Basic challenge.
    """

    listen: str = DEFAULT_LISTEN
    users_file: str | None = None
    tokens: tuple[str, ...] = ()
    realm: str = "mgcpswitch"

    @property
    def auth_required(self) -> bool:
        """Whether requests must authenticate (a users file or tokens set)."""
        return bool(self.users_file) or bool(self.tokens)
