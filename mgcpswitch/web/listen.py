# -*- test-case-name: tests.test_web_listen -*-
"""
The admin's listening endpoint: Twisted's own, except that TLS listens with
options holding C{cryptography} objects, the form pyOpenSSL supports (it
deprecates its own C{X509}/C{PKey} in C{Context.use_*}).  Where a
description listens, and whether that is loopback, is decided in
L{mgcpswitch.listen}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from ..listen import Listening, Transport, check_exposure, on_loopback, parse_listen

__all__ = ["Transport", "Listening", "parse_listen", "on_loopback", "check_exposure", "listen_endpoint"]


def listen_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    The endpoint to serve C{description} on: Twisted's own, except that
    TLS listens with options holding C{cryptography} objects.
    """
    listening = parse_listen(description)
    endpoint: IStreamServerEndpoint
    if listening is None:
        endpoint = serverFromString(reactor, description)
        return endpoint  # a plugin's endpoint, allowed with authentication
    if listening.transport is Transport.SSL:
        return SSL4ServerEndpoint(
            reactor, listening.port, _modern(listening.tls), listening.backlog, listening.interface
        )
    endpoint = serverFromString(reactor, description)
    return endpoint


def _modern(options: Any) -> Any:
    """Twisted's C{ssl:} options with the key and certificates as C{cryptography} objects."""
    try:
        from OpenSSL.crypto import PKey, X509
    except ImportError:  # pragma: no cover - ssl: needs pyOpenSSL to parse at all
        return options
    if isinstance(getattr(options, "certificate", None), X509):
        options.certificate = options.certificate.to_cryptography()
    if isinstance(getattr(options, "privateKey", None), PKey):
        options.privateKey = options.privateKey.to_cryptography_key()
    chain = getattr(options, "extraCertChain", None)
    if chain:
        options.extraCertChain = [c.to_cryptography() if isinstance(c, X509) else c for c in chain]
    return options
