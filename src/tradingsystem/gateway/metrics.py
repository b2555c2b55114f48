"""The gateway's Prometheus metrics (contract names), all present from startup on a per-instance registry."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# reasons a message left the normal path; pre-created so every series exists from startup at 0
FAILURE_REASONS = ("max_retries", "rejected", "queue_full")
JOURNAL_WRITE_ERRORS = ("disk_full", "read_only", "error")


class GatewayMetrics:
    """One instance per gateway process (tests run several gateways in one interpreter)."""

    def __init__(self, max_retries: int, channels: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connection_status = Gauge(
            "telegram_connection_status", "1 when at least one Telegram source is connected", registry=r
        )
        self.messages_received = Counter(
            "telegram_messages_received", "Messages received and journaled, per channel", ["channel_id"],
            registry=r,
        )
        self.messages_published = Counter(
            "telegram_messages_published", "Messages the API acknowledged (stored or duplicate)", registry=r
        )
        self.publish_failures = Counter(
            "telegram_publish_failures", "Messages that left the normal publishing path, by reason",
            ["reason"], registry=r,
        )
        self.retry_attempts = Counter(
            "telegram_retry_attempts", "Publishing retries, by retry number", ["attempt_number"], registry=r
        )
        self.failure_queue_size = Gauge("telegram_failure_queue_size", "Lines in the failure queue", registry=r)
        self.failure_queue_bytes = Gauge("telegram_failure_queue_bytes", "Size of the failure queue", registry=r)
        self.journal_pending = Gauge(
            "telegram_journal_pending", "Journaled messages the API has not acknowledged yet", registry=r
        )
        self.publish_duration = Histogram(
            "telegram_publish_duration_seconds", "Duration of one POST to the ingest endpoint",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), registry=r,
        )
        # Not in the contract's list: an extra series, so that FloodWait pauses are visible to operators.
        self.flood_wait_seconds = Counter(
            "telegram_flood_wait_seconds", "Seconds waited because Telegram answered FloodWait", registry=r
        )
        self.failure_queue_corrupt_lines = Counter(
            "telegram_failure_queue_corrupt_lines",
            "Unreadable failure-queue lines (torn or garbage) moved to the corrupt sidecar file", registry=r,
        )
        self.journal_corrupt = Counter(
            "telegram_journal_corrupt", "Damaged journal files set aside (their readable entries journaled again)",
            registry=r,
        )
        self.journal_write_errors = Counter(
            "telegram_journal_write_errors", "Journal writes (appends and state changes) that failed, by reason",
            ["reason"], registry=r,
        )
        self.journal_disk_full = Gauge(
            "telegram_journal_disk_full", "1 while journal writes fail because the disk is full", registry=r
        )
        self.journal_oldest_pending_age = Gauge(
            "telegram_journal_oldest_pending_age_seconds",
            "Age of the oldest journaled message the API has not acknowledged (0 when none)", registry=r,
        )
        for reason in JOURNAL_WRITE_ERRORS:
            self.journal_write_errors.labels(reason=reason)
        self.connection_status.set(0)
        for reason in FAILURE_REASONS:
            self.publish_failures.labels(reason=reason)
        for n in range(1, max_retries + 1):
            self.retry_attempts.labels(attempt_number=str(n))
        for channel in channels:
            self.messages_received.labels(channel_id=channel)

    def render(self) -> bytes:
        return generate_latest(self.registry)
