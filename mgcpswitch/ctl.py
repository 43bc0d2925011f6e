# -*- test-case-name: tests.test_ctl -*-
"""
mgcpctl: the switch from a terminal, through the admin's JSON API.

    mgcpctl gateways
    mgcpctl endpoints [--gateway NAME]
    mgcpctl line LINE                 (an endpoint or a directory number: state, calls, services)
    mgcpctl line LINE set KEY=VALUE...  (dnd=yes forward_always=2003 forward_busy=off ...)
    mgcpctl calls
    mgcpctl call [show] ID [--messages]  (parties, held/waiting/three-way, transfer/forward, ladder)
    mgcpctl call ID --pcap FILE       (the ladder as a pcap; FILE - is stdout)
    mgcpctl call A B                  (also: mgcpctl originate A B)
    mgcpctl hangup ID
    mgcpctl audit ENDPOINT
    mgcpctl gateway out|in NAME
    mgcpctl stats                     (with the overload guard: shedding or not, calls shed)
    mgcpctl trunks [NAME]             (state, registration, channels, calls, counters)
    mgcpctl cluster                   (role, epoch, the active agent, lease age)
    mgcpctl hash-password [USER] [--stdin] [--iterations N]

Options (before or after the command): --url (MGCPCTL_URL, default
http://127.0.0.1:8080), --user/--password (MGCPCTL_USER,
MGCPCTL_PASSWORD) or --token (MGCPCTL_TOKEN), --cacert FILE
(MGCPCTL_CACERT) to trust a self-signed HTTPS certificate, --timeout
SECONDS, --json for the API's answer as it is.

Exit codes: 0 done, 1 the switch refused (its reason is printed: a
standby of a cluster refuses every change and names the active agent), 2
usage, 3 the switch cannot be reached, 4 authentication failed.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import io
import json
import os
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, Callable, Mapping, Sequence, TextIO
from urllib.parse import quote, urlsplit

from hyperlink import DecodedURL
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, ensureDeferred
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import react
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.internet.protocol import Protocol
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

__all__ = ["main", "run", "format_table", "EXIT_OK", "EXIT_API", "EXIT_USAGE", "EXIT_UNREACHABLE", "EXIT_AUTH"]

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4
DEFAULT_URL = "http://127.0.0.1:8080"


class CtlError(Exception):
    """Stop with C{message} on stderr and C{code} as the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------
# The API client


class Client:
    """
    The admin API over Twisted's L{Agent}, with errors turned into
    L{CtlError}.  (Not treq: its URL handling runs the host through IDNA,
    which fails on an IPv6 literal such as C{http://[::1]:8080}.)
    """

    def __init__(
        self,
        reactor: Any,
        url: str,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        cacert: str | None = None,
        timeout: float = 30.0,
        pool: HTTPConnectionPool | None = None,
    ) -> None:
        self.reactor = reactor
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = Headers({b"accept": [b"application/json"]})
        if user:
            pair = base64.b64encode(f"{user}:{password or ''}".encode("utf-8"))
            self.headers.setRawHeaders(b"authorization", [b"Basic " + pair])
        elif token:
            self.headers.setRawHeaders(b"authorization", [b"Bearer " + token.encode("utf-8")])
        if pool is None:
            pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, contextFactory=_tls_policy(cacert), connectTimeout=timeout, pool=pool)

    async def fetch(self, method: str, path: str, body: Any = None) -> tuple[Any, bytes]:
        """The response and its whole body; L{CtlError} for the network and for authentication."""
        headers = self.headers.copy()
        producer = None
        if body is not None:
            headers.setRawHeaders(b"content-type", [b"application/json"])
            producer = FileBodyProducer(io.BytesIO(json.dumps(body).encode("utf-8")))
        try:
            d = self.agent.request(method.encode("ascii"), _uri(self.url + path), headers, producer)
            response = await d.addTimeout(self.timeout, self.reactor)
            data = await _read_body(response).addTimeout(self.timeout, self.reactor)
        except (
            ConnectError, DNSLookupError, CancelledError, TimeoutError, ResponseNeverReceived, ResponseFailed
        ) as e:
            reason = _network_reason(e)
            if reason is None:
                raise CtlError(
                    EXIT_UNREACHABLE, f"no answer from the switch at {self.url} within {self.timeout:g} s"
                ) from None
            raise CtlError(EXIT_UNREACHABLE, f"cannot reach the switch at {self.url}: {reason}") from None
        if response.code in (401, 403):
            raise CtlError(EXIT_AUTH, f"authentication failed ({response.code}): check --user/--password or --token")
        if response.code == 429:
            retry = (response.headers.getRawHeaders(b"retry-after") or [b"?"])[0].decode("ascii", "replace")
            raise CtlError(EXIT_AUTH, f"too many failed logins (429): retry in {retry} s")
        return response, data

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer to a request; L{CtlError} with the switch's reason for a refusal."""
        response, data = await self.fetch(method, path, body)
        try:
            answer = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise CtlError(
                EXIT_API,
                f"unexpected answer from {self.url} ({response.code}, not JSON): is this the mgcpswitch admin?",
            ) from None
        if response.code >= 400:
            reason = answer.get("reason", "") if isinstance(answer, dict) else ""
            raise CtlError(EXIT_API, f"the switch refused ({response.code}): {reason or response.phrase.decode()}")
        return answer


class _Body(Protocol):
    """Collects a response body; C{done} fires with it (or fails as the transfer did)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: Deferred[bytes] = Deferred(self._cancel)

    def _cancel(self, done: Deferred[bytes]) -> None:
        """Cancelled: stop the transfer (the body's transport is the response's IPushProducer)."""
        producer = IPushProducer(self.transport, None)
        if producer is not None:
            producer.stopProducing()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def _read_body(response: Any) -> Deferred[bytes]:
    body = _Body()
    response.deliverBody(body)
    return body.done


def _uri(url: str) -> bytes:
    """The request URI: as given when ASCII, else with the host in IDNA and the rest percent-encoded."""
    try:
        return url.encode("ascii")
    except UnicodeEncodeError:
        return DecodedURL.from_text(url).to_uri().to_text().encode("ascii")


def _reason(data: bytes) -> str:
    """The C{reason} of a JSON error body, or a placeholder."""
    try:
        answer = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "(no reason given)"
    return str(answer.get("reason", "")) if isinstance(answer, dict) else "(no reason given)"


def _tls_policy(cacert: str | None) -> Any:
    if not cacert:
        return BrowserLikePolicyForHTTPS()
    from twisted.internet.ssl import Certificate  # needs pyOpenSSL: only for --cacert

    try:
        with open(cacert, "rb") as f:
            root = Certificate.loadPEM(f.read())
    except OSError as e:
        raise CtlError(EXIT_USAGE, f"cannot read --cacert {cacert}: {e.strerror or e}") from None
    except Exception as e:  # OpenSSL's error for a file that is not PEM
        raise CtlError(EXIT_USAGE, f"--cacert {cacert} is not a PEM certificate: {e}") from None
    return BrowserLikePolicyForHTTPS(trustRoot=root)


def _network_reason(error: Exception) -> str | None:
    """Why the request failed, in a few words; None for a timeout."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        # ResponseNeverReceived / ResponseFailed wrap what really happened.
        inner = reasons[0].value
        return _network_reason(inner) if isinstance(inner, Exception) else str(inner)
    name = type(error).__name__
    if name == "ConnectionRefusedError":
        return "connection refused"
    if isinstance(error, DNSLookupError):
        return "unknown host"
    if isinstance(error, CancelledError) or "Timeout" in name or "TimedOut" in name or "Cancelled" in name:
        return None
    text = str(error).strip()
    module = type(error).__module__
    if module.startswith(("OpenSSL", "service_identity")) or "certificate" in text.lower():
        return f"TLS failed ({_tls_text(error) or name}); for a self-signed certificate use --cacert"
    return text or name


def _tls_text(error: Exception) -> str:
    # OpenSSL errors carry [(library, function, reason), ...].
    args = error.args[0] if error.args else None
    if isinstance(args, list) and args and isinstance(args[0], tuple):
        return "; ".join(str(item[-1]) for item in args)
    return str(error).strip()


# ---------------------------------------------------------------------------
# Formatting


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned on the widest cell, two spaces apart."""
    cells = [[("-" if c is None or c == "" else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _ago(when: float | None, now: float) -> str:
    return "never" if when is None else _span(now - when) + " ago"


def _clock(when: float | None) -> str:
    return "-" if when is None else time.strftime("%H:%M:%S", time.localtime(when))


def _gateways(data: Mapping[str, Any]) -> str:
    now = data["now"]
    rows = [
        [
            g["name"],
            g["state"],
            "in" if g["in_service"] else "out",
            _host_port(g["host"], g["port"]) if g.get("host") else "",
            g["endpoints"],
            g["active_calls"],
            f"{g['last_rsip']}, {_ago(g['last_rsip_at'], now)}" if g.get("last_rsip") else "",
            _ago(g.get("last_seen"), now),
            f"{g['keepalive_interval']:g}s",
        ]
        for g in data["gateways"]
    ]
    headers = ["GATEWAY", "STATE", "SERVICE", "ADDRESS", "ENDPOINTS", "CALLS", "LAST RSIP", "LAST SEEN", "KEEPALIVE"]
    return format_table(headers, rows)


def _host_port(host: str, port: int) -> str:
    """C{host:port}, an IPv6 host in brackets (RFC 3986 §3.2.2) so the port stays readable."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _line_calls(e: Mapping[str, Any]) -> str:
    """The calls on a line, marked: C{c1, c2 (held), c3 (waiting), three-way}."""
    calls = e.get("calls") or ([e["call_id"]] if e.get("call_id") else [])
    held, waiting = e.get("held") or [], e.get("waiting") or []
    marked = [c + (" (held)" if c in held else " (waiting)" if c in waiting else "") for c in calls]
    return ", ".join(marked + (["three-way"] if e.get("conference") else []))


def _services_summary(services: Mapping[str, Any] | None) -> str:
    """What differs from a plain line, in a few words."""
    if not services:
        return ""
    parts = [f'"{services["name"]}"'] if services.get("name") else []
    parts += [label for key, label in (("dnd", "dnd"), ("message_waiting", "mwi"), ("private", "private"))
              if services.get(key)]
    parts += [f"{label}->{services[key]}" for key, label in (
        ("forward_always", "fwd"), ("forward_busy", "fwd-busy"), ("forward_no_answer", "fwd-no-answer"))
        if services.get(key)]
    parts += [f"no {label}" for key, label in (
        ("call_waiting", "call-waiting"), ("three_way", "three-way"), ("transfer", "transfer"))
        if services.get(key) is False]
    return ", ".join(parts + (["transfer-on-hangup"] if services.get("transfer_on_hangup") else []))


def _endpoints(data: Mapping[str, Any]) -> str:
    rows = [
        [
            e["name"],
            e["state"],
            e["hook"],
            e.get("number"),
            _line_calls(e),
            ", ".join(f"{c['connection_id']} {c['mode']}" for c in e.get("connections", [])),
            _services_summary(e.get("services")),
            e.get("last_event"),
        ]
        for e in data["endpoints"]
    ]
    headers = ["ENDPOINT", "STATE", "HOOK", "NUMBER", "CALLS", "CONNECTIONS", "SERVICES", "LAST EVENT"]
    return format_table(headers, rows)


def _value(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "-" if value is None else str(value)


def _line(e: Mapping[str, Any]) -> str:
    """One line: its state, its calls and connections, every service."""
    lines = [
        f"{e['name']}" + (f" ({e['number']})" if e.get("number") else "")
        + f": {e['state']}, hook {e['hook']}" + ("" if e.get("in_service", True) else ", out of service"),
        f"  calls:        {_line_calls(e) or '-'}",
        "  connections:  " + (", ".join(f"{c['connection_id']} {c['mode']} (call {c['call_id']})"
                                        for c in e.get("connections", [])) or "-"),
        f"  last event:   {e.get('last_event') or '-'}",
    ]
    services = e.get("services")
    if services:
        width = max(len(k) for k in services)
        lines.append("services:")
        lines.extend(f"  {key.ljust(width)}  {_value(value)}" for key, value in services.items())
    return "\n".join(lines)


def _duration(call: Mapping[str, Any], now: float) -> str:
    start = call.get("answered") or call["started"]
    end = call.get("ended") or now
    return _span(end - start)


def _calls(data: Mapping[str, Any]) -> str:
    now = data["now"]
    rows = [
        [
            c["call_id"],
            c["state"],
            c["caller"],
            c.get("callee"),
            c.get("dialled"),
            _clock(c["started"]),
            _duration(c, now),
            c.get("cause"),
        ]
        for c in data["calls"]
    ]
    if not rows:
        return "no calls"
    return format_table(["CALL", "STATE", "FROM", "TO", "DIALLED", "STARTED", "DURATION", "CAUSE"], rows)


def _call(call: Mapping[str, Any], messages: bool) -> str:
    lines = [
        f"call {call['call_id']}: {call['caller']} -> {call.get('callee') or '?'}  {call['state']}"
        + (f" ({call['cause']})" if call.get("cause") else ""),
        f"  dialled {call.get('dialled') or '-'}, codec {call.get('codec') or '-'}, started {_clock(call['started'])}, "
        f"answered {_relative(call.get('answered'), call['started'])}, ended {_relative(call.get('ended'), call['started'])}",
    ]
    facts = [f"forwarded from {call['forwarded_from']}"] if call.get("forwarded_from") else []
    facts += [f"transferred by {call['transferred_by']}"] if call.get("transferred_by") else []
    facts += [f"related: {', '.join(call['related'])}"] if call.get("related") else []
    if facts:
        lines.append("  " + "; ".join(facts))
    legs = call.get("legs") or []
    if legs:
        rows = [
            [leg["endpoint"], leg.get("number"), "caller" if leg["originating"] else "called", leg.get("connection_id"),
             leg.get("mode"), leg["state"],
             ", ".join(flag for flag, on in (("held", leg.get("held")), ("waiting", leg.get("waiting")),
                                              ("three-way", leg.get("conference"))) if on)]
            for leg in legs
        ]
        table = format_table(["PARTY", "NUMBER", "SIDE", "CONNECTION", "MODE", "STATE", "FLAGS"], rows)
        lines.append("")
        lines.extend("  " + row for row in table.split("\n"))
    lines.append("")
    ladder = call.get("ladder", [])
    if not ladder:
        lines.append("  (no MGCP messages recorded)")
    width = max([len(e["gateway"]) for e in ladder] + [0])
    for entry in ladder:
        arrow = "agent ---> " if entry["direction"] == "out" else "agent <--- "
        lines.append(
            f"  {_relative(entry['time'], call['started']):>9}  {arrow}{entry['gateway'].ljust(width)}  {entry['summary']}"
        )
        if messages:
            lines.extend("      | " + line for line in entry["text"].splitlines())
    return "\n".join(lines)


def _relative(when: float | None, start: float) -> str:
    return "-" if when is None else f"+{when - start:.3f}s"


def _stats(data: Mapping[str, Any]) -> str:
    calls = data["calls"]
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(calls["outcomes"].items()) if v) or "none"
    gateways = ", ".join(f"{k} {v}" for k, v in data["gateways"].items() if v) or "none"
    transactions = data["transactions"]
    counters: Mapping[str, int] = transactions.get("counters", {})

    def group(prefix: str) -> str:
        items = sorted((k[len(prefix) + 1 :], v) for k, v in counters.items() if k.startswith(prefix + " "))
        return ", ".join(f"{k} {v}" for k, v in items) or "none"

    lines = [
        f"cluster:       {_cluster_summary(data.get('cluster'))}",
        f"overload:      {_overload(transactions.get('overload'))}",
        f"calls:         {calls['active']} active; ended: {outcomes}",
        f"gateways:      {gateways}",
        f"endpoints:     {data['endpoints']['registered']} registered of {data['endpoints']['total']}",
        f"transactions:  {transactions.get('pending', 0)} pending, "
        f"{counters.get('retransmissions', 0)} retransmissions, {counters.get('timeouts', 0)} timeouts",
        f"  commands out:  {group('commands_sent')}",
        f"  commands in:   {group('commands_received')}",
        f"  responses in:  {group('responses_received')}",
        f"  responses out: {group('responses_sent')}",
        f"  latency:       {_percentiles(transactions)}",
    ]
    return "\n".join(lines)


def _overload(overload: Mapping[str, Any] | None) -> str:
    """The overload guard in a line: whether it sheds new calls, how many so far, and the lateness it watches."""
    if not overload:
        return "-"
    share = overload["admitted_share"]
    head = ("normal, every new call admitted" if overload["state"] != "overloaded"
            else f"OVERLOADED, shedding {1 - share:.0%} of new calls" if share < 1
            else "OVERLOADED, new calls beyond the admission rate shed")
    rate = overload.get("admission_rate")
    limit = "" if rate is None else f"; at most {rate:.0f} new calls/s ({overload['cpu_per_call_ms']:.2f} ms CPU a call)"
    return (f"{head}; {overload['calls_shed']} shed, {overload['calls_admitted']} admitted, "
            f"{overload['episodes']} episode(s); reactor {overload['lateness_ms']:.1f} ms late{limit}")


def _trunks(data: Mapping[str, Any]) -> str:
    rows = [
        [
            t["name"],
            t["state"],
            t["registration"],
            t["peer"],
            f"{t['channels_in_use']}/{t['max_channels']}",
            len(t["calls"]),
            f"{t['answered_out']}/{t['calls_out']}",
            f"{t['answered_in']}/{t['calls_in']}",
            t["refused_full"],
        ]
        for t in data["trunks"]
    ]
    if not rows:
        return "no trunks configured"
    headers = ["TRUNK", "STATE", "REGISTRATION", "PEER", "CHANNELS", "CALLS", "OUT ANSWERED", "IN ANSWERED", "FULL"]
    return format_table(headers, rows)


def _trunk(t: Mapping[str, Any]) -> str:
    """One trunk: its state, channels, the calls on it, its calls' final statuses and its SIP messages."""

    def counts(items: Mapping[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in items.items()) or "none"

    return "\n".join([
        f"trunk {t['name']} ({t['kind']}, peer {t['peer']}): {t['state']}, registration {t['registration']}",
        f"  channels:      {t['channels_in_use']} in use of {t['max_channels']}; {t['refused_full']} calls refused full",
        f"  calls now:     {', '.join(t['calls']) or '-'}",
        f"  out:           {t['answered_out']} answered of {t['calls_out']}",
        f"  in:            {t['answered_in']} answered of {t['calls_in']}",
        f"  statuses:      {counts(t['statuses'])}",
        f"  SIP messages:  {counts(t['messages'])}",
    ])


def _cluster_summary(cluster: Mapping[str, Any] | None) -> str:
    if not cluster:
        return "none (a single call agent)"
    parts = [cluster["role"]]
    if cluster.get("epoch") is not None:
        parts.append(f"epoch {cluster['epoch']}")
    if cluster["role"] != "active":
        parts.append(f"active {cluster.get('holder') or 'unknown'}")
    if cluster.get("lease_age") is not None:
        parts.append(f"lease age {cluster['lease_age']:.1f}s")
    return ", ".join(parts)


def _cluster(data: Mapping[str, Any]) -> str:
    cluster = data.get("cluster")
    if not cluster:
        return "a single call agent: not in a cluster"
    counters: Mapping[str, int] = cluster.get("counters", {})

    def group(prefix: str) -> str:
        items = sorted((k[len(prefix):], v) for k, v in counters.items() if k.startswith(prefix))
        return ", ".join(f"{k} {v}" for k, v in items) or "none"

    lease, takeover = cluster.get("lease_age"), cluster.get("last_takeover")
    lines = [
        f"agent {cluster['name']}: {cluster['role'].upper()}",
        f"  active agent:   {cluster.get('holder') or 'none known'}",
        f"  epoch:          {_value(cluster.get('epoch'))}",
        f"  lease age:      {'-' if lease is None else f'{lease:.1f}s'}"
        + ("" if cluster["role"] == "active" else " (as last seen)"),
        "  last takeover:  " + ("-" if takeover is None else f"{_clock(takeover)} ({_ago(takeover, data['now'])})"),
        f"  takeovers:      {cluster['takeovers']} by this agent",
        f"  store:          {group('store_')}",
        f"  txid blocks:    {group('txid_blocks_')}",
        f"  leadership:     {group('leadership_')}",
    ]
    if cluster.get("read_only"):
        lines.append(f"read-only: {cluster['read_only']}")
    return "\n".join(lines)


def _percentiles(snapshot: Mapping[str, Any]) -> str:
    bounds = list(snapshot.get("latency_buckets", []))
    counts = list(snapshot.get("latency_counts", []))
    total = sum(counts)
    if not total:
        return "no transactions yet"
    parts = []
    for share in (0.5, 0.9, 0.99):
        running = 0
        for i, count in enumerate(counts):
            running += count
            if running >= share * total:
                parts.append(f"p{int(share * 100)} <= {bounds[i]:g}s" if i < len(bounds) else f"p{int(share * 100)} > {bounds[-1]:g}s")
                break
    return ", ".join(parts) + f" ({total} answered)"


# ---------------------------------------------------------------------------
# Commands


def _ep(name: str) -> str:
    return quote(name, safe="")


_YES = ("yes", "on", "true", "1")
_NO = ("no", "off", "false", "0")
_NONE = ("", "off", "none", "-")


def _changes(pairs: Sequence[str], services: Mapping[str, Any]) -> dict[str, Any]:
    """
    C{KEY=VALUE} words as the JSON the API takes, typed by the line's
    current services: a flag takes yes/no (on/off, true/false, 1/0); a
    number or name takes its text, or nothing (or off, none, -) for none.
    A key the line does not have is sent as given: the switch names it in
    its refusal.
    """
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, found, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not found or not key:
            raise CtlError(EXIT_USAGE, f"{pair!r}: expected KEY=VALUE, like dnd=yes or forward_always=2003")
        if isinstance(services.get(key), bool):
            word = text.strip().lower()
            if word not in _YES + _NO:
                raise CtlError(EXIT_USAGE, f"{pair!r}: {key} is yes or no")
            changes[key] = word in _YES
        elif key in services and text.strip().lower() in _NONE:
            changes[key] = None
        else:
            changes[key] = text
    return changes


async def _find_line(client: Client, name: str) -> dict[str, Any]:
    """The endpoint named, or the one with this directory number."""
    if "@" in name:
        found: dict[str, Any] = await client.call("GET", "/api/endpoints/" + _ep(name))
        return found
    endpoints: list[dict[str, Any]] = (await client.call("GET", "/api/endpoints"))["endpoints"]
    for endpoint in endpoints:
        if endpoint.get("number") == name:
            return endpoint
    raise CtlError(EXIT_API, f"no line has the number {name!r} (name an endpoint as local@gateway)")


async def _line_command(client: Client, args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    line = await _find_line(client, args.name)
    if not args.rest:
        return line, _line
    changes = _changes(args.rest[1:], line.get("services") or {})
    answer = await client.call("PATCH", f"/api/endpoints/{_ep(line['name'])}/services", changes)
    said = ", ".join(f"{k} {_value(v)}" for k, v in changes.items())
    return answer, lambda e: f"changed {said}\n" + _line(e)


async def _do(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    def show(data: Any, text: Callable[[Any], str]) -> None:
        print(json.dumps(data, indent=2, sort_keys=True) if args.json else text(data), file=out)

    command = args.command
    if command == "gateways":
        show(await client.call("GET", "/api/gateways"), _gateways)
    elif command == "endpoints":
        query = f"?gateway={quote(args.gateway, safe='')}" if args.gateway else ""
        show(await client.call("GET", "/api/endpoints" + query), _endpoints)
    elif command == "calls":
        show(await client.call("GET", "/api/calls"), _calls)
    elif command == "call" and args.pcap is not None:
        call_id = args.second if args.first == "show" else args.first
        response, data = await client.fetch("GET", f"/api/calls/{_ep(call_id)}/ladder.pcap")
        if response.code >= 400:
            raise CtlError(EXIT_API, f"the switch refused ({response.code}): {_reason(data)}")
        _write_file(args.pcap, data)
        if args.pcap != "-":
            print(f"call {call_id}: {_packets(data)} datagrams written to {args.pcap}", file=out)
    elif command == "call" and (args.first == "show" or args.second is None):
        call_id = args.second if args.first == "show" else args.first
        show(await client.call("GET", "/api/calls/" + _ep(call_id)), lambda c: _call(c, args.messages))
    elif command == "line":
        show(*await _line_command(client, args))
    elif command in ("call", "originate"):
        answer = await client.call("POST", "/api/calls", {"from": args.first, "to": args.second})
        show(answer, lambda a: f"call {a['call_id']} started: {a['from']} -> {a['to']}")
    elif command == "hangup":
        answer = await client.call("DELETE", "/api/calls/" + _ep(args.call_id))
        show(answer, lambda a: f"call {a['call_id']} hung up ({a['state']})")
    elif command == "audit":
        answer = await client.call("POST", f"/api/endpoints/{_ep(args.endpoint)}/audit", {})
        show(answer, lambda e: f"{e['name']}: {e['state']}, hook {e['hook']}"
             + (f", call {e['call_id']}" if e.get("call_id") else ""))
    elif command == "gateway":
        answer = await client.call("POST", f"/api/gateways/{_ep(args.name)}/service", {"in_service": args.action == "in"})
        show(answer, lambda g: f"{g['name']}: {'in service' if g['in_service'] else 'out of service'} ({g['state']})")
    elif command == "stats":
        show(await client.call("GET", "/api/stats"), _stats)
    elif command == "trunks" and args.name:
        show(await client.call("GET", "/api/trunks/" + _ep(args.name)), _trunk)
    elif command == "trunks":
        show(await client.call("GET", "/api/trunks"), _trunks)
    elif command == "cluster":
        data = await client.call("GET", "/api/stats")
        show({"now": data["now"], "cluster": data.get("cluster")}, _cluster)


def _write_file(path: str, data: bytes) -> None:
    """C{data} into C{path}, or to stdout for C{-}."""
    if path == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise CtlError(EXIT_USAGE, f"cannot write {path}: {e.strerror or e}") from None


def _packets(data: bytes) -> int:
    """How many records a classic pcap holds (24-byte header, 16-byte record headers)."""
    count, offset = 0, 24
    while offset + 16 <= len(data):
        offset += 16 + int.from_bytes(data[offset + 8:offset + 12], "little")
        count += 1
    return count


def _hash_password(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    from .web.auth import DEFAULT_ITERATIONS, hash_password

    if args.stdin:
        password = stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("mgcpctl: the passwords differ", file=err)
            return EXIT_USAGE
    if not password:
        print("mgcpctl: refusing an empty password", file=err)
        return EXIT_USAGE
    if args.user is not None and (":" in args.user or not args.user.strip()):
        print("mgcpctl: a user name cannot be empty or contain ':'", file=err)
        return EXIT_USAGE
    encoded = hash_password(password, iterations=args.iterations or DEFAULT_ITERATIONS)
    print(f"{args.user}:{encoded}" if args.user else encoded, file=out)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    # Options given after the command override those before it; SUPPRESS
    # keeps a subcommand from resetting what was given before it.
    def options(parser: argparse.ArgumentParser, default: Callable[[Any], Any]) -> None:
        parser.add_argument("--url", default=default(None), help=f"the admin's URL (MGCPCTL_URL, default {DEFAULT_URL})")
        parser.add_argument("--user", default=default(None), help="HTTP Basic user (MGCPCTL_USER)")
        parser.add_argument("--password", default=default(None), help="HTTP Basic password (MGCPCTL_PASSWORD)")
        parser.add_argument("--token", default=default(None), help="bearer token (MGCPCTL_TOKEN)")
        parser.add_argument("--cacert", default=default(None), help="trust this PEM certificate for https (MGCPCTL_CACERT)")
        parser.add_argument(
            "--timeout", type=float, default=default(30.0),
            help="seconds to wait for an answer (default 30: an action waits for the gateway's)",
        )
        parser.add_argument("--json", action="store_true", default=default(False), help="print the API's JSON")

    parser = argparse.ArgumentParser(
        prog="mgcpctl",
        description="Manage a running mgcpswitch through its admin API.",
        epilog="Exit codes: 0 done, 1 refused by the switch, 2 usage, 3 unreachable, 4 authentication failed.",
    )
    options(parser, lambda value: value)
    common = argparse.ArgumentParser(add_help=False)
    options(common, lambda value: argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common])

    command("gateways", "list the gateways")
    command("endpoints", "list the endpoints").add_argument("--gateway", help="of this gateway only")
    line = command(
        "line",
        "'line LINE': a line (an endpoint, or a directory number) with its calls and services; "
        "'line LINE set KEY=VALUE...': change services (dnd=yes, forward_always=2003, forward_busy=off, "
        "message_waiting=yes, call_waiting=no, name=Alice, ...)",
    )
    line.add_argument("name", metavar="LINE")
    line.add_argument("rest", metavar="set KEY=VALUE", nargs="*")
    command("calls", "list calls in progress and recently ended")
    call = command(
        "call",
        "'call [show] ID': a call, its parties and its MGCP ladder; 'call ID --pcap FILE': the ladder as a pcap; "
        "'call A B': ring A, then connect it to B",
    )
    call.add_argument("first", metavar="show|ID|A")
    call.add_argument("second", metavar="ID|B", nargs="?")
    call.add_argument("--messages", action="store_true", help="with 'show': print every message in full")
    call.add_argument("--pcap", metavar="FILE", help="write the call's ladder as a pcap (- for stdout), for Wireshark")
    originate = command("originate", "ring endpoint A; when it answers, ring B and connect them")
    originate.add_argument("first", metavar="A")
    originate.add_argument("second", metavar="B")
    command("hangup", "hang up a call").add_argument("call_id", metavar="ID")
    command("audit", "audit an endpoint (AUEP)").add_argument("endpoint", metavar="ENDPOINT")
    gateway = command("gateway", "take a gateway out of service, or back in")
    gateway.add_argument("action", choices=["out", "in"])
    gateway.add_argument("name", metavar="NAME")
    command("stats", "transaction, call and gateway statistics, and whether the agent sheds new calls (overload)")
    command("trunks", "the trunks (SIP): state, registration, channels, calls, counters; or one in full").add_argument(
        "name", metavar="NAME", nargs="?", help="one trunk, with its statuses and SIP message counts")
    command("cluster", "this agent's place in its cluster: role, epoch, the active agent, lease age, counts")
    hashing = command("hash-password", "print a users-file line (or hash) for a password read from the terminal")
    hashing.add_argument("user", nargs="?", help="print USER:HASH, ready for the users file")
    hashing.add_argument("--stdin", action="store_true", help="read the password from the first line of stdin")
    hashing.add_argument("--iterations", type=int, help="PBKDF2 iterations (default 600000)")
    return parser


def _call_usage(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments of 'call', if anything."""
    if args.pcap is not None:
        if args.messages:
            return "--messages goes with 'call show ID', not with --pcap"
        if (args.first == "show") != (args.second is not None):
            return "use 'call ID --pcap FILE'"
        return None
    if args.second is None:
        return "use 'call ID', 'call ID --pcap FILE' or 'call A B'" if args.first == "show" else None
    if args.first != "show" and args.messages:
        return "--messages goes with 'call [show] ID'"
    return None


def _line_usage(args: argparse.Namespace) -> str | None:
    if args.rest and (args.rest[0] != "set" or len(args.rest) < 2):
        return "use 'line LINE' or 'line LINE set KEY=VALUE...'"
    return None


async def run(
    reactor: Any,
    argv: Sequence[str],
    out: TextIO | None = None,
    err: TextIO | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    pool: HTTPConnectionPool | None = None,
) -> int:
    """Run one mgcpctl command; return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    env = os.environ if env is None else env
    try:
        with redirect_stdout(out), redirect_stderr(err):
            args = _parser().parse_args(list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    if args.command in ("call", "line"):
        problem = (_call_usage if args.command == "call" else _line_usage)(args)
        if problem:
            print(f"mgcpctl: {problem}", file=err)
            return EXIT_USAGE
    if args.command == "hash-password":
        return _hash_password(args, out, err, sys.stdin if stdin is None else stdin)

    url = args.url or env.get("MGCPCTL_URL") or DEFAULT_URL
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        print(f"mgcpctl: --url {url!r} is not an http:// or https:// URL", file=err)
        return EXIT_USAGE
    user = args.user or env.get("MGCPCTL_USER")
    password = args.password if args.password is not None else env.get("MGCPCTL_PASSWORD")
    if user and password is None:
        if not (stdin or sys.stdin).isatty():
            print("mgcpctl: --user needs --password (or MGCPCTL_PASSWORD)", file=err)
            return EXIT_USAGE
        password = getpass.getpass(f"password for {user}: ")
    try:
        client = Client(
            reactor,
            url,
            user=user,
            password=password,
            token=args.token or env.get("MGCPCTL_TOKEN"),
            cacert=args.cacert or env.get("MGCPCTL_CACERT"),
            timeout=args.timeout,
            pool=pool,
        )
        await _do(client, args, out)
    except CtlError as e:
        print(f"mgcpctl: {e.message}", file=err)
        return e.code
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: run the command on the running reactor and exit with its status."""
    arguments = list(sys.argv[1:] if argv is None else argv)

    def _main(reactor: Any) -> Any:
        def finished(code: int) -> None:
            if code:
                raise SystemExit(code)

        def closed(failure: Any) -> None:
            # `mgcpctl calls | head`: the reader left; stop quietly.
            failure.trap(BrokenPipeError)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

        return ensureDeferred(run(reactor, arguments)).addCallbacks(finished, closed)

    react(_main)
