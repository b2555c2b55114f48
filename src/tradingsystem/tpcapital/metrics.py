"""TP Capital's Prometheus metrics (names fixed by the contract), on the service's own registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PARSE_KINDS = ("signal", "update", "noise")
FAILURE_REASONS = ("missing_field", "invalid_field", "invalid_body", "batch_too_large")


# The channel performance gauges: one series per channel, for at most this many channels (those with the most
# signals), so that the label set stays bounded however many channels send messages.
MAX_PERFORMANCE_CHANNELS = 20
PERFORMANCE_GAUGES = (
    ("tpcapital_channel_signals", "Signals published by the channel", "signals"),
    ("tpcapital_channel_closed_signals", "Signals whose trade has ended (stop, close, final target, expiry)",
     "closed"),
    ("tpcapital_channel_target1_hit_ratio", "Share of the channel's signals that reached target 1",
     "target_1_hit_rate"),
    ("tpcapital_channel_final_target_hit_ratio", "Share of the channel's signals that reached their final target",
     "final_target_hit_rate"),
    ("tpcapital_channel_stop_ratio", "Share of the channel's signals that were stopped", "stop_rate"),
    ("tpcapital_channel_gain_mean_percent", "Mean gain of the channel's signals, in percent", "mean_gain_pct"),
    ("tpcapital_channel_gain_median_percent", "Median gain of the channel's signals, in percent", "median_gain_pct"),
    ("tpcapital_channel_first_target_mean_seconds", "Mean time from signal to its first target",
     "mean_seconds_to_first_target"),
)


class ChannelPerformanceCollector(Collector):
    """The latest channel performance figures as gauges; a figure with no value (no data) is left out."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def update(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows[:MAX_PERFORMANCE_CHANNELS]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = self.rows
        for name, documentation, key in PERFORMANCE_GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["channel"])
            for row in rows:
                if row[key] is not None:
                    family.add_metric([row["channel"]], float(row[key]))
            yield family


class TpCapitalMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter("tpcapital_messages_received", "Messages received on /ingest*", registry=r)
        self.stored = Counter("tpcapital_messages_stored", "Messages stored (first delivery)", registry=r)
        self.duplicates = Counter("tpcapital_duplicate_messages", "Deliveries of an already stored message",
                                  registry=r)
        self.parsed = Counter("tpcapital_signals_parsed", "Stored messages by parse result", ["kind"], registry=r)
        self.validation_failures = Counter("tpcapital_validation_failures", "Rejected payloads", ["reason"],
                                           registry=r)
        self.auth_failures = Counter("tpcapital_authentication_failures", "Missing or wrong gateway token",
                                     registry=r)
        self.db_status = Gauge("tpcapital_database_connection_status", "1 when the database answers", registry=r)
        self.http_duration = Histogram(
            "tpcapital_http_request_duration_seconds", "HTTP request duration", ["method", "route", "status"],
            registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.ingest_group_size = Histogram(
            "tpcapital_ingest_group_size", "Single deliveries stored together by one statement and one commit",
            registry=r, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
        )
        self.channel_performance = ChannelPerformanceCollector()
        r.register(self.channel_performance)
        for kind in PARSE_KINDS:
            self.parsed.labels(kind)
        for reason in FAILURE_REASONS:
            self.validation_failures.labels(reason)

        # Label children looked up once: `.labels()` costs a lock and a dict walk on every call.
        self.parsed_by_kind = {kind: self.parsed.labels(kind) for kind in PARSE_KINDS}
        self._durations: dict[tuple[str, str, int], Any] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # Bounded: route templates, methods and statuses are finite sets.
        child = self._durations.get((method, route, status))
        if child is None:
            child = self._durations[(method, route, status)] = self.http_duration.labels(method, route, str(status))
        child.observe(seconds)
