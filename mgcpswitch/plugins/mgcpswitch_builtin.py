"""
The plugins mgcpswitch ships: the static dial plan, the SQLite CDR writer
and the gateway profiles.  (The webhook observer lives in its own module.)
Each is enabled by name in the configuration.
"""

from typing import Any, Mapping

from twisted.plugin import IPlugin
from zope.interface import implementer

from mgcpswitch.agent.profiles import DEFAULT_PROFILE, OSMO_MGW_PROFILE
from mgcpswitch.interfaces import ICallObserverFactory, IDialPlanFactory


@implementer(IPlugin, IDialPlanFactory)
class StaticDialPlanFactory:
    name = "static"

    def build(self, settings: Mapping[str, str], context: Any) -> Any:
        from mgcpswitch.agent.dialplan import StaticDialPlan

        return StaticDialPlan.from_settings(context.settings)


@implementer(IPlugin, ICallObserverFactory)
class SQLiteCDRFactory:
    """C{[plugin:cdr-sqlite]}: C{path} (default mgcpswitch-cdr.sqlite), C{batch_size}."""

    name = "cdr-sqlite"

    def build(self, settings: Mapping[str, str], context: Any) -> Any:
        from mgcpswitch.agent.cdr import SQLiteCDRWriter

        return SQLiteCDRWriter(
            context.reactor,
            settings.get("path", "mgcpswitch-cdr.sqlite"),
            batch_size=int(settings.get("batch_size", "200")),
            flush_interval=float(settings.get("flush_interval", "1.0")),
        )


static_dial_plan = StaticDialPlanFactory()
sqlite_cdr = SQLiteCDRFactory()
default_profile = DEFAULT_PROFILE
osmo_mgw_profile = OSMO_MGW_PROFILE
