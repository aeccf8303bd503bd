"""/metrics: the gateway's counters, latencies and state in the Prometheus text format.

Nothing is counted here: at each scrape, :class:`GatewayCollector` reads what the service
already counts (``Gateway.stats``, ``Gateway.refused``, the intake's received count, the
link's connected flag, the latency histograms of ingest/timings.py) and the devices' newest
record times from the database. The pipeline's hot path pays nothing for metrics.

Names follow Prometheus' conventions: the ``signet_`` prefix, ``_total`` on counters, seconds.
The reference of every metric is in docs/GATEWAY.md ("Metrics"); a test checks that the two
name the same metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from signet_gateway.ingest.service import Gateway
from signet_gateway.ingest.timings import Histogram
from signet_gateway.store.model import now_ms
from signet_gateway.verify.refusals import REASONS

from .reader import Reader
from .views import GATEWAY_REASONS

__all__ = ["CONTENT_TYPE", "METRICS", "GatewayCollector", "exposition", "registry_for"]

# The text format generate_latest() writes, as every Prometheus version reads it (the library's
# CONTENT_TYPE_LATEST names a newer version in recent releases).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# name (as exposed, counters with _total) -> help text; the docs' reference is checked against it.
METRICS: Final = {
    "signet_messages_received_total": "MQTT messages taken from the broker (rec topics).",
    "signet_records_received_total": "Records (and unreadable messages) the gateway decided on:"
    " stored + duplicate + equivocation + refused.",
    "signet_records_stored_total": "Records verified and stored as new (accepted).",
    "signet_records_duplicate_total": "Records already stored, received again (not counted).",
    "signet_records_equivocation_total": "Records whose n was stored with a different payload:"
    " kept as evidence, device flagged.",
    "signet_records_refused_total": "Refused records or messages, by reason.",
    "signet_commits_total": "Batches committed (one transaction each).",
    "signet_acks_published_total": "Retained acks published to devices.",
    "signet_backlog_messages": "Messages received and not yet committed (verifying, waiting for"
    " their batch, or held while the store cannot be written).",
    "signet_broker_connected": "1 while the gateway is connected to the broker.",
    "signet_ready": "1 while /readyz says ready.",
    "signet_commit_seconds": "Time to commit one batch (transaction, fsync, aggregates, log).",
    "signet_ack_latency_seconds": "From the arrival of a batch's first message to its PUBACK"
    " after the commit.",
    "signet_verify_chunk_seconds": "From handing a chunk of up to 128 messages to a verifier"
    " process to its results (with at most one chunk queued ahead of it).",
    "signet_log_seconds": "The transparency log's work on the writer thread: a batch's"
    " appends (inside its commit), the catch-up at start, a checkpoint.",
    "signet_log_cpu_seconds_total": "The writer thread's CPU time in the transparency log's"
    " work (the pieces of signet_log_seconds).",
    "signet_device_last_seen_age_seconds": "Seconds since the receive time of the device's"
    " newest record (its highest stored n), per enrolled device with records.",
    "signet_devices": "Enrolled keys by status (active, rotated, revoked).",
}


def _histogram(name: str, histogram: Histogram) -> HistogramMetricFamily:
    buckets, total, _count = histogram.snapshot()
    return HistogramMetricFamily(
        name,
        METRICS[name],
        buckets=[("+Inf" if b == float("inf") else repr(b), c) for b, c in buckets],
        sum_value=total,
    )


def _counter(name: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name.removesuffix("_total"), METRICS[name], value=value)


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name], value=value)


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway, reader: Reader) -> None:
        self.gateway = gateway
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        gw = self.gateway
        stats = gw.stats
        refused = dict(gw.refused)
        received = gw.intake.received
        yield _counter("signet_messages_received_total", received)
        decided = (
            stats["stored"] + stats["duplicates"] + stats["equivocations"] + sum(refused.values())
        )
        yield _counter("signet_records_received_total", decided)
        yield _counter("signet_records_stored_total", stats["stored"])
        yield _counter("signet_records_duplicate_total", stats["duplicates"])
        yield _counter("signet_records_equivocation_total", stats["equivocations"])
        by_reason = CounterMetricFamily(
            "signet_records_refused", METRICS["signet_records_refused_total"], labels=["reason"]
        )
        # Every known reason from the start (0), so that rate() sees the first refusal.
        for reason in sorted({*REASONS, *GATEWAY_REASONS, *refused}):
            by_reason.add_metric([reason], refused.get(reason, 0))
        yield by_reason
        yield _counter("signet_commits_total", stats["commits"])
        yield _counter("signet_acks_published_total", gw.link.acks_published)
        yield _gauge("signet_backlog_messages", max(0, received - stats["messages"]))
        yield _gauge("signet_broker_connected", 1 if gw.link.connected.is_set() else 0)
        yield _gauge("signet_ready", 1 if gw.readiness()[0] else 0)
        yield _histogram("signet_commit_seconds", gw.timings.commit)
        yield _histogram("signet_ack_latency_seconds", gw.timings.ack)
        yield _histogram("signet_verify_chunk_seconds", gw.timings.verify)
        yield _histogram("signet_log_seconds", gw.timings.log.seconds)
        yield _counter("signet_log_cpu_seconds_total", gw.timings.log.cpu_s)
        yield from self._from_database()

    def _from_database(self) -> Iterator[Metric]:
        conn = self.reader.conn()
        age = GaugeMetricFamily(
            "signet_device_last_seen_age_seconds",
            METRICS["signet_device_last_seen_age_seconds"],
            labels=["device", "name"],
        )
        now = now_ms()
        for kid, name, received_ms in conn.execute(
            "SELECT s.kid, d.name, r.received_ms FROM seqstate s"
            " JOIN records r ON r.kid = s.kid AND r.n = s.highest"
            " LEFT JOIN devices d ON d.kid = s.kid ORDER BY s.kid"
        ):
            age.add_metric([kid, name or ""], max(0, now - received_ms) / 1000)
        yield age
        devices = GaugeMetricFamily("signet_devices", METRICS["signet_devices"], labels=["status"])
        statuses = {"active": 0, "rotated": 0, "revoked": 0}
        for revoked_ms, last_n in conn.execute("SELECT revoked_ms, last_n FROM devices"):
            if revoked_ms is not None and now >= revoked_ms:
                statuses["revoked"] += 1
            elif last_n is not None:
                statuses["rotated"] += 1
            else:
                statuses["active"] += 1
        for status, count in statuses.items():
            devices.add_metric([status], count)
        yield devices


def registry_for(gateway: Gateway, reader: Reader) -> CollectorRegistry:
    """A registry of its own (not the library's global one): the gateway's metrics and the
    process' (CPU, memory, open files: process_*)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(gateway, reader))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
