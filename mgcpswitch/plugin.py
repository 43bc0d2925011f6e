# -*- test-case-name: tests.test_plugins -*-
"""
Finding, checking and enabling plugins.

Discovery uses L{twisted.plugin.getPlugins} over the drop-in package
L{mgcpswitch.plugins}; nothing is enabled unless the configuration names
it.  A plugin that fails to import is logged by Twisted and skipped; a name
that matches nothing raises L{PluginNotFound} listing what exists.

A plugin factory declares the keys of its C{[plugin:NAME]} section (its
C{keys}, a mapping of key to L{mgcpswitch.config.Key}); L{read_section}
reads the section through them, so an unknown key or a bad value is a
L{ConfigError} naming section and key before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, TypeVar

from twisted.plugin import IPlugin, getPlugins

from . import plugins as _plugin_package
from .config import PluginContext, Settings, read_keys
from .errors import ConfigError, PluginNotFound
from .interfaces import (
    ICallObserverFactory,
    IDialPlanFactory,
    IGatewayProfile,
    IIncomingCall,
    INamed,
    ITrunk,
    ITrunkFactory,
)

__all__ = ["PluginContext", "Plugins", "available", "find", "read_section", "build", "enable", "build_trunks"]


@dataclass(frozen=True)
class Plugins:
    """What the configuration enables: built dial plan and observers, and every profile."""

    dial_plan: Any  # IDialPlan
    observers: tuple[Any, ...]  # ICallObserver
    profiles: Mapping[str, Any]  # name -> IGatewayProfile


_Plugin = TypeVar("_Plugin", bound=INamed)


def available(interface: type[_Plugin]) -> dict[str, _Plugin]:
    """Every discovered plugin providing C{interface} (and IPlugin), by name."""
    found: dict[str, _Plugin] = {}
    for plugin in getPlugins(interface, _plugin_package):
        if IPlugin.providedBy(plugin):
            found.setdefault(plugin.name, plugin)
    return found


def find(interface: type[_Plugin], name: str) -> _Plugin:
    """The plugin called C{name} providing C{interface}."""
    plugins = available(interface)
    try:
        return plugins[name]
    except KeyError:
        raise PluginNotFound(
            f"no {interface.__name__} plugin named {name!r}; available: "
            + (", ".join(sorted(plugins)) or "none")
        ) from None


def read_section(factory: Any, items: Mapping[str, str]) -> dict[str, Any]:
    """
    The C{[plugin:NAME]} section of C{factory} read through its declared
    C{keys}: each key's value, or its default.
    """
    keys = getattr(factory, "keys", None)
    if keys is None:  # a plugin written before plugins declared their keys
        raise ConfigError(
            (f"plugin:{factory.name}",),
            f"the plugin {factory.name!r} ({type(factory).__module__}) declares no keys: "
            "it needs a `keys` attribute (docs/PLUGINS.md)",
        )
    return read_keys(f"plugin:{factory.name}", items, keys)


def build(factory: Any, items: Mapping[str, str], context: PluginContext) -> Any:
    """C{factory}'s object, built from its section's text C{items}."""
    return factory.build(read_section(factory, items), context)


def _enabled(interface: type[_Plugin], name: str, where: tuple[str, str]) -> _Plugin:
    try:
        return find(interface, name)
    except PluginNotFound as e:
        raise ConfigError(where, str(e)) from None


def enable(settings: Settings, context: PluginContext) -> Plugins:
    """
    Check the plugins the configuration names (C{[switch] dial_plan} and
    C{observers}, each gateway's C{profile}) and every C{[plugin:NAME]}
    section, then build the dial plan and the observers.  Everything is
    checked before anything is built; a mistake is a L{ConfigError} naming
    the section and key.
    """
    dial_plans = available(IDialPlanFactory)
    observers = available(ICallObserverFactory)
    dial_plan = _enabled(IDialPlanFactory, settings.switch.dial_plan, ("switch", "dial_plan"))
    enabled = [_enabled(ICallObserverFactory, name, ("switch", "observers")) for name in settings.switch.observers]
    profiles = available(IGatewayProfile)
    for gateway in settings.gateways:
        if gateway.profile not in profiles:
            raise ConfigError(
                (f"gateway:{gateway.name}", "profile"),
                f"no gateway profile {gateway.profile!r}; available: {', '.join(sorted(profiles))}",
            )
    # Every section is read, the sections of plugins not enabled too: a
    # section that names no plugin, or holds a key its plugin does not
    # declare, is a mistake whether or not the plugin is on.
    for name, items in settings.plugins.items():
        factories = [f for f in (dial_plans.get(name), observers.get(name)) if f is not None]
        if not factories:
            known = ", ".join(sorted(set(dial_plans) | set(observers)))
            raise ConfigError((f"plugin:{name}",), f"no plugin named {name!r}; available: {known}")
        for factory in factories:
            read_section(factory, items)
    return Plugins(
        dial_plan=build(dial_plan, settings.plugins.get(dial_plan.name, {}), context),
        observers=tuple(build(f, settings.plugins.get(f.name, {}), context) for f in enabled),
        profiles=profiles,
    )


def build_trunks(settings: Settings, context: PluginContext,
                 incoming: Callable[[str, IIncomingCall], None]) -> dict[str, ITrunk]:
    """
    Every C{[trunk:NAME]} built by the factory its C{kind} names, by name;
    a kind no plugin provides is a L{ConfigError} naming section and key.
    Each trunk's calls in go to C{incoming(NAME, call)}.
    """
    factories = available(ITrunkFactory)
    trunks: dict[str, ITrunk] = {}
    for trunk in settings.trunks:
        factory = factories.get(trunk.kind)
        if factory is None:
            raise ConfigError(
                (f"trunk:{trunk.name}", "kind"),
                f"no trunk kind {trunk.kind!r}; available: {', '.join(sorted(factories)) or 'none'}",
            )
        built = factory.build(trunk, context, partial(incoming, trunk.name))
        if not ITrunk.providedBy(built):
            raise TypeError(f"the {trunk.kind} trunk factory built {built!r}, not an ITrunk")
        trunks[trunk.name] = built
    return trunks
