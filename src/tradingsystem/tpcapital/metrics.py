"""TP Capital's Prometheus metrics (names fixed by the contract), on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PARSE_KINDS = ("signal", "update", "noise")
FAILURE_REASONS = ("missing_field", "invalid_field", "invalid_body", "batch_too_large")


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
        for kind in PARSE_KINDS:
            self.parsed.labels(kind)
        for reason in FAILURE_REASONS:
            self.validation_failures.labels(reason)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_duration.labels(method, route, str(status)).observe(seconds)
