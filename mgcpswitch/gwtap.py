# -*- test-case-name: tests.test_gateway_options -*-
"""
C{twistd -n mgcpgateway}: a simulated residential gateway on UDP.

    twistd -n mgcpgateway --lines 8 --call-agent 127.0.0.1:2727 --restart-delay 0
    twistd -n mgcpgateway --media --control tcp:8427:interface=127.0.0.1
    twistd -n mgcpgateway --call-agent 127.0.0.1:2727,127.0.0.1:2737   # a pair of agents

The options build a L{GatewayConfig}; L{makeService} returns a
C{MultiService} whose child is the L{GatewayService}.  This is the only
gateway module that picks the running reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

from .gateway import FaultConfig, GatewayConfig, GatewayService, SimulatedGateway
from .transport import CALL_AGENT_PORT, GATEWAY_PORT

__all__ = ["Options", "makeService", "parse_host_port"]


def parse_host_port(text: str, default_port: int = CALL_AGENT_PORT) -> tuple[str, int]:
    """
    C{HOST:PORT}, C{HOST} (default port), C{[v6]:PORT} or C{[v6]}.

    @raise usage.UsageError: with a message naming the problem.
    """
    text = text.strip()
    if not text:
        raise usage.UsageError("--call-agent must be HOST:PORT, not empty")
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise usage.UsageError(f"--call-agent must be HOST:PORT or [IPv6]:PORT, not {text!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:
        raise usage.UsageError(f"--call-agent: write an IPv6 address as [ADDRESS]:PORT, not {text!r}")
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c.isspace() for c in host):
        raise usage.UsageError(f"--call-agent must be HOST:PORT, not {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise usage.UsageError(f"--call-agent port must be 1-65535, not {port_text!r}")
    return host, int(port_text)


def _number(options: usage.Options, key: str, kind: type, low: float | None = None,
            high: float | None = None, what: str = "") -> Any:
    text = options[key]
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{key} must be {what or kind.__name__}, not {text!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise usage.UsageError(f"--{key} must be {what}, not {text!r}")
    return value


class Options(usage.Options):
    """Command line of C{twistd mgcpgateway}."""

    synopsis = "[options]"
    longdesc = (
        "A simulated MGCP (RFC 3435) residential gateway: analog lines aaln/1..N@DOMAIN "
        "that execute EPCF, RQNT, CRCX, MDCX, DLCX, AUEP and AUCX, report events with "
        "NTFY to the call agent and announce themselves with RSIP (RFC 3660 packages "
        "L, D, G, B).  Fault injection options make the network and the gateway misbehave "
        "for reliability tests.  With --media its lines talk (RTP) and mix their connections; "
        "with --control another process drives the phones over HTTP (GET /lines, POST "
        "/lines/N/off-hook, on-hook, flash, dial)."
    )

    optParameters: list[list[Any]] = [
        ["port", "p", str(GATEWAY_PORT), "UDP port for MGCP (0: any free port)."],
        ["interface", "i", "127.0.0.1", "Address to bind MGCP and RTP to."],
        ["domain", "d", "rgw1", "Domain of the endpoint names (aaln/N@DOMAIN)."],
        ["lines", "l", "8", "Number of analog lines."],
        ["call-agent", "c", f"127.0.0.1:{CALL_AGENT_PORT}",
         "Notified entity at start, HOST:PORT (port defaults to 2727); a comma-separated list "
         "names backups, tried in order when one stops answering (Max2, RFC 3435 4.3)."],
        ["restart-delay", "r", "0",
         "Maximum waiting delay (MWD) in seconds: the first RSIP goes out after a random "
         "delay in [0, MWD] (RFC 3435 4.4.6; the RFC suggests 600 for residential gateways)."],
        ["drop", None, "0", "Fraction of datagrams dropped, both directions, in [0, 1]."],
        ["duplicate", None, "0", "Fraction of datagrams duplicated, in [0, 1]."],
        ["delay", None, "0", "Fraction of datagrams delayed by --delay-seconds, in [0, 1]."],
        ["delay-seconds", None, "0.5", "How long delayed datagrams are held back."],
        ["slow", None, "0", "Fraction of commands answered slowly (100 first), in [0, 1]."],
        ["slow-seconds", None, "1.0", "How long a slow command takes."],
        ["seed", None, None, "Seed of the fault-injection random generator (default: random)."],
        ["control", None, None,
         "Serve the driving API (HTTP, JSON: lift, hang up, flash, dial, read each line's "
         "connections and RTP counts) on this endpoint description, e.g. "
         "tcp:8427:interface=127.0.0.1.  No authentication: keep it on loopback."],
    ]
    optFlags = [
        ["no-rtp", None, "Do not bind a UDP port per connection (load tests with many calls)."],
        ["media", None,
         "Send 20 ms RTP packets on send-capable connections and count them; mix each "
         "line's connections as RFC 3435 Appendix D says (confrnce connections hear each "
         "other: a three-way call), counting per connection whom the handset heard."],
    ]

    def postOptions(self) -> None:  # noqa: N802
        port = _number(self, "port", int, 0, 65535, "a port number (0-65535)")
        lines = _number(self, "lines", int, 1, 100_000, "a number of lines (1-100000)")
        domain = self["domain"].strip()
        if not domain or "@" in domain or any(c.isspace() for c in domain):
            raise usage.UsageError(f"--domain must be a domain name, not {self['domain']!r}")
        call_agent, *backup_agents = [parse_host_port(text) for text in self["call-agent"].split(",")]
        restart_delay = _number(self, "restart-delay", float, 0, None, "a number of seconds >= 0")
        rates = {
            key: _number(self, key, float, 0, 1, "a fraction in [0, 1]")
            for key in ("drop", "duplicate", "delay", "slow")
        }
        delay_seconds = _number(self, "delay-seconds", float, 0, None, "a number of seconds >= 0")
        slow_seconds = _number(self, "slow-seconds", float, 0, 19, "a number of seconds in [0, 19]")
        seed = None
        if self["seed"] is not None:
            seed = _number(self, "seed", int, what="an integer")
        if self["control"] is not None:
            try:
                serverFromString(None, self["control"])  # parses only: the reactor comes in makeService
            except (ValueError, KeyError, TypeError) as e:
                raise usage.UsageError(f"--control: not an endpoint description: {self['control']!r} ({e})") from None
        if self["media"] and self["no-rtp"]:
            raise usage.UsageError("--media needs RTP ports: drop --no-rtp")
        faults = FaultConfig(
            drop=rates["drop"], duplicate=rates["duplicate"], delay=rates["delay"],
            delay_seconds=delay_seconds, slow_answer=rates["slow"], slow_seconds=slow_seconds,
            seed=seed,
        )
        try:
            self["config"] = GatewayConfig(
                domain=domain, lines=lines, port=port, interface=self["interface"],
                call_agent=call_agent, backup_agents=tuple(backup_agents), restart_delay=restart_delay, rtp=not self["no-rtp"],
                media=bool(self["media"]), faults=faults,
            )
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> MultiService:  # noqa: N802
    """The gateway service, on the running reactor."""
    from twisted.internet import reactor

    service = MultiService()
    gateway = SimulatedGateway(reactor, options["config"])
    child: IService = GatewayService(gateway)
    child.setServiceParent(service)
    if options["control"] is not None:
        from .gateway.control import control_site

        control = strports.service(options["control"], control_site(gateway.lines), reactor=reactor)
        control.setName("control")
        control.setServiceParent(service)
    return service
