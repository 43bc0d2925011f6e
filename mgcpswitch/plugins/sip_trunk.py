"""
The built-in kind of trunk: SIP (C{[trunk:NAME] kind = sip}, the default).
A third party adds another kind with an object like this one providing
L{ITrunkFactory} in a module of this package (docs/PLUGINS.md).
"""

from typing import Any, Callable

from twisted.plugin import IPlugin
from zope.interface import implementer

from mgcpswitch.config import TrunkSettings
from mgcpswitch.interfaces import ITrunkFactory


@implementer(IPlugin, ITrunkFactory)
class SipTrunkFactory:
    """Builds a L{mgcpswitch.sip.trunk.SipTrunk} from its C{[trunk:NAME]} section."""

    name = "sip"

    def build(self, settings: TrunkSettings, context: Any, incoming: Callable[[Any], None]) -> Any:
        from mgcpswitch.sip.trunk import SipTrunk

        return SipTrunk(settings, context.reactor, incoming)


sip_trunk = SipTrunkFactory()
