# -*- test-case-name: tests.test_plugins -*-
"""
Finding and enabling plugins.

Discovery uses L{twisted.plugin.getPlugins} over the drop-in package
L{mgcpswitch.plugins}; nothing is enabled unless the configuration names
it.  A plugin that fails to import is logged by Twisted and skipped; a name
that matches nothing raises L{PluginNotFound} listing what exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from twisted.plugin import IPlugin, getPlugins
from zope.interface.interface import InterfaceClass

from . import plugins as _plugin_package
from .errors import PluginNotFound

__all__ = ["PluginContext", "available", "find"]

T = TypeVar("T")


@dataclass(frozen=True)
class PluginContext:
    """What a plugin factory may use to build its object."""

    reactor: Any
    settings: Any = None  # the switch's Settings
    extras: Mapping[str, Any] = field(default_factory=dict)


def available(interface: InterfaceClass) -> dict[str, Any]:
    """Every discovered plugin providing C{interface} (and IPlugin), by name."""
    found: dict[str, Any] = {}
    for plugin in getPlugins(interface, _plugin_package):
        if IPlugin.providedBy(plugin):
            found.setdefault(plugin.name, plugin)
    return found


def find(interface: InterfaceClass, name: str) -> Any:
    """The plugin called C{name} providing C{interface}."""
    plugins = available(interface)
    try:
        return plugins[name]
    except KeyError:
        raise PluginNotFound(
            f"no {interface.getName()} plugin named {name!r}; available: "
            + (", ".join(sorted(plugins)) or "none")
        ) from None
