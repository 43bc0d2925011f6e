"""
Where the admin listens is decided on the endpoint Twisted builds from the
strports description, not on the text: a description naming a loopback
interface first and 0.0.0.0 last (the parser keeps the last) is refused
without authentication, by twistd's options, from the configuration file,
and by L{build_web_service}.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from mgcpswitch import tap
from mgcpswitch.config import DEFAULT_INI
from mgcpswitch.errors import ConfigError
from mgcpswitch.testing import MemoryReactor
from mgcpswitch.web import WebSettings, build_web_service
from mgcpswitch.web.listen import Transport, check_exposure, on_loopback, parse_listen

from .support.fake_control import FakeCallControl

BYPASS = "tcp:30081:interface=127.0.0.1:interface=0.0.0.0"


class Parsing(SynchronousTestCase):
    def test_what_the_endpoint_does(self) -> None:
        """Each description is placed where its endpoint listens, escapes and defaults included."""
        cases = [
            ("tcp:8080:interface=127.0.0.1", Transport.TCP, "127.0.0.1", 8080, True),
            (BYPASS, Transport.TCP, "0.0.0.0", 30081, False),
            ("tcp:8080:interface=0.0.0.0:interface=127.0.0.1", Transport.TCP, "127.0.0.1", 8080, True),
            (r"tcp:9090:interface=\:\:1", Transport.TCP, "::1", 9090, True),
            (r"tcp6:9090:interface=\:\:1", Transport.TCP, "::1", 9090, True),
            ("tcp6:9090", Transport.TCP, "::", 9090, False),
            ("tcp:8080", Transport.TCP, "", 8080, False),
            ("tcp:port=8081:interface=127.0.0.2", Transport.TCP, "127.0.0.2", 8081, True),
            ("tcp:8080:interface=localhost", Transport.TCP, "localhost", 8080, True),
            ("tcp:8080:interface=192.0.2.1", Transport.TCP, "192.0.2.1", 8080, False),
            ("unix:/run/mgcpswitch/admin.sock", Transport.UNIX, "/run/mgcpswitch/admin.sock", 0, True),
        ]
        for description, transport, interface, port, local in cases:
            listening = parse_listen(description)
            assert listening is not None, description
            self.assertEqual((listening.transport, listening.interface, listening.port), (transport, interface, port),
                             description)
            self.assertEqual(on_loopback(listening), local, description)

    def test_unusable(self) -> None:
        """A description the parser refuses is a ConfigError naming [web] listen."""
        for description in ("tcp:eighty", "nonsense-endpoint:1", "ssl:443:privateKey=/nonexistent/key.pem"):
            with self.assertRaises(ConfigError) as caught:
                parse_listen(description)
            self.assertEqual(caught.exception.path, ("web", "listen"))
            self.assertIn(repr(description), str(caught.exception))


class Exposure(SynchronousTestCase):
    def test_last_interface_wins(self) -> None:
        """The bypass of issue 16 (first interface=127.0.0.1, last 0.0.0.0) is refused without authentication."""
        with self.assertRaises(ConfigError) as caught:
            check_exposure(WebSettings(listen=BYPASS))
        message = str(caught.exception)
        self.assertIn("not on a loopback interface", message)
        self.assertIn("0.0.0.0 port 30081", message)
        listening = check_exposure(WebSettings(listen=BYPASS, tokens=("t0k3n",)))
        assert listening is not None
        self.assertEqual(listening.interface, "0.0.0.0")

    def test_build_web_service_refuses(self) -> None:
        """build_web_service will not build an exposed admin, whoever calls it."""
        self.assertRaises(
            ConfigError, build_web_service, FakeCallControl(), WebSettings(listen=BYPASS), MemoryReactor()
        )

    def test_loopback_allowed(self) -> None:
        """Loopback (v4, v6, v4-mapped) and UNIX sockets need no authentication."""
        for listen in ("tcp:0:interface=127.0.0.1", r"tcp6:0:interface=\:\:1",
                       r"tcp6:0:interface=\:\:ffff\:127.0.0.1", "unix:admin.sock"):
            self.assertIsNotNone(check_exposure(WebSettings(listen=listen)), listen)


class Twistd(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-listen-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def config(self, listen: str) -> str:
        path = os.path.join(self.directory, "switch.ini")
        with open(path, "w") as f:
            f.write(DEFAULT_INI.replace("listen = tcp:8080:interface=127.0.0.1", "listen = " + listen))
        return path

    def test_option(self) -> None:
        """twistd mgcpswitch --web with the bypass is a usage error naming where it would listen."""
        with self.assertRaises(UsageError) as caught:
            tap.Options().parseOptions(["--web", BYPASS])
        message = str(caught.exception)
        self.assertTrue(message.startswith("--web: [web] listen: "), message)
        self.assertIn("0.0.0.0", message)

    def test_configuration(self) -> None:
        """
        The same in the configuration's [web] listen is a mistake in the
        file: one line naming the file, section and key, and twistd exits.
        """
        path = self.config(BYPASS)
        with self.assertRaises(SystemExit) as caught:
            tap.Options().parseOptions(["--config", path])
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"mgcpswitch: {path}: [web] listen: "), message)
        self.assertIn("0.0.0.0 port 30081", message)
