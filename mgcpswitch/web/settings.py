# -*- test-case-name: tests.test_web_api -*-
"""
The web admin's settings, as the C{[web]} section of the configuration
fills them.  They are defined in L{mgcpswitch.config}, below the faces
(call control reads the configuration and must not import the web admin);
this module names them for the admin's own modules.
"""

from ..config import DEFAULT_LISTEN, WebSettings

__all__ = ["WebSettings", "DEFAULT_LISTEN"]
