"""
The plugins mgcpswitch ships: the static dial plan, the SQLite CDR writer
and the gateway profiles.  (The webhook observer lives in its own module.)
Each is enabled by name in the configuration.
"""

from typing import Any, Mapping

from twisted.plugin import IPlugin
from zope.interface import implementer

from mgcpswitch.agent.profiles import DEFAULT_PROFILE, OSMO_MGW_PROFILE
from mgcpswitch.config import Key, integer, number, text
from mgcpswitch.interfaces import ICallObserverFactory, IDialPlanFactory


@implementer(IPlugin, IDialPlanFactory)
class StaticDialPlanFactory:
    """The gateways' C{numbers} and the C{[dialplan]} section; no section of its own."""

    name = "static"
    keys: Mapping[str, Key] = {}

    def build(self, settings: Mapping[str, Any], context: Any) -> Any:
        from mgcpswitch.agent.dialplan import StaticDialPlan

        return StaticDialPlan.from_settings(context.settings)


@implementer(IPlugin, ICallObserverFactory)
class SQLiteCDRFactory:
    """C{[plugin:cdr-sqlite]}: one row per ended call in an SQLite file, written in batches."""

    name = "cdr-sqlite"
    keys: Mapping[str, Key] = {
        "path": Key(text, "mgcpswitch-cdr.sqlite", "the SQLite file (created if missing)"),
        "batch_size": Key(integer(1, 100_000), 200, "records written in one transaction at most"),
        "flush_interval": Key(number(0.001), 1.0, "seconds a record may wait for its batch"),
    }

    def build(self, settings: Mapping[str, Any], context: Any) -> Any:
        from mgcpswitch.agent.cdr import SQLiteCDRWriter

        return SQLiteCDRWriter(
            context.reactor,
            settings["path"],
            batch_size=settings["batch_size"],
            flush_interval=settings["flush_interval"],
        )


static_dial_plan = StaticDialPlanFactory()
sqlite_cdr = SQLiteCDRFactory()
default_profile = DEFAULT_PROFILE
osmo_mgw_profile = OSMO_MGW_PROFILE
