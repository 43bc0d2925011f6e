"""
Start and stop a private osmo-mgw (Osmocom's MGCP media gateway) on a
loopback address for interop tests.

The config is written into a fresh temporary directory (the same settings
as ../shared/peers/osmo-mgw/start.sh, which documents them); the process is
started in the foreground so we hold its real PID, and stopped by that PID
only.  osmo-mgw 1.10 binds its VTY and CTRL ports on fixed numbers, so each
instance needs its own 127.x address: we pick one no other test uses.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from dataclasses import dataclass

OSMO_MGW = "/usr/bin/osmo-mgw"

CONFIG = """\
log stderr
 logging filter all 1
 logging color 0
 logging print category 1
 logging level set-all {loglevel}
line vty
 no login
 bind {ip}
ctrl
 bind {ip}
mgcp
 domain {domain}
 bind ip {ip}
 bind port {port}
 rtp port-range {rtp_low} {rtp_high}
 rtp bind-ip {ip}
 no rtp ip-probing
 number endpoints {endpoints}
 force-realloc 0
 conn-timeout 0
"""


@dataclass
class OsmoMGW:
    """A running osmo-mgw: its address, process and directory."""

    ip: str
    port: int
    domain: str
    process: subprocess.Popen[bytes]
    directory: str

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def log(self) -> str:
        with open(os.path.join(self.directory, "osmo-mgw.log"), errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        """Stop our process (by its PID) and remove its directory."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_osmo_mgw(
    ip: str = "127.0.0.31", port: int = 2427, domain: str = "mgw", endpoints: int = 32,
    loglevel: str = "error",
) -> OsmoMGW:
    """
    Start osmo-mgw on C{ip}:C{port}; skip the calling test loudly when the
    Debian package is not installed (.ci/run installs it).
    """
    if not os.access(OSMO_MGW, os.X_OK):
        raise unittest.SkipTest(
            f"SKIPPED LOUDLY: {OSMO_MGW} is not installed "
            "(apt-get install osmo-mgw; scripts/run-tests does this as root)"
        )
    directory = tempfile.mkdtemp(prefix="osmo-mgw.")
    rtp_low = 20000 + (int(ip.rsplit(".", 1)[1]) % 50) * 200
    with open(os.path.join(directory, "osmo-mgw.cfg"), "w") as f:
        f.write(CONFIG.format(
            ip=ip, port=port, domain=domain, endpoints=endpoints, loglevel=loglevel,
            rtp_low=rtp_low, rtp_high=rtp_low + 199,
        ))
    log = open(os.path.join(directory, "osmo-mgw.log"), "wb")
    process = subprocess.Popen(
        [OSMO_MGW, "-s", "-c", os.path.join(directory, "osmo-mgw.cfg")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=directory,
    )
    log.close()
    mgw = OsmoMGW(ip, port, domain, process, directory)
    # Wait until it answers: an AUEP on rtpbridge/0 (never exists) gets 500
    # and touches no endpoint.  Polling with a socket timeout, not a sleep.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.settimeout(0.2)
    try:
        for attempt in range(50):
            if process.poll() is not None:
                text = mgw.log()
                mgw.stop()
                raise RuntimeError(f"osmo-mgw exited at start:\n{text}")
            probe.sendto(b"AUEP 999999999 rtpbridge/0@%s MGCP 1.0\r\n" % domain.encode(), (ip, port))
            try:
                probe.recvfrom(2048)
                return mgw
            except OSError:
                continue
        mgw.stop()
        raise RuntimeError("osmo-mgw did not answer within 10 s")
    finally:
        probe.close()


def vty(ip: str, *commands: str, port: int = 4243, timeout: float = 5.0) -> list[str]:
    """
    Run VTY commands on osmo-mgw and return their output.  Reads up to the
    next prompt (C{OsmoMGW> }) rather than waiting for silence.
    """
    sock = socket.create_connection((ip, port), timeout=timeout)
    buffer = b""

    def until_prompt() -> str:
        nonlocal buffer
        deadline = time.monotonic() + timeout
        while not buffer.rstrip(b" ").endswith((b">", b"#")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no VTY prompt from {ip}:{port}: {buffer[-200:]!r}")
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
        text = buffer.decode("latin-1").replace("\r", "")
        buffer = b""
        return text

    try:
        until_prompt()  # banner
        out = []
        for command in commands:
            sock.sendall(command.encode() + b"\n")
            lines = until_prompt().split("\n")
            out.append("\n".join(lines[1:-1]))  # drop the echo and the prompt
        return out
    finally:
        sock.close()


def active_connections(ip: str) -> int:
    """How many connections osmo-mgw holds, from 'show mgcp active'."""
    text = vty(ip, "show mgcp active")[0]
    return sum(1 for line in text.split("\n") if line.strip().startswith("CONN:"))
