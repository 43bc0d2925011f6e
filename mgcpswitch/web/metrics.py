# -*- test-case-name: tests.test_web_api -*-
"""
C{/metrics}: Prometheus text built at scrape time from call control.

A custom collector reads the transaction layer's snapshot and call
control's views when Prometheus asks, so counting costs nothing per MGCP
message.  Each site has its own L{CollectorRegistry}: nothing is put in
C{prometheus_client}'s global one.

An agent in a cluster adds the C{mgcp_cluster_*} families (role, epoch,
lease age, takeovers, the store's refused rows, ...); a single agent has
none of them.  The overload guard's state, admitted share, lateness and
calls shed are C{mgcp_overload*}; each configured trunk's state,
registration, channels, calls and SIP messages are C{mgcp_trunk_*} with a
C{trunk} label (none without trunks).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..agent.model import ClusterView, GatewayState, Role
from ..interfaces import ICallControl
from ..trunk import RegistrationState, TrunkState, TrunkView
from .api import JSONResource, Raw, active_calls, not_found, registered_endpoints

__all__ = ["SwitchCollector", "make_registry", "MetricsResource"]

# Snapshot counters keyed "name verb/code", and the labels they become.
_DIRECTED = {
    "commands_sent": ("mgcp_commands", "direction", "out"),
    "commands_received": ("mgcp_commands", "direction", "in"),
    "responses_sent": ("mgcp_responses", "direction", "out"),
    "responses_received": ("mgcp_responses", "direction", "in"),
}


class SwitchCollector:
    """A C{prometheus_client} collector over an L{ICallControl}."""

    def __init__(self, control: ICallControl) -> None:
        self.control = control

    def describe(self) -> list[Metric]:
        # Registering must not scrape call control; names are fixed anyway.
        return []

    def collect(self) -> Iterator[Metric]:
        snapshot = self.control.transaction_stats()
        counters: Mapping[str, int] = snapshot.get("counters", {})
        commands = CounterMetricFamily(
            "mgcp_commands", "MGCP commands by direction (in: received, out: sent) and verb",
            labels=["direction", "verb"],
        )
        responses = CounterMetricFamily(
            "mgcp_responses", "MGCP final and provisional responses by direction and return code",
            labels=["direction", "code"],
        )
        events = CounterMetricFamily(
            "mgcp_transaction_events", "Other transaction-layer counters (duplicates, drops, acks, ...)",
            labels=["event"],
        )
        for key, value in sorted(counters.items()):
            name, _, label = key.partition(" ")
            if name in _DIRECTED and label:
                family, _, direction = _DIRECTED[name]
                (commands if family == "mgcp_commands" else responses).add_metric([direction, label], value)
            elif name not in ("retransmissions", "timeouts"):
                events.add_metric([key.replace(" ", "_")], value)
        yield commands
        yield responses
        yield CounterMetricFamily(
            "mgcp_retransmissions", "Commands sent again for want of a response",
            value=counters.get("retransmissions", 0),
        )
        yield CounterMetricFamily(
            "mgcp_transaction_timeouts", "Transactions that ended with no response",
            value=counters.get("timeouts", 0),
        )
        yield events
        yield self._latency(snapshot)
        yield GaugeMetricFamily(
            "mgcp_transactions_pending", "Commands awaiting their final response",
            value=snapshot.get("pending", 0),
        )
        store: Mapping[str, Any] = snapshot.get("store", {})
        yield CounterMetricFamily(
            "mgcp_store_rows_written", "Rows (CDRs, call checkpoints, registrations) the store wrote",
            value=store.get("rows_written", 0),
        )
        yield CounterMetricFamily(
            "mgcp_store_batches_failed", "Batches the store's database refused (each is retried)",
            value=store.get("batches_failed", 0),
        )
        yield CounterMetricFamily(
            "mgcp_store_rows_lost", "Rows given up on after the store's retries ran out",
            value=store.get("rows_lost", 0),
        )
        yield CounterMetricFamily(
            "mgcp_store_cdrs_lost", "Call detail records given up on after the store's retries ran out",
            value=store.get("cdrs_lost", 0),
        )
        yield GaugeMetricFamily(
            "mgcp_store_rows_waiting", "Rows queued for the store's next write", value=store.get("waiting", 0),
        )

        gateways = self.control.list_gateways()
        by_state = {state.value: 0 for state in GatewayState}
        for gateway in gateways:
            by_state[gateway.state.value] += 1
        gauge = GaugeMetricFamily("mgcp_gateways", "Gateways by state", labels=["state"])
        for state, count in by_state.items():
            gauge.add_metric([state], count)
        yield gauge
        yield GaugeMetricFamily(
            "mgcp_registered_endpoints", "Audited endpoints on gateways that are up",
            value=registered_endpoints(gateways, self.control.list_endpoints()),
        )
        yield GaugeMetricFamily(
            "mgcp_active_calls", "Calls not yet ended", value=active_calls(self.control.list_calls())
        )
        outcomes = CounterMetricFamily("mgcp_calls", "Ended calls by outcome", labels=["outcome"])
        for outcome, count in sorted(self.control.call_outcomes().items()):
            outcomes.add_metric([str(outcome)], count)
        yield outcomes
        overload = snapshot.get("overload")
        if overload is not None:
            yield from _overload(overload)
        trunks = self.control.list_trunks()
        if trunks:
            yield from _trunks(trunks)
        view = self.control.cluster()
        if view is not None:
            yield from _cluster(view)

    def _latency(self, snapshot: Mapping[str, Any]) -> Metric:
        """
        The snapshot counts per bucket (the last one past every bound);
        Prometheus wants cumulative counts per upper bound, +Inf last.
        """
        bounds = list(snapshot.get("latency_buckets", []))
        counts = list(snapshot.get("latency_counts", []))
        buckets: list[tuple[str, float]] = []
        total = 0
        for i, bound in enumerate(bounds):
            total += counts[i] if i < len(counts) else 0
            buckets.append((_bound(bound), total))
        total += sum(counts[len(bounds):])
        buckets.append(("+Inf", total))
        return HistogramMetricFamily(
            "mgcp_transaction_latency_seconds",
            "Time from sending a command to its final response",
            buckets=buckets,
            sum_value=snapshot.get("latency_sum"),
        )


# The cluster's counters (L{mgcpswitch.cluster.service.ClusterService.counters})
# that are counts since the agent started, by the metric each becomes.
_CLUSTER_COUNTERS = {
    "store_refused_rows": ("mgcp_cluster_store_rows_refused",
                           "Rows the store refused because another agent took over since they were queued"),
    "txid_blocks_drawn": ("mgcp_cluster_txid_blocks_drawn", "Blocks of transaction ids drawn from the store"),
}


def _cluster(view: ClusterView) -> Iterator[Metric]:
    """The agent's place in its cluster; an unknown value (no epoch seen yet) is left out."""
    role = GaugeMetricFamily("mgcp_cluster_role", "This agent's role in its cluster (1 for the current one)",
                             labels=["role"])
    for member in Role:
        role.add_metric([member.value], 1 if view.role is member else 0)
    yield role
    if view.epoch is not None:
        yield GaugeMetricFamily("mgcp_cluster_epoch", "The cluster's epoch (one more per takeover), as last seen",
                                value=view.epoch)
    if view.lease_age is not None:
        yield GaugeMetricFamily("mgcp_cluster_lease_age_seconds",
                                "Seconds since the active agent last renewed its lease, as last seen",
                                value=view.lease_age)
    if view.last_takeover is not None:
        yield GaugeMetricFamily("mgcp_cluster_last_takeover_timestamp_seconds",
                                "When the current epoch began (the database's clock)", value=view.last_takeover)
    yield CounterMetricFamily("mgcp_cluster_takeovers", "Times this agent became the active one",
                              value=view.takeovers)
    for key, (name, documentation) in _CLUSTER_COUNTERS.items():
        yield CounterMetricFamily(name, documentation, value=view.counters.get(key, 0))
    leadership = CounterMetricFamily(
        "mgcp_cluster_leadership_events",
        "The leadership's attempts to take over, lease renewals and their failures, database failures",
        labels=["event"],
    )
    for key, value in sorted(view.counters.items()):
        if key.startswith("leadership_"):
            leadership.add_metric([key[len("leadership_"):]], value)
    yield leadership


def _overload(snapshot: Mapping[str, Any]) -> Iterator[Metric]:
    """The overload guard (L{mgcpswitch.agent.overload}): whether it sheds, how much, and why."""
    yield GaugeMetricFamily("mgcp_overloaded", "1 while the overload guard sheds a share of new calls, else 0",
                            value=1 if snapshot["state"] == "overloaded" else 0)
    yield GaugeMetricFamily("mgcp_overload_admitted_share", "The share of new calls admitted now (1: all)",
                            value=snapshot["admitted_share"])
    yield GaugeMetricFamily("mgcp_overload_lateness_seconds",
                            "How late the reactor runs its timers, smoothed (what the guard watches)",
                            value=snapshot["lateness_ms"] / 1000)
    if "busy" in snapshot:
        yield GaugeMetricFamily("mgcp_overload_cpu_share",
                                "The share of a core the agent uses, smoothed over ~100 ms (the guard's leading signal)",
                                value=snapshot["busy"])
    if snapshot.get("admission_rate") is not None:
        yield GaugeMetricFamily("mgcp_overload_admission_rate",
                                "New calls per second admitted at most: what the agent's CPU per call allows at its "
                                "ceiling (absent until learned)", value=snapshot["admission_rate"])
        yield GaugeMetricFamily("mgcp_overload_cpu_per_call_seconds",
                                "The agent's CPU per admitted call, learned (a shed call counts shed_cost of one)",
                                value=snapshot["cpu_per_call_ms"] / 1000)
    if "calls_refused_by_rate" in snapshot:
        yield CounterMetricFamily("mgcp_overload_calls_refused_by_rate",
                                  "New calls shed because they came faster than the admission rate (part of calls_shed)",
                                  value=snapshot["calls_refused_by_rate"])
    if "receive_dropped" in snapshot:
        yield CounterMetricFamily("mgcp_receive_dropped",
                                  "Datagrams to the agent the kernel dropped, its receive buffer full (Linux)",
                                  value=snapshot["receive_dropped"])
        yield GaugeMetricFamily("mgcp_receive_queued_bytes",
                                "Kernel memory of the datagrams waiting in the agent's receive buffer (Linux)",
                                value=snapshot["receive_queued_bytes"])
    yield CounterMetricFamily("mgcp_overload_calls_shed", "New calls refused at once because the agent was overloaded",
                              value=snapshot["calls_shed"])
    yield CounterMetricFamily("mgcp_overload_calls_admitted", "New calls the overload guard admitted",
                              value=snapshot["calls_admitted"])
    yield CounterMetricFamily("mgcp_overload_episodes", "Times the agent became overloaded",
                              value=snapshot["episodes"])


# A trunk's message counters that count since it started, and the gauges.
_TRUNK_MESSAGE_COUNTERS = ("received", "sent", "malformed", "stray_responses", "retransmissions")
_TRUNK_MESSAGE_GAUGES = {
    "transactions": ("mgcp_trunk_sip_transactions", "SIP transactions the trunk keeps open"),
    "dialogs": ("mgcp_trunk_sip_dialogs", "SIP dialogs the trunk keeps open"),
}


def _trunks(trunks: list[TrunkView]) -> Iterator[Metric]:
    """Every trunk's state, registration, channels, calls (both ways) and SIP messages, labelled by trunk."""
    state = GaugeMetricFamily("mgcp_trunk_state", "The trunk's state from its keepalives (1 for the current one)",
                              labels=["trunk", "state"])
    registration = GaugeMetricFamily("mgcp_trunk_registration", "The trunk's registration (1 for the current one)",
                                     labels=["trunk", "state"])
    in_use = GaugeMetricFamily("mgcp_trunk_channels_in_use", "Channels held by calls on the trunk", labels=["trunk"])
    channels = GaugeMetricFamily("mgcp_trunk_channels", "The trunk's channels (max_channels)", labels=["trunk"])
    legs = GaugeMetricFamily("mgcp_trunk_calls_in_progress", "Calls in progress with a leg on the trunk (call control)",
                             labels=["trunk"])
    calls = CounterMetricFamily("mgcp_trunk_calls", "Calls placed on the trunk (out) and taken from it (in)",
                                labels=["trunk", "direction"])
    answered = CounterMetricFamily("mgcp_trunk_calls_answered", "Calls through the trunk that were answered",
                                   labels=["trunk", "direction"])
    full = CounterMetricFamily("mgcp_trunk_calls_refused_full", "Calls refused because every channel was busy",
                               labels=["trunk"])
    statuses = CounterMetricFamily("mgcp_trunk_final_statuses", "Calls' final SIP statuses, by direction and code",
                                   labels=["trunk", "direction", "code"])
    messages = CounterMetricFamily("mgcp_trunk_sip_messages", "SIP messages received, sent, malformed, stray, resent",
                                   labels=["trunk", "event"])
    gauges = {key: GaugeMetricFamily(name, doc, labels=["trunk"]) for key, (name, doc) in _TRUNK_MESSAGE_GAUGES.items()}
    for trunk in trunks:
        name = trunk.name
        for member in TrunkState:
            state.add_metric([name, member.value], 1 if trunk.state is member else 0)
        for kind in RegistrationState:
            registration.add_metric([name, kind.value], 1 if trunk.registration is kind else 0)
        in_use.add_metric([name], trunk.channels_in_use)
        channels.add_metric([name], trunk.max_channels)
        legs.add_metric([name], len(trunk.calls))
        calls.add_metric([name, "out"], trunk.calls_out)
        calls.add_metric([name, "in"], trunk.calls_in)
        answered.add_metric([name, "out"], trunk.answered_out)
        answered.add_metric([name, "in"], trunk.answered_in)
        full.add_metric([name], trunk.refused_full)
        for key, value in sorted(trunk.statuses.items()):
            direction, _, code = key.partition(" ")
            statuses.add_metric([name, direction, code], value)
        for key in _TRUNK_MESSAGE_COUNTERS:
            messages.add_metric([name, key], trunk.messages.get(key, 0))
        for key, gauge in gauges.items():
            gauge.add_metric([name], trunk.messages.get(key, 0))
    yield from (state, registration, in_use, channels, legs, calls, answered, full, statuses, messages)
    yield from gauges.values()


def _bound(value: float) -> str:
    return repr(float(value))


def make_registry(control: ICallControl) -> CollectorRegistry:
    """A private registry holding one L{SwitchCollector}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwitchCollector(control))
    return registry


class MetricsResource(JSONResource):
    """C{GET /metrics}: the registry in Prometheus text format."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted's Resource is unannotated upstream
        self.registry = registry

    def routes(self, path: tuple[str, ...]) -> Mapping[bytes, Any]:
        if path:
            raise not_found("no such route below /metrics")
        return {b"GET": self.scrape}

    async def scrape(self, request: Any) -> tuple[int, Raw]:
        return 200, Raw(CONTENT_TYPE_LATEST.encode("ascii"), generate_latest(self.registry))
