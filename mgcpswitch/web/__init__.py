# -*- test-case-name: tests.test_web_api -*-
"""
The web admin: a JSON API over L{mgcpswitch.interfaces.ICallControl}, a
live HTML page, server-sent events and Prometheus metrics, on
C{twisted.web}, behind C{twisted.cred} authentication when configured.
See docs/ADMIN.md.
"""

from .settings import WebSettings
from .site import build_web_service, make_site

__all__ = ["WebSettings", "build_web_service", "make_site"]
