"""
Plugin discovery: a third-party plugin (the complete example of
docs/PLUGINS.md, taken from the document itself) dropped into a temporary
plugin directory is found, built, fed an event and writes its file; a
broken drop-in is skipped; every discovered plugin provides its interfaces.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile

from twisted.internet.task import Clock
from twisted.plugin import IPlugin, pluginPackagePaths
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import mgcpswitch.plugins
from mgcpswitch.agent.model import CallEnded, CallRecord, CallStarted, ReleaseCause
from mgcpswitch.errors import ConfigError
from mgcpswitch.interfaces import ICallObserver, ICallObserverFactory, IDialPlanFactory, IGatewayProfile
from mgcpswitch.config import Key
from mgcpswitch.plugin import PluginContext, available, build

from .support.fake_control import FakeCallControl

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "PLUGINS.md")


def example(name: str) -> str:
    """The code block that follows C{<!-- example: NAME -->} in docs/PLUGINS.md."""
    with open(DOCS, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"<!-- example: " + re.escape(name) + r" -->\n```python\n(.*?)\n```", text, re.S)
    assert match is not None, f"no example {name} in {DOCS}"
    return match.group(1) + "\n"


class DropIn:
    """
    A temporary directory holding C{mgcpswitch/plugins/MODULE.py} (no
    C{__init__.py}), put on C{sys.path} and into the plugin package's path
    the way a directory present at start-up would be; undone by C{remove}.
    """

    def __init__(self) -> None:
        self.top = tempfile.mkdtemp(prefix="mgcp-plugins-")
        self.directory = os.path.join(self.top, "mgcpswitch", "plugins")
        os.makedirs(self.directory)
        self.saved_path = list(mgcpswitch.plugins.__path__)
        self.modules: list[str] = []

    def add(self, module: str, source: str) -> None:
        with open(os.path.join(self.directory, module + ".py"), "w", encoding="utf-8") as f:
            f.write(source)
        self.modules.append(module)

    def install(self) -> None:
        sys.path.insert(0, self.top)
        # The package computed its __path__ when first imported; evaluate
        # pluginPackagePaths again, as a fresh process would.
        for directory in pluginPackagePaths(mgcpswitch.plugins.__name__):
            if directory not in mgcpswitch.plugins.__path__:
                mgcpswitch.plugins.__path__.append(directory)

    def remove(self) -> None:
        if self.top in sys.path:
            sys.path.remove(self.top)
        mgcpswitch.plugins.__path__[:] = self.saved_path
        for module in self.modules:
            sys.modules.pop(f"mgcpswitch.plugins.{module}", None)
        shutil.rmtree(self.top)  # the module, its dropin.cache and __pycache__


def ended_call(fake: FakeCallControl) -> CallEnded:
    call = fake.calls["c1"]
    record = CallRecord("c1", "1001", "1002", call.caller, call.callee, "A1", "A2", "PCMU",
                        call.started, call.answered, call.started + 42.5, ReleaseCause.NORMAL)
    return CallEnded(call, record)


class ThirdParty(SynchronousTestCase):
    def setUp(self) -> None:
        self.dropin = DropIn()
        self.addCleanup(self.dropin.remove)

    def test_not_found_before(self) -> None:
        """Without the directory on the path, the example is not there."""
        self.assertNotIn("calllog", available(ICallObserverFactory))

    def test_documented_example_loads_and_works(self) -> None:
        """The example of docs/PLUGINS.md, dropped in, is found, built and writes call records."""
        self.dropin.add("calllog", example("calllog.py"))
        self.dropin.install()
        found = available(ICallObserverFactory)
        self.assertIn("calllog", found)
        self.assertIn("webhook", found)  # the built-in ones are still there
        factory = found["calllog"]
        verifyObject(IPlugin, factory)
        verifyObject(ICallObserverFactory, factory)

        path = os.path.join(self.dropin.top, "calls.jsonl")
        observer = build(factory, {"path": path}, PluginContext(Clock()))
        verifyObject(ICallObserver, observer)
        fake = FakeCallControl()
        event = ended_call(fake)
        observer.call_event(CallStarted(fake.calls["c1"]))  # not a CallEnded: ignored
        observer.call_event(event)
        observer.call_event(event)
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual([json.loads(line) for line in lines], [event.record.to_json()] * 2)
        self.assertEqual(json.loads(lines[0])["cause"], "normal")

        # Its section is read through the keys it declares.
        for section, key, reason in (({}, "path", "required but missing: the file"),
                                     ({"pth": path}, "pth", "unknown key; known keys are: path"),
                                     ({"path": " "}, "path", "must not be empty")):
            with self.assertRaises(ConfigError) as caught:
                build(factory, section, PluginContext(Clock()))
            self.assertEqual(caught.exception.path, ("plugin:calllog", key))
            self.assertIn(reason, str(caught.exception))

    def test_plugin_without_keys(self) -> None:
        """A plugin written before plugins declared their keys is refused by name, not with a traceback."""
        self.dropin.add("calllog", example("calllog.py").replace("    keys = {", "    _keys = {"))
        self.dropin.install()
        factory = available(ICallObserverFactory)["calllog"]
        with self.assertRaises(ConfigError) as caught:
            build(factory, {"path": "x"}, PluginContext(Clock()))
        self.assertEqual(caught.exception.path, ("plugin:calllog",))
        self.assertIn("declares no keys", caught.exception.message)

    def test_broken_dropin_is_skipped(self) -> None:
        """A drop-in that fails to import is logged; the others still load."""
        self.dropin.add("acme_broken", "import no_such_module_anywhere\n")
        self.dropin.add("calllog", example("calllog.py"))
        self.dropin.install()
        found = available(ICallObserverFactory)
        self.assertIn("calllog", found)
        self.assertIn("webhook", found)
        self.assertTrue(self.flushLoggedErrors(ImportError))


class Builtin(SynchronousTestCase):
    def test_every_discovered_plugin_verifies(self) -> None:
        """Every plugin the switch ships provides IPlugin and its interface."""
        for interface in (IDialPlanFactory, ICallObserverFactory, IGatewayProfile):
            plugins = available(interface)
            self.assertTrue(plugins, interface)
            for name, plugin in plugins.items():
                verifyObject(IPlugin, plugin)
                verifyObject(interface, plugin)
                self.assertEqual(plugin.name, name)
                if interface is not IGatewayProfile:
                    self.assertTrue(all(isinstance(key, Key) for key in plugin.keys.values()), name)
        self.assertLessEqual({"cdr-sqlite", "webhook"}, set(available(ICallObserverFactory)))
