"""The launcher's commands on the root `tradingsystem` app; their bodies import lazily so `--help` stays fast."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Mode(StrEnum):
    local = "local"
    containers = "containers"


class HealthFormat(StrEnum):
    text = "text"
    json = "json"
    prometheus = "prometheus"


class LogSource(StrEnum):
    postgres = "postgres"
    workspace = "workspace"
    api = "api"
    gateway = "gateway"
    supervisord = "supervisord"


def up(
    mode: Annotated[Mode, typer.Option("--mode", help="local: everything under supervisord; containers: docker "
                                       "compose for the database and the APIs, systemd for the gateway.")]
    = Mode.local,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for each service.")] = 60.0,
) -> None:
    """Start whatever is not running (database, migrations, Workspace, API, gateway) and wait until healthy."""
    if mode is Mode.containers:
        from tradingsystem.launcher.containers import up_containers_command

        raise typer.Exit(up_containers_command(max(timeout, 180.0)))
    from tradingsystem.launcher.commands import up_command

    raise typer.Exit(up_command(timeout))


def down(
    mode: Annotated[Mode, typer.Option("--mode", help="containers: also stop the compose services and the "
                                       "gateway's systemd unit.")] = Mode.local,
) -> None:
    """Stop everything `up` started (services, then the database) and free every port."""
    if mode is Mode.containers:
        from tradingsystem.launcher.containers import down_containers_command

        raise typer.Exit(down_containers_command())
    from tradingsystem.launcher.commands import down_command

    raise typer.Exit(down_command())


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each program's supervisord state, pid, uptime and port (exit 0 all running, 1 some not, 3 none)."""
    from tradingsystem.launcher.commands import status_command

    raise typer.Exit(status_command(as_json))


def health(
    output_format: Annotated[HealthFormat, typer.Option("--format", help="text, json or prometheus.")]
    = HealthFormat.text,
) -> None:
    """Check the database and the three services (exit 0 healthy, 1 degraded, 2 critical)."""
    from tradingsystem.launcher.health import health_command

    raise typer.Exit(health_command(output_format.value))


def logs(
    service: Annotated[LogSource | None, typer.Argument(help="One service (default: all).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many past lines to print.")] = 100,
) -> None:
    """Print (or follow) the logs supervisord captured for one or all services."""
    from tradingsystem.launcher.commands import logs_command

    raise typer.Exit(logs_command(service.value if service else None, follow, lines))


def register(app: typer.Typer) -> None:
    """Add `up`, `down`, `status`, `health` and `logs` to the root command."""
    for command in (up, down, status, health, logs):
        app.command()(command)
