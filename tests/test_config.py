"""
The INI configuration: the shipped file and the embedded defaults load;
every bad value is an error naming its section and key.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch.config import DEFAULT_INI, load_settings, parse_settings
from mgcpswitch.errors import ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))


class Loading(SynchronousTestCase):
    def test_shipped_file_and_defaults(self) -> None:
        """etc/mgcpswitch.ini and the embedded defaults describe the same switch."""
        shipped = load_settings(os.path.join(HERE, "..", "etc", "mgcpswitch.ini"))
        defaults = load_settings(None)
        self.assertEqual(shipped.gateways, defaults.gateways)
        self.assertEqual(shipped.switch, defaults.switch)
        self.assertEqual(shipped.transactions, defaults.transactions)
        self.assertEqual(shipped.simulator, defaults.simulator)
        self.assertEqual(defaults.gateway("RGW1").numbers[:2], ("1001", "1002"))
        self.assertIn("[simulator]", DEFAULT_INI)

    def test_missing_file(self) -> None:
        """A file that cannot be read is a ConfigError naming it."""
        error = self.assertRaises(ConfigError, load_settings, "/nonexistent/mgcpswitch.ini")
        self.assertIn("/nonexistent/mgcpswitch.ini", str(error))


BAD = [
    ("[switch]\nport = x", "[switch] port", "integer"),
    ("[switch]\nport = 70000", "[switch] port", "out of range"),
    ("[switch]\nprot = 1", "[switch] prot", "unknown key"),
    ("[switch]\nladder = maybe", "[switch] ladder", "yes or no"),
    ("[switch]\ndigit_map = (1%)", "[switch] digit_map", "bad digit map"),
    ("[switch]\nkeepalive_interval = -1", "[switch] keepalive_interval", "at least"),
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
    ("[gateway:g]\naddress=10.0.0.1\n[gateway:G]\naddress=10.0.0.2", "[gateway:g]", "twice"),
    ("[simulator]\ngateways = nope", "[simulator] gateways", "no [gateway:nope]"),
    ("[demo]\nunknown_number_share = 2", "[demo] unknown_number_share", "between 0 and 1"),
    ("[dialplan]\n9xxx = not an endpoint", "[dialplan] 9xxx", "not an endpoint"),
    ("[nonsense]\n", "[nonsense]", "unknown section"),
    ("not an ini file", "[<string>]", "not a valid INI"),
]


class Errors(SynchronousTestCase):
    def test_each_error_names_section_and_key(self) -> None:
        """Each bad configuration raises ConfigError whose message starts with [section] key."""
        for text, where, what in BAD:
            error = self.assertRaises(ConfigError, parse_settings, text)
            self.assertTrue(str(error).startswith(where), (text, str(error)))
            self.assertIn(what, str(error), text)
