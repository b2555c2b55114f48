"""`tradingsystem health`: each component's answer turned into the right level, text, JSON and metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.support.servers import ThreadServer

from tradingsystem.core.embedded import free_port
from tradingsystem.launcher.health import Report, collect, redact, render_json, render_prometheus, render_text
from tradingsystem.launcher.plan import LauncherSettings

HEALTHY_API = {"status": "healthy", "database": "connected", "uptime": 12.5, "timestamp": "2026-01-01T00:00:00Z"}
HEALTHY_GATEWAY = {"status": "healthy", "telegram": "connected", "sources": {"user": "connected", "bot":
                   "not_configured"}, "journalPending": 0, "failureQueue": {"lines": 0, "bytes": 0}, "uptime": 3}


class HealthStandIn:
    """A real HTTP server whose `/health` answers whatever the test sets (the service under test is the
    launcher's aggregation, not the service)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.code = 200
        self.body = body

        async def health(_: Request) -> JSONResponse:
            return JSONResponse(self.body, status_code=self.code)

        self.server = ThreadServer(Starlette(routes=[Route("/health", health)]))

    def set(self, code: int, body: dict[str, Any]) -> None:
        self.code, self.body = code, body


@pytest.fixture
def services(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, HealthStandIn]]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    stand_ins = {"workspace": HealthStandIn(dict(HEALTHY_API)), "api": HealthStandIn(dict(HEALTHY_API)),
                 "gateway": HealthStandIn(dict(HEALTHY_GATEWAY))}
    for stand_in in stand_ins.values():
        stand_in.server.start()
    yield stand_ins
    for stand_in in stand_ins.values():
        stand_in.server.stop()


def report_for(services: dict[str, HealthStandIn], warn_bytes: int = 52428800) -> Report:
    settings = LauncherSettings(WORKSPACE_PORT=services["workspace"].server.port,  # type: ignore[call-arg]
                                API_PORT=services["api"].server.port, GATEWAY_PORT=services["gateway"].server.port,
                                FAILURE_QUEUE_WARN_BYTES=warn_bytes)
    return asyncio.run(collect(settings))


def line(report: Report, component: str) -> str:
    return next(text for text in render_text(report).splitlines() if text.strip().startswith(component))


def test_everything_healthy_is_exit_0(services: dict[str, HealthStandIn]) -> None:
    report = report_for(services)
    assert report.exit_code == 0 and report.level == "healthy"
    assert render_text(report).startswith("Overall: healthy (exit 0)")
    assert "answered SELECT 1" in line(report, "database")
    assert "database connected" in line(report, "api")


@pytest.mark.parametrize(("telegram", "words"), [
    ("login_required", "tradingsystem gateway login"),
    ("not_configured", "no Telegram source is configured"),
    ("disconnected", "Telegram is disconnected"),
])
def test_an_impaired_gateway_is_degraded(services: dict[str, HealthStandIn], telegram: str, words: str) -> None:
    services["gateway"].set(503, {**HEALTHY_GATEWAY, "status": "unhealthy", "telegram": telegram,
                                  "error": "Telegram login required"})
    report = report_for(services)
    assert report.exit_code == 1
    assert "degraded" in line(report, "gateway") and words in line(report, "gateway")


def test_a_failure_queue_over_its_warning_size_is_degraded(services: dict[str, HealthStandIn]) -> None:
    services["gateway"].set(200, {**HEALTHY_GATEWAY, "failureQueue": {"lines": 900, "bytes": 2048}})
    report = report_for(services, warn_bytes=1024)
    assert report.exit_code == 1
    assert "failure queue is over its warning size" in line(report, "gateway")
    assert "gateway queue status" in line(report, "gateway")


def test_a_gateway_reporting_degraded_is_degraded(services: dict[str, HealthStandIn]) -> None:
    services["gateway"].set(200, {**HEALTHY_GATEWAY, "status": "degraded", "warnings": ["API unreachable"]})
    report = report_for(services)
    assert report.exit_code == 1
    assert "API unreachable" in line(report, "gateway")


def test_an_api_without_its_database_is_critical(services: dict[str, HealthStandIn]) -> None:
    services["api"].set(503, {"status": "unhealthy", "database": "disconnected", "error": "Database unavailable"})
    report = report_for(services)
    assert report.exit_code == 2
    text = line(report, "api")
    assert "critical" in text and "Database unavailable" in text and "database disconnected" in text


def test_an_api_reporting_degraded_is_degraded(services: dict[str, HealthStandIn]) -> None:
    services["workspace"].set(200, {**HEALTHY_API, "status": "degraded", "error": "slow queries"})
    report = report_for(services)
    assert report.exit_code == 1
    assert "slow queries" in line(report, "workspace")


def test_services_not_answering_are_critical(services: dict[str, HealthStandIn], database_url: str) -> None:
    settings = LauncherSettings(WORKSPACE_PORT=free_port(), API_PORT=free_port(),  # type: ignore[call-arg]
                                GATEWAY_PORT=free_port())
    report = asyncio.run(collect(settings))
    assert report.exit_code == 2
    for component in ("workspace", "api", "gateway"):
        assert report.as_dict()["components"][component]["level"] == "critical"
        assert "not answering" in line(report, component)
    assert "connection refused" in line(report, "api")


def test_an_unreachable_database_is_critical(services: dict[str, HealthStandIn],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:s3cret@127.0.0.1:{free_port()}/db")
    report = report_for(services)
    assert report.exit_code == 2
    text = line(report, "database")
    assert "critical" in text and "does not answer" in text
    assert "s3cret" not in render_text(report) + render_json(report)


def test_a_missing_database_setting_is_critical(services: dict[str, HealthStandIn],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("TIMESCALEDB_HOST", "db.example")
    monkeypatch.delenv("TIMESCALEDB_USER", raising=False)
    report = report_for(services)
    assert report.exit_code == 2
    assert "TIMESCALEDB_USER is required" in line(report, "database")


def test_json_and_prometheus_carry_the_same_verdict(services: dict[str, HealthStandIn]) -> None:
    services["gateway"].set(503, {**HEALTHY_GATEWAY, "status": "unhealthy", "telegram": "login_required"})
    report = report_for(services)
    data = json.loads(render_json(report))
    assert data["status"] == "degraded" and data["exitCode"] == 1
    assert data["components"]["gateway"]["state"] == "login_required"
    assert data["components"]["gateway"]["body"]["telegram"] == "login_required"
    samples = {(s.name, s.labels.get("component")): s.value
               for family in text_string_to_metric_families(render_prometheus(report)) for s in family.samples}
    assert samples[("tradingsystem_health_status", None)] == 1
    assert samples[("tradingsystem_component_health", "gateway")] == 1
    assert samples[("tradingsystem_component_health", "database")] == 0
    assert samples[("tradingsystem_component_up", "gateway")] == 1


def test_redact_hides_the_password_only() -> None:
    assert redact("postgresql://app:pw@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact("postgresql://app@db/x") == "postgresql://app@db/x"
    assert redact("postgresql://db/x") == "postgresql://db/x"
