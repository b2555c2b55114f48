"""`tradingsystem health`: the database and the three services' `/health`, as one verdict and exit code."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import httpx
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tradingsystem.core.dbcli import embedded
from tradingsystem.core.settings import ConfigError, DatabaseSettings
from tradingsystem.launcher.plan import LauncherSettings
from tradingsystem.launcher.systemd import GATEWAY_UNIT, UnitState, gateway_unit

Level = Literal["healthy", "degraded", "critical"]
LEVEL_CODE: dict[str, int] = {"healthy": 0, "degraded": 1, "critical": 2}
CHECK_TIMEOUT_S = 3.0


@dataclass
class Component:
    """The verdict on one component and the reason for it, in words an operator can act on."""

    name: str
    level: Level
    state: str
    detail: str
    target: str
    answered: bool
    duration_s: float
    body: dict[str, Any] | None = None
    manager: str | None = None  # what runs it, when that is not the launcher (the gateway's systemd unit)


@dataclass
class Report:
    components: list[Component]

    @property
    def level(self) -> Level:
        worst: Level = "healthy"
        for component in self.components:
            if LEVEL_CODE[component.level] > LEVEL_CODE[worst]:
                worst = component.level
        return worst

    @property
    def exit_code(self) -> int:
        return LEVEL_CODE[self.level]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.level,
            "exitCode": self.exit_code,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "components": {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in self.components},
        }


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    head, sep, tail = dsn.partition("://")
    if not sep or "@" not in tail:
        return dsn
    creds, _, rest = tail.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{head}://{user}{':***' if ':' in creds else ''}@{rest}"


def database_target() -> tuple[str | None, str, str | None]:
    """(dsn, description, configuration error) for the database the services use."""
    settings = DatabaseSettings()
    if settings.configured:
        try:
            dsn = settings.dsn()
        except ConfigError as exc:
            return None, "configured database", str(exc)
        return dsn, f"configured database {redact(dsn)}", None
    pg = embedded()
    return pg.url, f"embedded PostgreSQL on 127.0.0.1:{pg.port}", None


async def check_database() -> Component:
    started = time.monotonic()
    dsn, description, error = database_target()
    if dsn is None:
        return Component("database", "critical", "misconfigured", f"{description}: {error}", description, False,
                         time.monotonic() - started)
    try:
        conn = await asyncpg.connect(dsn, timeout=CHECK_TIMEOUT_S)
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), CHECK_TIMEOUT_S)
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError) as exc:
        reason = str(exc) or type(exc).__name__
        return Component("database", "critical", "down",
                         f"{description} does not answer ({reason}): both APIs are unavailable",
                         redact(dsn), False, time.monotonic() - started)
    elapsed = time.monotonic() - started
    return Component("database", "healthy", "up", f"{description} answered SELECT 1 in {elapsed * 1000:.0f} ms",
                     redact(dsn), True, elapsed)


def http_reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {CHECK_TIMEOUT_S:.0f} s"
    return str(exc) or type(exc).__name__


async def _get(client: httpx.AsyncClient, url: str) -> tuple[int, dict[str, Any] | None]:
    response = await client.get(url)
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body if isinstance(body, dict) else None


async def check_api(client: httpx.AsyncClient, name: str, title: str, port: int, impact: str) -> Component:
    """The Workspace or the TP Capital API: down or unhealthy is critical, `degraded` is degraded."""
    url = f"http://127.0.0.1:{port}/health"
    started = time.monotonic()
    try:
        code, body = await _get(client, url)
    except httpx.HTTPError as exc:
        reason = http_reason(exc)
        return Component(name, "critical", "down", f"{title} is not answering on 127.0.0.1:{port} ({reason}): "
                         f"{impact}", url, False, time.monotonic() - started)
    elapsed = time.monotonic() - started
    body = body or {}
    status = str(body.get("status", "unknown"))
    database = body.get("database")
    db_text = f", database {database}" if database else ""
    if code == 200 and status == "healthy":
        uptime = body.get("uptime")
        up_text = f", up {float(uptime):.0f} s" if isinstance(uptime, int | float) else ""
        return Component(name, "healthy", status, f"{title} healthy{db_text}{up_text}", url, True, elapsed, body)
    if code == 200:
        return Component(name, "degraded", status, f"{title} reports {status}{db_text}: "
                         f"{body.get('error') or body.get('warnings') or 'no reason given'}", url, True, elapsed, body)
    error = body.get("error") or f"HTTP {code}"
    return Component(name, "critical", status if status != "unknown" else f"http_{code}",
                     f"{title} is unhealthy ({error}{db_text}): {impact}", url, True, elapsed, body)


async def check_gateway(client: httpx.AsyncClient, port: int, warn_bytes: int) -> Component:
    """The gateway: down is critical; answering but impaired (login, Telegram, queue) is degraded."""
    url = f"http://127.0.0.1:{port}/health"
    started = time.monotonic()
    try:
        code, body = await _get(client, url)
    except httpx.HTTPError as exc:
        reason = http_reason(exc)
        return Component("gateway", "critical", "down",
                         f"Telegram Gateway is not answering on 127.0.0.1:{port} ({reason}): new Telegram "
                         "messages are not being received", url, False, time.monotonic() - started)
    elapsed = time.monotonic() - started
    body = body or {}
    status = str(body.get("status", "unknown"))
    telegram = str(body.get("telegram", "unknown"))
    queue = body.get("failureQueue") or {}
    queue_bytes = int(queue.get("bytes", 0) or 0)
    facts = (f"telegram {telegram}, journal pending {body.get('journalPending', '?')}, "
             f"failure queue {queue.get('lines', '?')} lines / {queue_bytes} bytes")
    problems: list[str] = []
    if telegram == "login_required":
        problems.append("the Telegram session needs a login: run `tradingsystem gateway login`")
    elif telegram == "not_configured":
        problems.append("no Telegram source is configured (TELEGRAM_API_ID/TELEGRAM_API_HASH or "
                        "TELEGRAM_INGESTION_BOT_TOKEN)")
    elif telegram == "disconnected":
        problems.append("Telegram is disconnected")
    if queue_bytes > warn_bytes:
        problems.append(f"the failure queue is over its warning size ({warn_bytes} bytes): "
                        "`tradingsystem gateway queue status`")
    if body.get("error") and not problems:
        problems.append(str(body["error"]))
    problems.extend(str(w) for w in body.get("warnings") or [] if str(w) not in problems)
    if code == 200 and status == "healthy" and not problems:
        return Component("gateway", "healthy", telegram, f"Telegram Gateway healthy: {facts}", url, True, elapsed,
                         body)
    if code not in (200, 503):
        problems.append(f"unexpected HTTP {code}")
    return Component("gateway", "degraded", telegram if telegram != "unknown" else status,
                     f"Telegram Gateway {status}: {'; '.join(problems) or 'no reason given'} ({facts})",
                     url, True, elapsed, body)


async def collect(settings: LauncherSettings | None = None) -> Report:
    settings = settings or LauncherSettings()
    timeout = httpx.Timeout(CHECK_TIMEOUT_S)
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        components = await asyncio.gather(
            check_database(),
            check_api(client, "workspace", "Workspace API", settings.workspace_port,
                      "the Workspace backlog is unavailable"),
            check_api(client, "api", "TP Capital API", settings.api_port,
                      "signals are neither stored nor served and the gateway holds messages in its journal"),
            check_gateway(client, settings.gateway_port, settings.failure_queue_warn_bytes),
        )
    unit = await asyncio.to_thread(gateway_unit)
    if unit is not None:
        with_unit(components[-1], unit)
    return Report(list(components))


def with_unit(component: Component, unit: UnitState) -> None:
    """The gateway runs as the installed systemd unit: say so, and where to look when it is down."""
    component.manager = unit.describe()
    component.detail += f"; {unit.describe()}"
    if not component.answered and not unit.running:
        component.detail += f": `systemctl status {GATEWAY_UNIT}`, `journalctl -u {GATEWAY_UNIT}`"


def render_text(report: Report) -> str:
    width = max(len(c.name) for c in report.components)
    lines = [f"Overall: {report.level} (exit {report.exit_code})"]
    for component in report.components:
        lines.append(f"  {component.name.ljust(width)}  {component.level.ljust(8)}  {component.detail}")
    return "\n".join(lines)


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False)


def render_prometheus(report: Report) -> str:
    registry = CollectorRegistry()
    overall = Gauge("tradingsystem_health_status", "Overall health: 0 healthy, 1 degraded, 2 critical.",
                    registry=registry)
    level = Gauge("tradingsystem_component_health", "Component health: 0 healthy, 1 degraded, 2 critical.",
                  ["component"], registry=registry)
    up = Gauge("tradingsystem_component_up", "1 when the component answered its check.", ["component"],
               registry=registry)
    duration = Gauge("tradingsystem_component_check_duration_seconds", "How long the check took.",
                     ["component"], registry=registry)
    overall.set(report.exit_code)
    for component in report.components:
        level.labels(component=component.name).set(LEVEL_CODE[component.level])
        up.labels(component=component.name).set(1 if component.answered else 0)
        duration.labels(component=component.name).set(round(component.duration_s, 6))
    return generate_latest(registry).decode()


def health_command(output_format: str = "text") -> int:
    report = asyncio.run(collect())
    if output_format == "json":
        print(render_json(report))
    elif output_format == "prometheus":
        print(render_prometheus(report), end="")
    else:
        print(render_text(report))
    return report.exit_code
