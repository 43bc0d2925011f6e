# -*- test-case-name: tests.test_web_listen -*-
"""
Where a strports description listens, decided on what Twisted builds from
it rather than on the text: the configuration's rule that an admin without
authentication listens on loopback only.

The description is handed to L{serverFromString} with a recording reactor:
the endpoint it builds calls C{listenTCP}, C{listenSSL} or C{listenUNIX}
with the port and interface it really uses, and the recorder keeps them
(and listens nowhere).  So C{tcp:8080:interface=127.0.0.1:interface=0.0.0.0},
where the parser keeps the last C{interface=}, is seen as 0.0.0.0, as the
socket would be; escapes (C{interface=\\:\\:1}), C{tcp6:} defaults and
whatever a later Twisted changes in its parser are followed the same way.
A description whose endpoint does not listen through one of those three
calls (a plugin's endpoint) cannot be placed: it is refused unless
authentication is configured.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from .errors import ConfigError



class AdminListening(Protocol):
    """What L{check_exposure} reads of the admin's settings (C{WebSettings} has it)."""

    @property
    def listen(self) -> str: ...

    @property
    def auth_required(self) -> bool: ...

__all__ = ["Transport", "Listening", "parse_listen", "on_loopback", "check_exposure"]

_KEY = ("web", "listen")


class Transport(enum.Enum):
    TCP = "tcp"
    SSL = "ssl"
    UNIX = "unix"


@dataclass(frozen=True)
class Listening:
    """
    What an endpoint asks of the reactor: the transport, the interface (a
    path for UNIX sockets), the port, and for TLS the context factory.
    """

    transport: Transport
    interface: str
    port: int = 0
    backlog: int = 50
    tls: Any = None

    def where(self) -> str:
        if self.transport is Transport.UNIX:
            return f"the UNIX socket {self.interface}"
        host = self.interface or "every interface"
        return f"{host} port {self.port}"


class _Recorded(Exception):
    def __init__(self, listening: Listening) -> None:
        super().__init__(listening)
        self.listening = listening


class _Recorder:
    """A reactor whose listen calls record their arguments and fail."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:  # noqa: N802
        raise _Recorded(Listening(Transport.TCP, interface, port, backlog))

    def listenSSL(  # noqa: N802
        self, port: int, factory: Any, contextFactory: Any, backlog: int = 50, interface: str = ""  # noqa: N803
    ) -> Any:
        raise _Recorded(Listening(Transport.SSL, interface, port, backlog, contextFactory))

    def listenUNIX(self, address: str, factory: Any, backlog: int = 50, mode: int = 0o666, wantPID: int = 0) -> Any:  # noqa: N802,N803
        raise _Recorded(Listening(Transport.UNIX, str(address), 0, backlog))


def parse_listen(description: str) -> Listening | None:
    """
    What listening on C{description} would do, or None when its endpoint
    does not listen through TCP, TLS or a UNIX socket (a plugin's).
    @raise ConfigError: the description does not parse (for C{ssl:}, the
        key or certificate cannot be read).
    """
    try:
        endpoint = serverFromString(_Recorder(), description)
    except Exception as e:  # the parsers raise ValueError, TypeError, KeyError, OSError, OpenSSL errors
        raise ConfigError(_KEY, f"{description!r} is not a usable strports description: {e}") from None
    outcome: list[Any] = []
    endpoint.listen(Factory()).addBoth(outcome.append)
    if outcome and isinstance(outcome[0], Failure) and isinstance(outcome[0].value, _Recorded):
        return outcome[0].value.listening
    return None


def on_loopback(listening: Listening) -> bool:
    """
    Whether only this machine can connect: a UNIX socket, or an interface
    that is a loopback address (or C{localhost}); every interface (C{""},
    C{0.0.0.0}, C{::}) is not.
    """
    if listening.transport is Transport.UNIX:
        return True
    host = listening.interface
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_exposure(settings: AdminListening) -> Listening | None:
    """
    Where C{settings} make the admin listen; refuse with L{ConfigError} an
    admin reachable beyond this machine without authentication.
    """
    listening = parse_listen(settings.listen)
    if settings.auth_required:
        return listening  # authenticated, it may listen anywhere, also through a plugin's endpoint
    if listening is None:
        raise ConfigError(
            _KEY,
            f"cannot tell where {settings.listen!r} listens: use tcp:, tcp6:, ssl: or unix:, "
            "or configure users_file or tokens",
        )
    if not on_loopback(listening):
        raise ConfigError(
            _KEY,
            f"{settings.listen!r} is not on a loopback interface (it listens on {listening.where()}): "
            "configure users_file or tokens before exposing the admin",
        )
    return listening


