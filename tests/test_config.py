"""
The INI configuration: the shipped file and the embedded defaults load and
mean the same switch, the shipped file documents every key; every bad
value, unknown key, duplicate or dangling reference is an error naming its
section and key.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.config import (
    DEFAULT_INI,
    KEYS,
    REQUIRED,
    Key,
    Settings,
    integer,
    load_settings,
    parse_settings,
    read_keys,
)
from mgcpswitch.errors import ConfigError
from mgcpswitch.interfaces import ICallObserverFactory, IDialPlanFactory
from mgcpswitch.plugin import available, read_section

HERE = os.path.dirname(os.path.abspath(__file__))
ETC_INI = os.path.join(HERE, "..", "etc", "mgcpswitch.ini")


def plugin_keys() -> dict[str, dict[str, Key]]:
    """The declared keys of every built-in dial-plan and observer plugin, by section."""
    factories = {**available(IDialPlanFactory), **available(ICallObserverFactory)}
    return {f"plugin:{name}": dict(factory.keys) for name, factory in factories.items()}


def documented_keys(path: str) -> dict[str, set[str]]:
    """
    The keys a commented INI file shows, by section: C{key = value} lines,
    commented out (C{# key = value}) or not, under C{[section]} headers,
    commented out or not.  Gateway and trunk sections count as
    C{gateway:NAME} and C{trunk:NAME}.
    """
    found: dict[str, set[str]] = {}
    section = ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            header = re.match(r"#?\s*\[([^\]]+)\]\s*(?:[;#].*)?$", line.strip())
            if header:
                section = re.sub(r"^line:.*", "line:ENDPOINT", re.sub(r"^(gateway|trunk):.*", r"\1:NAME", header.group(1)))
                continue
            key = re.match(r"#?\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)", line.strip())
            if key and section:
                found.setdefault(section, set()).add(key.group(1))
    return found


class Loading(SynchronousTestCase):
    def test_shipped_file_and_defaults(self) -> None:
        """
        etc/mgcpswitch.ini and the embedded defaults describe the same
        switch: every part of the settings is equal, and the plugin
        sections of the file, read through their plugins' keys, equal the
        plugins' defaults.
        """
        shipped = load_settings(ETC_INI)
        defaults = load_settings(None)
        self.assertEqual(replace(shipped, source="", plugins={}), replace(defaults, source="", plugins={}))
        self.assertEqual(defaults.plugins, {})
        for name, items in shipped.plugins.items():
            factory = {**available(IDialPlanFactory), **available(ICallObserverFactory)}[name]
            self.assertEqual(read_section(factory, items), read_section(factory, {}), name)
        self.assertEqual(defaults.gateway("RGW1").numbers[:2], ("1001", "1002"))
        self.assertIn("[simulator]", DEFAULT_INI)

    def test_every_key_is_documented(self) -> None:
        """
        etc/mgcpswitch.ini shows every key of every section (those of the
        built-in plugins too), set or commented out, and no key that does
        not exist.
        """
        expected = {section: set(keys) for section, keys in {**KEYS, **plugin_keys()}.items() if keys}
        documented = documented_keys(ETC_INI)
        missing = {s: sorted(keys - documented.get(s, set())) for s, keys in expected.items()}
        self.assertEqual({s: k for s, k in missing.items() if k}, {})
        # [dialplan] holds patterns besides digit_map: only the others must exist.
        documented["dialplan"] = {k for k in documented.get("dialplan", set()) if k == "digit_map"}
        unknown = {s: sorted(keys - expected.get(s, set())) for s, keys in documented.items()}
        self.assertEqual({s: k for s, k in unknown.items() if k}, {})

    def test_the_guard_sees_a_missing_key(self) -> None:
        """The documentation check reads commented keys and would see one missing."""
        with open(ETC_INI, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("# users_file = ", text)
        with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
            f.write(text.replace("# users_file = ", "# users_fil = "))
        self.addCleanup(os.unlink, f.name)
        documented = documented_keys(f.name)
        self.assertNotIn("users_file", documented["web"])
        self.assertIn("users_fil", documented["web"])
        self.assertIn("batch_size", documented["plugin:cdr-sqlite"])
        self.assertIn("url", documented["plugin:webhook"])

    def test_empty_file_is_the_defaults_of_each_value(self) -> None:
        """The defaults of the keys are those of the settings' values: an empty file is Settings()."""
        self.assertEqual(parse_settings("", "<empty>"), Settings(source="<empty>"))

    def test_missing_file(self) -> None:
        """A file that cannot be read is a ConfigError naming it."""
        error = self.assertRaises(ConfigError, load_settings, "/nonexistent/mgcpswitch.ini")
        self.assertIn("/nonexistent/mgcpswitch.ini", str(error))

    def test_not_utf8(self) -> None:
        """A file that is not UTF-8 is a ConfigError naming it and the line, not a UnicodeDecodeError."""
        with tempfile.NamedTemporaryFile("wb", suffix=".ini", delete=False) as f:
            f.write("[switch]\nport = 2727\n# Système\n".encode("latin-1"))
        self.addCleanup(os.unlink, f.name)
        error = self.assertRaises(ConfigError, load_settings, f.name)
        self.assertEqual(error.path, (f.name,))
        self.assertEqual(error.message, "not UTF-8 text: byte 0xe8 on line 3 cannot be decoded")
        with open(f.name, "wb") as out:  # UTF-8 with a byte-order mark is UTF-8
            out.write("\ufeff[switch]\nport = 2800\n# Système\n".encode("utf-8"))
        self.assertEqual(load_settings(f.name).switch.port, 2800)

    def test_what_is_accepted(self) -> None:
        """
        What the checks must not refuse: two gateways on one address at two
        ports, a route to an endpoint of a configured gateway (any case), a
        route to an unconfigured gateway when gateways are learned, empty
        optional values, an interface for all addresses.
        """
        settings = parse_settings(
            "[switch]\ninterface =\n"
            "[transactions]\ngive_up = none\nmax_retransmissions =\n"
            "[gateway:a]\naddress = 10.0.0.1\nport = 2427\nlines = 2\nnumbers = 1001-1002\n"
            "[gateway:b]\naddress = 10.0.0.1\nport = 2428\nendpoints = aaln/1, aaln/7\nnumbers = 2001, 2007\n"
            "[dialplan]\n9xxx = AALN/7@B\ndigit_map = (xxxx|9xxx)\n"
        )
        self.assertEqual(settings.switch.interface, "")
        self.assertEqual((settings.transactions.give_up, settings.transactions.max_retransmissions), (None, None))
        self.assertEqual([g.port for g in settings.gateways], [2427, 2428])
        self.assertEqual(settings.dialplan, {"9xxx": "AALN/7@B", "digit_map": "(xxxx|9xxx)"})
        learned = parse_settings("[switch]\ndynamic_gateways = yes\n[dialplan]\n9xxx = aaln/1@later\n")
        self.assertEqual(learned.dialplan, {"9xxx": "aaln/1@later"})


class Keys(SynchronousTestCase):
    """read_keys: the one reader of sections, the plugins' included."""

    KEYS = {"size": Key(integer(1, 10), 5), "name": Key(str.strip, REQUIRED, "who it is")}

    def test_values_and_defaults(self) -> None:
        """Given keys are read, absent ones take their default."""
        self.assertEqual(read_keys("s", {"name": " x "}, self.KEYS), {"size": 5, "name": "x"})
        self.assertEqual(read_keys("s", {"name": "x", "size": "10"}, self.KEYS), {"size": 10, "name": "x"})

    def test_errors(self) -> None:
        """Unknown, missing and bad keys name the section and key."""
        cases = [
            ({"name": "x", "sise": "1"}, ("s", "sise"), "unknown key; known keys are: name, size"),
            ({}, ("s", "name"), "required but missing: who it is"),
            ({"name": "x", "size": "11"}, ("s", "size"), "must be between 1 and 10, not 11"),
            ({"name": "x", "size": "lots"}, ("s", "size"), "expected an integer, not 'lots'"),
        ]
        for items, path, message in cases:
            error = self.assertRaises(ConfigError, read_keys, "s", items, self.KEYS)
            self.assertEqual((error.path, error.message), (path, message))
        error = self.assertRaises(ConfigError, read_keys, "s", {"x": "1"}, {})
        self.assertEqual(error.message, "unknown key; this section has no keys")


BAD = [
    ("[switch]\nport = x", "[switch] port", "integer"),
    ("[switch]\nport = 70000", "[switch] port", "between 0 and 65535, not 70000"),
    ("[switch]\nprot = 1", "[switch] prot", "unknown key"),
    ("[switch]\nladder = maybe", "[switch] ladder", "yes or no"),
    ("[switch]\ndigit_map = (1%)", "[switch] digit_map", "bad digit map"),
    ("[switch]\nkeepalive_interval = -1", "[switch] keepalive_interval", "at least"),
    ("[switch]\nreceive_buffer = -1", "[switch] receive_buffer", "at least 0"),
    ("[transactions]\nmax2 = 3", "[transactions]", "Max2"),
    ("[transactions]\nt_hist = soon", "[transactions] t_hist", "number"),
    ("[transactions]\nfoo = 1", "[transactions] foo", "unknown key"),
    ("[web]\nlisten = tcp:8080:interface=0.0.0.0", "[web] listen", "loopback"),
    ("[web]\nport = 1", "[web] port", "unknown key"),
    ("[gateway:g]\nlines = 2", "[gateway:g] address", "missing"),
    ("[gateway:g]\naddress = gw.example.net", "[gateway:g] address", "not an IP address"),
    ("[gateway:g]\naddress = 10.0.0.1\nlines = two", "[gateway:g] lines", "integer"),
    ("[gateway:g]\naddress = 10.0.0.1\nlines = 2\nnumbers = 1-5", "[gateway:g] numbers", "5 numbers"),
    ("[gateway:g]\naddress = 10.0.0.1\nnumbers = 10-x", "[gateway:g] numbers", "bad number"),
    ("[gateway:g]\naddress = 10.0.0.1\nallowed = 10.0.0.300", "[gateway:g] allowed", "bad address"),
    ("[gateway:g]\naddress = 10.0.0.1\nlines = 1\nendpoints = a/1", "[gateway:g] endpoints", "not both"),
    ("[gateway:g]\naddress = 10.0.0.1\nendpoints = a/*", "[gateway:g] endpoints", "bad endpoint"),
    ("[gateway:g]\naddress = 10.0.0.1\ncolour = red", "[gateway:g] colour", "unknown key"),
    ("[gateway:g]\naddress=10.0.0.1\n[gateway:G]\naddress=10.0.0.2", "[gateway:G]", "twice"),
    ("[simulator]\ngateways = nope", "[simulator] gateways", "no [gateway:nope]"),
    ("[demo]\nunknown_number_share = 2", "[demo] unknown_number_share", "between 0 and 1"),
    ("[demo]\ncall_interval = 0", "[demo] call_interval", "at least 0.1"),
    ("[dialplan]\n9xxx = not an endpoint", "[dialplan] 9xxx", "not an endpoint"),
    ("[switch]\ninterface = 10.1.2.300", "[switch] interface", "'10.1.2.300' is not an IP address"),
    ("[switch]\ninterface = localhost", "[switch] interface", "not an IP address"),
    ("[switch]\nobservers = cdr-sqlite, CDR-sqlite", "[switch] observers", "named twice"),
    ("[switch]\nport = 1\nport = 2", "[switch] port", "given twice (line 3)"),
    ("[switch]\n[switch]", "[switch]", "given twice"),
    ("[DEFAULT]\nport = 1", "[DEFAULT]", "unknown section"),
    ("[transactions]\ngive_up = later", "[transactions] give_up", "expected a number"),
    ("[transactions]\nt_max = nan", "[transactions] t_max", "finite"),
    ("[web]\nrealm =", "[web] realm", "must not be empty"),
    # The same directory number twice, in one gateway or in two.
    ("[gateway:g]\naddress = 10.0.0.1\nlines = 2\nnumbers = 1001, 1001", "[gateway:g] numbers",
     "1001 given twice"),
    ("[gateway:a]\naddress = 10.0.0.1\nlines = 2\nnumbers = 1001-1002\n"
     "[gateway:b]\naddress = 10.0.0.2\nlines = 2\nnumbers = 1002-1003",
     "[gateway:b] numbers", "1002 is already the number of aaln/2@a"),
    # Two gateways on one address and port.
    ("[gateway:a]\naddress = 10.0.0.1\n[gateway:b]\naddress = 10.0.0.1\nport = 2427", "[gateway:b] port",
     "10.0.0.1 port 2427 is already [gateway:a]'s"),
    ("[gateway:a]\naddress = ::1\nport = 2500\n[gateway:b]\naddress = 0:0::1\nport = 2500", "[gateway:b] port",
     "already [gateway:a]'s"),
    ("[gateway:g]\naddress = 10.0.0.1\nendpoints = aaln/1, AALN/1", "[gateway:g] endpoints", "named twice"),
    ("[simulator]\ngateways = g, g\n[gateway:g]\naddress = 127.0.0.1", "[simulator] gateways", "named twice"),
    # A route to a gateway or endpoint that is not configured, or to a wildcard.
    ("[gateway:g]\naddress = 10.0.0.1\nlines = 2\n[dialplan]\n9xxx = aaln/1@nowhere", "[dialplan] 9xxx",
     "no [gateway:nowhere] section for aaln/1@nowhere"),
    ("[gateway:g]\naddress = 10.0.0.1\nlines = 2\n[dialplan]\n9xxx = aaln/3@g", "[dialplan] 9xxx",
     "[gateway:g] has no endpoint aaln/3"),
    ("[gateway:g]\naddress = 10.0.0.1\nlines = 2\n[dialplan]\n9xxx = aaln/*@g", "[dialplan] 9xxx",
     "not an endpoint name"),
    ("[gateway:g]\naddress = 10.0.0.1\nlines = 2\n[dialplan]\n9%% = aaln/1@g", "[dialplan] 9%%",
     "bad digit map"),
    ("[dialplan]\ndigit_map = (1%)", "[dialplan] digit_map", "bad digit map"),
    # A cluster: only with a PostgreSQL store; a lease that can work; a name gateways can reach.
    ("[cluster]\nname = ca1@127.0.0.1", "[cluster]", "[store] url is 'sqlite:mgcpswitch.sqlite'"),
    ("[store]\nurl = postgresql:///x\n[cluster]\nlease = 2", "[cluster] lease",
     "heartbeat (0.25) < lease (2) < idle_timeout (1.5)"),
    ("[store]\nurl = postgresql:///x\n[cluster]\nname = a b", "[cluster] name", "notified entity"),
    ("[store]\nurl = postgresql:///x\n[switch]\ninterface = 0.0.0.0", "[cluster] name", "interface is '0.0.0.0'"),
    ("[store]\nurl = postgresql:///x\n[cluster]\nepoch = 3", "[cluster] epoch", "unknown key"),
    ("[nonsense]\n", "[nonsense]", "unknown section"),
    ("not an ini file", "[<string>]", "not a valid INI"),
]


class Cluster(SynchronousTestCase):
    def test_a_postgresql_store_makes_a_member(self) -> None:
        """A PostgreSQL store makes the agent a member, named by default after where it listens."""
        self.assertIsNone(parse_settings("").cluster)
        settings = parse_settings("[store]\nurl = postgresql:///mgcp\n[switch]\ninterface = ::1\nport = 2728\n")
        assert settings.cluster is not None
        self.assertEqual(settings.cluster.member_name(settings.switch), "mgcpswitch@[::1]:2728")
        named = parse_settings("[store]\nurl = postgres://db/mgcp\n[cluster]\nname = ca2@192.0.2.7:2727\nlease = 1.2\n")
        assert named.cluster is not None
        self.assertEqual((named.cluster.member_name(named.switch), named.cluster.lease), ("ca2@192.0.2.7:2727", 1.2))


class Errors(SynchronousTestCase):
    def test_each_error_names_section_and_key(self) -> None:
        """Each bad configuration raises ConfigError whose message starts with [section] key."""
        for text, where, what in BAD:
            error = self.assertRaises(ConfigError, parse_settings, text)
            self.assertTrue(str(error).startswith(where), (text, str(error)))
            self.assertIn(what, str(error), text)
