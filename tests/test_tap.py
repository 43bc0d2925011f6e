"""
C{twistd mgcpswitch}: the options (defaults, every option and flag, the
refusals), the services L{build_switch} makes (named children, simulated
gateways configured from the settings, plugins, their sections and
profiles checked by name) on a L{MemoryReactor}; starting with a port that
is taken (held by the test on 127.0.0.1); one real C{twistd -n mgcpswitch}
process on free loopback ports, polled through its admin until its
gateways are up, then stopped by its process id, and two that must end
with one line naming what to fix.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
from dataclasses import replace
from typing import Any

import treq
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet import reactor
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.plugin import getPlugins
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from mgcpswitch import tap
from mgcpswitch.agent.cdr import SQLiteCDRWriter
from mgcpswitch.agent.service import CallControlService
from mgcpswitch.config import DEFAULT_INI, load_settings, parse_settings
from mgcpswitch.demo import DemoService
from mgcpswitch.errors import ConfigError
from mgcpswitch.gateway import GatewayService
from mgcpswitch.plugin import PluginContext, enable
from mgcpswitch.testing import MemoryReactor

from .support.live import switch_ini, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ETC_INI = os.path.join(ROOT, "etc", "mgcpswitch.ini")

# A switch on loopback with two simulated gateways and no CDR file.
QUIET_INI = "[store]\nurl = memory\n\n" + DEFAULT_INI.replace("port = 2727\n", "port = 2727\nobservers =\n")


def parse(*args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(args))
    return options


class Files(SynchronousTestCase):
    """Writes configuration files in a directory removed after the test."""

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-tap-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def write(self, text: str, name: str = "switch.ini") -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class OptionsTests(Files):
    def test_defaults(self) -> None:
        """No arguments: the embedded defaults, no flag set."""
        options = parse()
        settings = options.settings
        self.assertEqual(settings, load_settings(None))
        self.assertEqual(settings.source, "<embedded defaults>")
        self.assertEqual((settings.switch.interface, settings.switch.port), ("127.0.0.1", 2727))
        self.assertEqual(settings.web.listen, "tcp:8080:interface=127.0.0.1")
        self.assertFalse(settings.web.auth_required)
        self.assertEqual([(g.name, g.address, g.port, len(g.endpoints), g.numbers[0]) for g in settings.gateways],
                         [("rgw1", "127.0.0.1", 2427, 8, "1001"), ("rgw2", "127.0.0.1", 2428, 8, "2001")])
        self.assertEqual(settings.simulator.gateways, ("rgw1", "rgw2"))
        self.assertEqual(settings.switch.observers, ())
        self.assertEqual(settings.store.url, "sqlite:mgcpswitch.sqlite")
        self.assertEqual((settings.switch.dial_plan, settings.transactions.trace), ("static", False))
        self.assertEqual((options["config"], options["demo"], options["no-simulator"], options["trace"]),
                         (None, 0, 0, 0))

    def test_config_file(self) -> None:
        """--config etc/mgcpswitch.ini: the documented file is what the embedded defaults run."""
        for flag in ("--config", "-c"):
            settings = parse(flag, ETC_INI).settings
            self.assertEqual(settings.source, ETC_INI)
            embedded = load_settings(None)
            for part in ("switch", "transactions", "web", "gateways", "simulator", "demo", "store", "dialplan"):
                self.assertEqual(getattr(settings, part), getattr(embedded, part), part)
            self.assertEqual(list(settings.plugins), [])

    def test_port_and_interface(self) -> None:
        """--port/-p and --interface/-i override [switch]; nothing else changes."""
        for args in (("--port", "2800", "--interface", "127.0.0.9"), ("-p", "2800", "-i", "127.0.0.9")):
            settings = parse(*args).settings
            self.assertEqual((settings.switch.interface, settings.switch.port), ("127.0.0.9", 2800))
            self.assertEqual(settings.gateways, load_settings(None).gateways)
        path = self.write(QUIET_INI.replace("port = 2727", "port = 3000"))
        self.assertEqual(parse("--config", path).settings.switch.port, 3000)
        self.assertEqual(parse("--config", path, "--port", "3001").settings.switch.port, 3001)
        self.assertEqual(parse("--config", path).settings.switch.observers, ())
        self.assertRaises(UsageError, parse, "--port", "twenty")

    def test_web(self) -> None:
        """--web/-w overrides [web] listen, and keeps the loopback rule."""
        self.assertEqual(parse("--web", "tcp:9090:interface=127.0.0.1").settings.web.listen,
                         "tcp:9090:interface=127.0.0.1")
        # IPv6 loopback, its colons escaped as strports wants them.
        self.assertEqual(parse("-w", r"tcp:9090:interface=\:\:1").settings.web.listen, r"tcp:9090:interface=\:\:1")
        path = self.write(QUIET_INI.replace("tcp:8080:interface=127.0.0.1", r"tcp6:8080:interface=\:\:1"))
        self.assertEqual(parse("--config", path).settings.web.listen, r"tcp6:8080:interface=\:\:1")
        self.assertRaises(UsageError, parse, "--web", r"tcp:9090:interface=\:\:")
        for listen in ("tcp:80:interface=0.0.0.0", "tcp:8080"):
            with self.assertRaises(UsageError) as caught:
                parse("--web", listen)
            message = str(caught.exception)
            self.assertTrue(message.startswith("--web: [web] listen: "), message)
            self.assertIn("not on a loopback interface", message)
            self.assertIn("users_file or tokens", message)
        # With authentication configured, listening beyond loopback is allowed.
        path = self.write(QUIET_INI.replace("[web]\n", "[web]\ntokens = t0k3n\n"))
        settings = parse("--config", path, "--web", "tcp:80:interface=0.0.0.0").settings
        self.assertEqual((settings.web.listen, settings.web.tokens), ("tcp:80:interface=0.0.0.0", ("t0k3n",)))

    def test_flags(self) -> None:
        """--demo/-d, --no-simulator and --trace."""
        self.assertTrue(parse("--demo")["demo"])
        self.assertTrue(parse("-d")["demo"])
        self.assertTrue(parse("--no-simulator")["no-simulator"])
        options = parse("--trace")
        self.assertTrue(options.settings.transactions.trace)
        self.assertEqual(replace(options.settings.transactions, trace=False), load_settings(None).transactions)

    def test_demo_needs_simulated_gateways(self) -> None:
        """--demo is refused without [simulator] gateways, and with --no-simulator (it drives them)."""
        path = self.write(QUIET_INI.replace("[simulator]\ngateways = rgw1, rgw2\n", ""))
        self.assertEqual(parse("--config", path).settings.simulator.gateways, ())
        with self.assertRaises(UsageError) as caught:
            parse("--config", path, "--demo")
        self.assertEqual(str(caught.exception), "--demo needs simulated gateways ([simulator] gateways = ...)")
        with self.assertRaises(UsageError) as caught:
            parse("--demo", "--no-simulator")
        self.assertIn("--no-simulator", str(caught.exception))
        self.assertRaises(UsageError, parse, "--config", path, "--demo", "--no-simulator")

    def test_bad_configuration(self) -> None:
        """
        A bad key or value, an unknown section, a file that is no INI or no
        UTF-8, a missing file: twistd ends with one line naming the file,
        section and key (SystemExit with that line: status 1, no usage text).
        """
        cases = [
            (QUIET_INI.replace("[switch]\n", "[switch]\nbogus = 1\n"), "{path}: [switch] bogus: unknown key"),
            (QUIET_INI.replace("port = 2427", "port = 99999"), "{path}: [gateway:rgw1] port: must be between"),
            (QUIET_INI + "\n[nonsense]\nx = 1\n", "{path}: [nonsense]: unknown section"),
            (QUIET_INI.replace("numbers = 1001-1008", "numbers = 1001-1007"), "{path}: [gateway:rgw1] numbers: 7 numbers"),
            (QUIET_INI.replace("interface = 127.0.0.1", "interface = 10.1.2.300"),
             "{path}: [switch] interface: '10.1.2.300' is not an IP address"),
            ("[switch\n", "[{path}]: not a valid INI file"),
        ]
        for text, message in cases:
            path = self.write(text)
            with self.assertRaises(SystemExit) as caught:
                parse("--config", path)
            self.assertIsInstance(caught.exception.code, str)
            self.assertTrue(str(caught.exception.code).startswith("mgcpswitch: " + message.format(path=path)),
                            caught.exception.code)
            self.assertNotIn("\n", caught.exception.code)
        path = os.path.join(self.directory, "latin1.ini")
        with open(path, "wb") as f:
            f.write(b"[switch]\n# caf\xe9\nport = 2727\n")
        with self.assertRaises(SystemExit) as caught:
            parse("--config", path)
        self.assertEqual(caught.exception.code,
                         f"mgcpswitch: [{path}]: not UTF-8 text: byte 0xe9 on line 2 cannot be decoded")
        missing = os.path.join(self.directory, "missing.ini")
        with self.assertRaises(SystemExit) as caught:
            parse("--config", missing)
        self.assertEqual(caught.exception.code,
                         f"mgcpswitch: [{missing}]: cannot read the configuration: No such file or directory")
        # Bad command-line values are usage errors.
        self.assertRaises(UsageError, parse, "--frobnicate")
        with self.assertRaises(UsageError) as usage:
            parse("--interface", "localhost")
        self.assertEqual(str(usage.exception), "--interface: 'localhost' is not an IP address")

    def test_plugin_is_found(self) -> None:
        """twistd finds the mgcpswitch plugin, which points at mgcpswitch.tap."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("mgcpswitch", makers)
        self.assertIsInstance(makers["mgcpswitch"].options(), tap.Options)


def names(service: MultiService) -> list[str]:
    return [child.name for child in service]


class BuildSwitchTests(Files):
    """build_switch on a MemoryReactor: nothing listens on a real socket."""

    def test_children(self) -> None:
        """Call control first, then a named service per simulated gateway, then the web admin."""
        settings = parse_settings(QUIET_INI)
        top = tap.build_switch(MemoryReactor(), settings)
        self.assertIsInstance(top, MultiService)
        self.assertEqual(names(top), ["call-control", "gateway:rgw1", "gateway:rgw2", "web"])
        control = top.getServiceNamed("call-control")
        self.assertIsInstance(control, CallControlService)
        self.assertIs(control.settings, settings)
        self.assertIsInstance(top.getServiceNamed("web").factory, Site)
        self.assertFalse(top.running)

    def test_simulated_gateways_follow_the_settings(self) -> None:
        """Each simulated gateway: its section's domain, lines, address and port; the call agent's address."""
        settings = parse_settings(
            QUIET_INI.replace("address = 127.0.0.1\nport = 2428\nlines = 8\nnumbers = 2001-2008",
                              "address = 127.0.0.3\nport = 2500\nlines = 3\nnumbers = 2001-2003")
            .replace("interface = 127.0.0.1\nport = 2727", "interface = 127.0.0.1\nport = 2900")
            + "media = yes\nrtp = no\n"
        )
        top = tap.build_switch(MemoryReactor(), settings, web=False)
        self.assertEqual(names(top), ["call-control", "gateway:rgw1", "gateway:rgw2"])
        configs = {name: top.getServiceNamed(f"gateway:{name}").gateway.config for name in ("rgw1", "rgw2")}
        for name, (address, port, lines) in {"rgw1": ("127.0.0.1", 2427, 8), "rgw2": ("127.0.0.3", 2500, 3)}.items():
            config = configs[name]
            self.assertEqual(
                (config.domain, config.interface, config.port, config.lines, config.call_agent),
                (name, address, port, lines, ("127.0.0.1", 2900)),
            )
            self.assertEqual((config.restart_delay, config.media, config.rtp), (0.0, True, False))
            self.assertIsInstance(top.getServiceNamed(f"gateway:{name}"), GatewayService)

    def test_call_agent_address_for_wildcard_interfaces(self) -> None:
        """
        A call agent bound to all interfaces is reached on loopback by the
        simulated gateways; on :: (dual stack) an IPv4 gateway (rgw2 is on
        127.0.0.3) aims at 127.0.0.1: its IPv4 socket cannot reach ::1.
        """
        for interface, host in (("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "127.0.0.1"),
                                ("127.0.0.7", "127.0.0.7")):
            settings = parse_settings(QUIET_INI.replace("interface = 127.0.0.1", f"interface = {interface}"))
            top = tap.build_switch(MemoryReactor(), settings, web=False)
            self.assertEqual(top.getServiceNamed("gateway:rgw2").gateway.config.call_agent, (host, 2727), interface)

    def test_without_simulator_web_or_with_demo(self) -> None:
        """simulate=False: no gateway services; web=False: no admin; demo=True: the demo last; parent."""
        settings = parse_settings(QUIET_INI)
        self.assertEqual(names(tap.build_switch(MemoryReactor(), settings, simulate=False)), ["call-control", "web"])
        self.assertEqual(names(tap.build_switch(MemoryReactor(), settings, web=False, simulate=False)),
                         ["call-control"])
        parent = MultiService()
        top = tap.build_switch(MemoryReactor(), settings, demo=True, parent=parent)
        self.assertEqual(names(top), ["call-control", "gateway:rgw1", "gateway:rgw2", "web", "demo"])
        self.assertIsInstance(top.getServiceNamed("demo"), DemoService)
        self.assertEqual(list(parent), [top])

    def test_runs_on_the_memory_network(self) -> None:
        """Started on a MemoryReactor, the switch it builds registers both gateways; stopping leaves no timer."""
        clock = MemoryReactor()
        top = tap.build_switch(clock, parse_settings(QUIET_INI), web=False)
        top.startService()
        clock.network.run(1.0)
        control = top.getServiceNamed("call-control")
        self.assertEqual([(g.name, g.state.value) for g in control.list_gateways()], [("rgw1", "up"), ("rgw2", "up")])
        self.assertEqual({e.state.value for e in control.list_endpoints()}, {"idle"})
        self.assertEqual(len(control.list_endpoints()), 16)
        d = top.stopService()
        clock.network.pump()
        self.successResultOf(d)
        self.assertEqual(clock.network.ports, {})
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_unknown_plugins(self) -> None:
        """An unknown dial plan or observer plugin is a ConfigError naming its key, it and what exists."""
        for key, value, interface in (("dial_plan", "nope-plan", "IDialPlanFactory"),
                                      ("observers", "cdr-sqlite, nope-observer", "ICallObserverFactory")):
            settings = parse_settings(QUIET_INI.replace("observers =\n", f"{key} = {value}\n"))
            with self.assertRaises(ConfigError) as caught:
                tap.build_switch(MemoryReactor(), settings)
            self.assertEqual(caught.exception.path, ("switch", key))
            message = str(caught.exception)
            self.assertIn(interface, message)
            self.assertIn(repr(value.split(", ")[-1]), message)
            self.assertIn("available: ", message)

    def test_plugin_sections(self) -> None:
        """
        Every [plugin:NAME] section is read through its plugin's declared
        keys before anything is built: a bad value, a key the plugin does
        not declare (a typo that once sent CDRs elsewhere), a missing
        required key, a section naming no plugin (enabled or not) is a
        ConfigError naming the section and key.
        """
        cdr = QUIET_INI.replace("observers =\n", "observers = cdr-sqlite\n")
        cases = [
            (cdr + "[plugin:cdr-sqlite]\nbatch_size = lots\n", ("plugin:cdr-sqlite", "batch_size"),
             "expected an integer, not 'lots'"),
            (cdr + "[plugin:cdr-sqlite]\npth = /var/lib/cdr.sqlite\n", ("plugin:cdr-sqlite", "pth"),
             "unknown key; known keys are: batch_size, flush_interval, path"),
            (cdr + "[plugin:cdr-sqlite]\nflush_interval = 0\n", ("plugin:cdr-sqlite", "flush_interval"),
             "must be at least 0.001, not 0"),
            (QUIET_INI + "[plugin:webhook]\nurl = ftp://example.net/\n", ("plugin:webhook", "url"),
             "not an http:// or https:// URL"),  # checked though not enabled
            (QUIET_INI.replace("observers =\n", "observers = webhook\n"), ("plugin:webhook", "url"),
             "required but missing"),
            (QUIET_INI + "[plugin:webhok]\nurl = http://example.net/\n", ("plugin:webhok",),
             "no plugin named 'webhok'; available: cdr-sqlite, static, webhook"),
            (QUIET_INI + "[plugin:static]\nnumbers = 1\n", ("plugin:static", "numbers"),
             "unknown key; this section has no keys"),
        ]
        for text, path, message in cases:
            with self.assertRaises(ConfigError) as caught:
                tap.build_switch(MemoryReactor(), parse_settings(text))
            self.assertEqual(caught.exception.path, path, text)
            self.assertIn(message, caught.exception.message)

    def test_plugin_section_values_reach_the_plugin(self) -> None:
        """The values read from a plugin's section are the ones its object is built with."""
        settings = parse_settings(
            QUIET_INI.replace("observers =\n", "observers = cdr-sqlite\n")
            + "[plugin:cdr-sqlite]\npath = elsewhere.sqlite\nbatch_size = 7\n"
        )
        plugins = enable(settings, PluginContext(MemoryReactor(), settings))
        [writer] = plugins.observers
        self.assertIsInstance(writer, SQLiteCDRWriter)
        store = writer.store
        self.assertEqual((store.path, store.batch_size, store.flush_interval), ("elsewhere.sqlite", 7, 1.0))

    def test_bad_listen_description(self) -> None:
        """
        A [web] listen that strports cannot parse, or whose key file is
        missing, is [web] listen (found as the file is read).
        """
        missing = os.path.join(self.directory, "missing.pem")
        for listen, reason in (("tcp:abc:interface=127.0.0.1", "invalid literal for int()"),
                               ("bogus:1:interface=127.0.0.1", "Unknown endpoint type: 'bogus'"),
                               (f"ssl:8443:interface=127.0.0.1:privateKey={missing}",
                                "No such file or directory")):
            with self.assertRaises(ConfigError) as caught:
                parse_settings(QUIET_INI.replace("tcp:8080:interface=127.0.0.1", listen))
            self.assertEqual(caught.exception.path, ("web", "listen"))
            self.assertIn(reason, caught.exception.message)

    def test_make_service_ends_with_one_line(self) -> None:
        """
        makeService (what twistd runs) turns a ConfigError found while
        building (a plugin's value, an unknown plugin) into one line naming
        the file, section and key, and status 1: no traceback.
        """
        cases = [
            (QUIET_INI.replace("observers =\n", "observers = cdr-sqlite\n") + "[plugin:cdr-sqlite]\nbatch_size = lots\n",
             "[plugin:cdr-sqlite] batch_size: expected an integer, not 'lots'"),
            (QUIET_INI.replace("observers =\n", "observers = nope\n"),
             "[switch] observers: no ICallObserverFactory plugin named 'nope'; available: cdr-sqlite, webhook"),
            # The store is opened at start: a directory that does not exist stops it (issue 16).
            (QUIET_INI.replace("url = memory", f"url = sqlite:{self.directory}/no/such/x.sqlite"),
             f"[store] url: cannot use 'sqlite:{self.directory}/no/such/x.sqlite': "
             f"{self.directory}/no/such/x.sqlite: unable to open database file"),
        ]
        for text, message in cases:
            path = self.write(text)
            options = parse("--config", path)
            with self.assertRaises(SystemExit) as caught:
                tap.makeService(options)
            self.assertEqual(caught.exception.code, f"mgcpswitch: {path}: {message}")

    def test_unknown_profile(self) -> None:
        """An unknown gateway profile is a ConfigError naming the gateway, the profile and the known ones."""
        settings = parse_settings(QUIET_INI.replace("numbers = 2001-2008", "numbers = 2001-2008\nprofile = fancy"))
        with self.assertRaises(ConfigError) as caught:
            tap.build_switch(MemoryReactor(), settings)
        self.assertEqual(caught.exception.path, ("gateway:rgw2", "profile"))
        self.assertIn("no gateway profile 'fancy'; available: ", str(caught.exception))
        self.assertIn("default", str(caught.exception))
        self.assertIn("osmo-mgw", str(caught.exception))

    def test_simulated_gateway_with_named_endpoints(self) -> None:
        """A simulated gateway must have lines aaln/1..N: other endpoint names are refused."""
        settings = parse_settings(QUIET_INI.replace(
            "lines = 8\nnumbers = 1001-1008", "endpoints = aaln/1, aaln/3\nnumbers = 1001, 1003"
        ))
        with self.assertRaises(ConfigError) as caught:
            tap.build_switch(MemoryReactor(), settings)
        self.assertEqual(caught.exception.path, ("gateway:rgw1", "endpoints"))
        self.assertIn("lines = N", str(caught.exception))

    def test_make_service_flags(self) -> None:
        """makeService maps --demo and --no-simulator to the services it builds (nothing is started)."""
        path = self.write(QUIET_INI)
        self.assertEqual(names(tap.makeService(parse("--config", path))),
                         ["call-control", "gateway:rgw1", "gateway:rgw2", "web"])
        self.assertEqual(names(tap.makeService(parse("--config", path, "--no-simulator"))), ["call-control", "web"])
        self.assertEqual(names(tap.makeService(parse("--config", path, "--demo")))[-1], "demo")

    def test_only_twistd_freezes_the_startup_objects(self) -> None:
        """
        The twistd entry point's switch freezes what is alive once the
        reactor runs (gc.freeze); a switch built for tests never does.
        """
        path = self.write(QUIET_INI)
        self.assertTrue(tap.makeService(parse("--config", path)).freeze_gc)

        class Reactor(MemoryReactor):
            def __init__(self) -> None:
                super().__init__()
                self.when_running: list[Any] = []

            def callWhenRunning(self, f: Any, *args: Any) -> None:  # noqa: N802
                self.when_running.append(f)

        for freeze in (False, True):
            reactor = Reactor()
            switch = tap.build_switch(reactor, parse_settings(QUIET_INI), simulate=False, web=False)
            switch.freeze_gc = freeze
            switch.startService()
            self.addCleanup(switch.stopService)
            self.assertEqual(reactor.when_running, [tap.freeze_startup_objects] if freeze else [])

    def test_freezing_makes_young_collections_rarer(self) -> None:
        """
        Once the startup objects are frozen, young collections wait for
        YOUNG_COLLECTION allocations (CPython's 700 made a full collection
        every few seconds under load); the older thresholds are kept.
        """
        done: list[Any] = []
        self.patch(tap.gc, "collect", lambda *a: done.append("collect"))
        self.patch(tap.gc, "freeze", lambda: done.append("freeze"))
        self.patch(tap.gc, "get_threshold", lambda: (700, 10, 10))
        self.patch(tap.gc, "set_threshold", lambda *t: done.append(t))
        tap.freeze_startup_objects()
        self.assertEqual(done, ["collect", "freeze", (tap.YOUNG_COLLECTION, 10, 10)])
        self.assertGreater(tap.YOUNG_COLLECTION, 700)


class PortInUse(TestCase):
    """
    A port the configuration names is taken (by the test, on 127.0.0.1),
    with the real reactor: starting fails with a ConfigError naming the
    section and key (or, from makeService, ends with that one line), and
    stopping the switch stops what had started.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-ports-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.text, self.ports = switch_ini()

    def hold(self, kind: int) -> int:
        """A loopback port this test holds until it ends: UDP bound, or TCP listening."""
        held = socket.socket(socket.AF_INET, kind)
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            held.listen(1)
        return int(held.getsockname()[1])

    def settings_with(self, role: str, port: int) -> tuple[str, Any]:
        """The configuration, with the port of C{role} (agent, gw1, web) replaced: its file and settings."""
        old = self.ports[role]
        text = self.text.replace(f"port = {old}\n", f"port = {port}\n").replace(f"tcp:{old}:", f"tcp:{port}:")
        self.assertNotEqual(text, self.text)
        path = os.path.join(self.directory, "switch.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path, parse_settings(text, path)

    async def test_agent_port_under_twistd(self) -> None:
        """makeService's switch ends with one line naming [switch] port when the call agent's UDP port is taken."""
        held = self.hold(socket.SOCK_DGRAM)
        path, _ = self.settings_with("agent", held)
        service = tap.makeService(parse("--config", path, "--no-simulator"))
        service.freeze_gc = False  # this is the test process: keep collecting
        self.assertTrue(service.exit_on_error)
        service.privilegedStartService()  # as twistd does: the admin listens here
        with self.assertRaises(SystemExit) as caught:
            service.startService()
        self.assertEqual(
            caught.exception.code,
            f"mgcpswitch: {path}: [switch] port: cannot listen on 127.0.0.1:{held}: Address already in use",
        )
        await service.stopService()
        self.assertEqual([child.name for child in service if child.running], [])
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(probe.close)
        self.assertRaises(ConnectionRefusedError, probe.connect, ("127.0.0.1", self.ports["web"]))  # admin closed

    def start_refused(self, settings: Any, **options: bool) -> tuple[ConfigError, tap.SwitchService]:
        """build_switch on the real reactor, started: the ConfigError it fails with, and the switch."""
        switch = tap.build_switch(reactor, settings, **options)
        with self.assertRaises(ConfigError) as caught:
            switch.startService()
        return caught.exception, switch

    async def test_admin_port(self) -> None:
        """The admin's TCP port taken: [web] listen; the call agent, started first, is stopped again."""
        held = self.hold(socket.SOCK_STREAM)
        error, switch = self.start_refused(self.settings_with("web", held)[1], simulate=False)
        self.assertEqual(error.path, ("web", "listen"))
        self.assertEqual(error.message, f"cannot listen on 127.0.0.1:{held}: Address already in use")
        self.assertTrue(switch.getServiceNamed("call-control").running)
        await switch.stopService()
        self.assertFalse(switch.getServiceNamed("call-control").running)

    async def test_simulated_gateway_port(self) -> None:
        """A simulated gateway's UDP port taken: [gateway:NAME] port."""
        held = self.hold(socket.SOCK_DGRAM)
        error, switch = self.start_refused(self.settings_with("gw1", held)[1], web=False)
        self.assertEqual(error.path, ("gateway:rgw1", "port"))
        await switch.stopService()

    async def test_interface_not_on_this_host(self) -> None:
        """An interface address this host does not have: [switch] interface (nothing is sent)."""
        try:
            with open("/proc/sys/net/ipv4/ip_nonlocal_bind", encoding="ascii") as f:
                if f.read().strip() != "0":
                    raise SkipTest("this host lets sockets bind addresses it does not have")
        except OSError:
            pass
        settings = parse_settings(self.text.replace("interface = 127.0.0.1", "interface = 192.0.2.1"))
        error, switch = self.start_refused(settings, simulate=False, web=False)
        self.assertEqual(error.path, ("switch", "interface"))
        self.assertIn("cannot listen on 192.0.2.1:", error.message)
        await switch.stopService()


# ---------------------------------------------------------------------------
# twistd, for real


def twistd_command() -> list[str]:
    """The twistd of the Python running the tests (its console script, or the module if there is none)."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class _Twistd(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.reason: Failure | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason


class Twistd(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-twistd-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def log(self) -> str:
        try:
            with open(os.path.join(self.directory, "twistd.log"), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return "(no log)"

    async def get_json(self, url: str) -> Any:
        response = await treq.get(url, pool=self.pool, timeout=2, reactor=reactor)
        self.assertEqual(response.code, 200, url)
        return await response.json()

    async def stop(self, process: Any, twistd: _Twistd) -> None:
        """SIGINT by its pid; SIGTERM, then SIGKILL, should it not end within 10 s of each."""
        for name in ("INT", "TERM", "KILL"):
            if twistd.reason is not None:
                break
            process.signalProcess(name)
            try:
                await wait_until(lambda: twistd.reason is not None, 10, f"twistd to end after SIG{name}")
            except AssertionError:
                continue
        assert twistd.reason is not None, "twistd did not end"

    async def run_to_the_end(self, config_text: str) -> tuple[str, int | None, bytes]:
        """Run C{twistd -n mgcpswitch --config FILE}, logging to its stdout; its file, exit code and output."""
        config = os.path.join(self.directory, f"switch-{len(os.listdir(self.directory))}.ini")
        with open(config, "w", encoding="utf-8") as f:
            f.write(config_text)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        command = twistd_command() + ["-n", "--pidfile=", "mgcpswitch", "--config", config]
        twistd = _Twistd()
        process = reactor.spawnProcess(twistd, command[0], command, env=env, path=self.directory)
        self.addCleanup(self.stop, process, twistd)  # should it not end by itself
        await wait_until(lambda: twistd.reason is not None, 20, "twistd to end")
        assert twistd.reason is not None
        return config, getattr(twistd.reason.value, "exitCode", 0), twistd.output

    async def test_twistd_ends_with_one_line(self) -> None:
        """
        twistd -n mgcpswitch with a bad plugin value, or with the call
        agent's port taken (by this test), prints one line naming the file,
        section and key, no traceback, and exits with status 1.
        """
        text, ports = switch_ini()
        bad = text.replace("observers = \n", "observers = cdr-sqlite\n") + "[plugin:cdr-sqlite]\nbatch_size = lots\n"
        config, code, output = await self.run_to_the_end(bad)
        self.assertEqual(
            (code, output.decode()),
            (1, f"mgcpswitch: {config}: [plugin:cdr-sqlite] batch_size: expected an integer, not 'lots'\n"),
        )

        held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        config, code, output = await self.run_to_the_end(
            text.replace(f"port = {ports['agent']}\n", f"port = {port}\n")
        )
        self.assertEqual(code, 1, output)
        message = f"mgcpswitch: {config}: [switch] port: cannot listen on 127.0.0.1:{port}: Address already in use"
        lines = [line for line in output.decode().splitlines() if "mgcpswitch: " in line]
        self.assertEqual(len(lines), 1, output)
        self.assertTrue(lines[0].endswith(message), output)  # after the log's time stamp
        self.assertNotIn(b"Traceback", output)

    async def test_twistd_mgcpswitch(self) -> None:
        """
        twistd -n mgcpswitch --config FILE runs the switch: its gateways
        register, the admin answers, a CDR is written; SIGINT stops it cleanly.
        """
        cdr = os.path.join(self.directory, "cdr.sqlite")
        text, ports = switch_ini(cdr_path=cdr)
        config = os.path.join(self.directory, "switch.ini")
        with open(config, "w") as f:
            f.write(text)
        url = f"http://127.0.0.1:{ports['web']}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        command = twistd_command() + [
            "-n", "--pidfile=", "--logfile", os.path.join(self.directory, "twistd.log"),
            "mgcpswitch", "--config", config,
        ]
        twistd = _Twistd()
        process = reactor.spawnProcess(twistd, command[0], command, env=env, path=self.directory)
        self.addCleanup(self.stop, process, twistd)  # whatever happens below, it is stopped

        async def both_up() -> bool:
            if twistd.reason is not None:
                raise AssertionError(f"twistd ended early: {twistd.reason.value}\n{twistd.output!r}\n{self.log()}")
            try:
                data = await self.get_json(url + "/api/gateways")
            except Exception:
                return False  # not listening yet
            return [(g["name"], g["state"]) for g in data["gateways"]] == [("rgw1", "up"), ("rgw2", "up")]

        deadline = reactor.seconds() + 15
        while not await both_up():
            self.assertLess(reactor.seconds(), deadline, f"the gateways were not up in time:\n{self.log()}")
            await deferLater(reactor, 0.05, lambda: None)

        endpoints = (await self.get_json(url + "/api/endpoints"))["endpoints"]
        self.assertEqual(len(endpoints), 16)
        self.assertEqual({(e["state"], e["hook"]) for e in endpoints}, {("idle", "on")})
        self.assertEqual([e["number"] for e in endpoints][:2], ["1001", "1002"])

        # A call rung and hung up through the API leaves its CDR in the file.
        response = await treq.post(url + "/api/calls", json={"from": "aaln/1@rgw1", "to": "aaln/1@rgw2"},
                                   pool=self.pool, timeout=5, reactor=reactor)
        self.assertEqual(response.code, 201)
        call_id = (await response.json())["call_id"]
        response = await treq.delete(f"{url}/api/calls/{call_id}", pool=self.pool, timeout=5, reactor=reactor)
        self.assertEqual((response.code, (await response.json())["cause"]), (200, "admin"))

        await self.stop(process, twistd)
        reason = twistd.reason
        assert reason is not None
        log = self.log()
        # twistd ends itself with the signal that stopped it once shut down
        # (twisted.application.app._exitWithSignal): clean is SIGINT after "Server Shut Down."
        if reason.check(ProcessTerminated):
            self.assertEqual((reason.value.signal, reason.value.exitCode), (signal.SIGINT, None), log)
        else:
            self.assertTrue(reason.check(ProcessDone), reason)
        self.assertIn(f"call agent listening on 127.0.0.1:{ports['agent']} for 2 gateway(s)", log)
        self.assertIn("Received SIGINT, shutting down.", log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)
        self.assertEqual(twistd.output, b"")  # everything went to the log file
        with sqlite3.connect(cdr) as db:
            rows = db.execute("SELECT call_id, caller, cause FROM cdr").fetchall()
        self.assertEqual(rows, [(call_id, "1001", "admin")])
        self.assertRaises(ConnectionRefusedError, socket.create_connection, ("127.0.0.1", ports["web"]))
