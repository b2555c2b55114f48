"""The Workspace's Prometheus metrics (names fixed by the contract), on the service's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WorkspaceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.created = Counter("workspace_items_created", "Items created", registry=r)
        self.updated = Counter("workspace_items_updated", "Items updated", registry=r)
        self.deleted = Counter("workspace_items_deleted", "Items deleted", registry=r)
        self.items_total = Gauge("workspace_items_total", "Items currently stored", registry=r)
        self.db_status = Gauge("workspace_database_connection_status", "1 when the database answers", registry=r)
        self.query_duration = Histogram(
            "workspace_query_duration_seconds", "Database time per operation", ["operation"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
