"""
The HTTPS worked example of docs/ADMIN.md: a self-signed certificate made
with the documented C{openssl req} command, the admin listening on an
C{ssl:} strports description (key and certificate handed to pyOpenSSL as
C{cryptography} objects, so no deprecation warning), and mgcpctl trusting
it with C{--cacert} (and refusing it without).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool

from mgcpswitch import ctl
from mgcpswitch.web import WebSettings, build_web_service, make_site

from .support.fake_control import GW1, FakeCallControl
from .support.web import serve_on

OPENSSL = shutil.which("openssl")


def make_certificate(directory: str) -> tuple[str, str]:
    """The docs' command: key.pem and cert.pem for localhost and 127.0.0.1."""
    key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    subprocess.run(
        [OPENSSL or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "825", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return key, cert


class HTTPS(TestCase):
    timeout = 30

    def setUp(self) -> None:
        if OPENSSL is None:
            raise SkipTest("TLS TEST SKIPPED: the openssl command is not installed (Debian package openssl)")
        try:
            import OpenSSL  # noqa: F401
        except ImportError:
            raise SkipTest("TLS TEST SKIPPED: pyOpenSSL is not installed (pip install 'twisted[tls]')")
        self.directory = tempfile.mkdtemp(prefix="mgcpswitch-tls-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.key, self.cert = make_certificate(self.directory)
        self.fake = FakeCallControl(reactor)

    async def listen(self) -> str:
        description = f"ssl:0:interface=127.0.0.1:privateKey={self.key}:certKey={self.cert}"
        port = await serve_on(self, make_site(self.fake, WebSettings(listen=description), reactor), description)
        return f"https://127.0.0.1:{port.getHost().port}"

    async def ctl(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        code = await ctl.run(reactor, argv, out, err, env={}, stdin=io.StringIO(""), pool=pool)
        return code, out.getvalue(), err.getvalue()

    async def test_mgcpctl_with_cacert(self) -> None:
        """With --cacert the self-signed admin answers, by IP and by name."""
        url = await self.listen()
        code, out, err = await self.ctl("--url", url, "--cacert", self.cert, "gateways")
        self.assertEqual((code, err), (0, ""))
        self.assertIn(GW1, out)
        code, _, err = await self.ctl("--url", url.replace("127.0.0.1", "localhost"), "--cacert", self.cert, "calls")
        self.assertEqual((code, err), (0, ""))

    async def test_no_pyopenssl_deprecations(self) -> None:
        """The admin's TLS hands pyOpenSSL cryptography objects: no deprecation warning at the handshake."""
        url = await self.listen()
        code, _, err = await self.ctl("--url", url, "--cacert", self.cert, "stats")
        self.assertEqual((code, err), (0, ""))
        deprecated = [w["message"] for w in self.flushWarnings() if "pyOpenSSL" in str(w["message"])]
        self.assertEqual(deprecated, [])

    async def test_untrusted(self) -> None:
        """Without --cacert the certificate is refused: unreachable, with the hint."""
        url = await self.listen()
        code, _, err = await self.ctl("--url", url, "gateways")
        self.assertEqual(code, 3)
        self.assertIn("TLS failed", err)
        self.assertIn("use --cacert", err)

    async def test_bad_cacert(self) -> None:
        """A --cacert that is missing or not PEM is a usage error."""
        code, _, err = await self.ctl("--url", "https://127.0.0.1:1", "--cacert", self.key + ".nope", "calls")
        self.assertEqual(code, 2)
        self.assertIn("cannot read --cacert", err)
        code, _, err = await self.ctl("--url", "https://127.0.0.1:1", "--cacert", self.key, "calls")
        self.assertEqual(code, 2)
        self.assertIn("not a PEM certificate", err)

    async def test_service(self) -> None:
        """build_web_service makes a named service on the ssl: description."""
        description = f"ssl:0:interface=127.0.0.1:privateKey={self.key}:certKey={self.cert}"
        service = build_web_service(self.fake, WebSettings(listen=description), reactor)
        self.assertEqual(service.name, "web")
        service.startService()
        await service.stopService()
