"""`up|down --mode containers`: the database and the two APIs by docker compose, the gateway by systemd
(or, without the unit, as a local process under supervisord)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from tradingsystem.launcher.commands import (
    Reporter,
    UpFailed,
    describe_health,
    down_local,
    make_console,
    prepare_plan,
    up_local,
    wait_service,
)
from tradingsystem.launcher.plan import LauncherSettings, Program, service_command
from tradingsystem.launcher.systemd import GATEWAY_UNIT, gateway_unit

DATABASE_COMPOSE = Path("tools/compose/docker-compose.database.yml")
APPS_COMPOSE = Path("tools/compose/docker-compose.apps.yml")
# The containers need time to pull and build on a first run (the apps' health start_period is 90 s).
CONTAINER_TIMEOUT_S = 180.0


class MissingTool(Exception):
    """A command this mode needs is not installed; exit code 2."""


@dataclass(frozen=True)
class Step:
    """One external command of the container plan."""

    component: str
    description: str
    argv: list[str]


def compose_steps(docker: str, root: Path, action: str = "up", timeout_s: float = CONTAINER_TIMEOUT_S) -> list[Step]:
    """The compose commands, database first on the way up (it creates the network the apps join),
    apps first on the way down. `up` waits for docker's own health status (`--wait`): the apps start
    once the database is healthy, and `up` is done when docker, too, calls the containers healthy."""
    database = str(root / DATABASE_COMPOSE)
    apps = str(root / APPS_COMPOSE)
    if action == "up":
        wait = ["--wait", "--wait-timeout", str(int(timeout_s))]
        return [
            Step("timescaledb", "database container (compose)",
                 [docker, "compose", "-f", database, "up", "-d", *wait]),
            Step("apps", "TP Capital API and Workspace containers (compose)",
                 [docker, "compose", "-f", apps, "up", "-d", *wait]),
        ]
    return [
        Step("apps", "TP Capital API and Workspace containers (compose)", [docker, "compose", "-f", apps, "down"]),
        # Without -v: the database volume (the data) is kept.
        Step("timescaledb", "database container (compose)", [docker, "compose", "-f", database, "down"]),
    ]


def gateway_unit_step(systemctl: str, action: str = "start") -> Step:
    return Step("gateway", f"systemd unit {GATEWAY_UNIT}", [systemctl, action, GATEWAY_UNIT])


def compose_environment(workdir: Path, token: str | None) -> dict[str, str]:
    """The environment compose interpolates from: the process environment wins over the project's `.env`
    (compose would look for `.env` next to the compose file, not in the project directory)."""
    env = {key: value for key, value in dotenv_values(workdir / ".env").items() if value is not None}
    env.update(os.environ)
    if token and not env.get("GATEWAY_SECRET_TOKEN"):
        env["GATEWAY_SECRET_TOKEN"] = token
    return env


def require(tool: str, purpose: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingTool(f"`{tool}` is not installed or not on PATH: {purpose}")
    return path


def run_step(step: Step, env: dict[str, str], workdir: Path) -> None:
    try:
        result = subprocess.run(step.argv, cwd=workdir, env=env, capture_output=True, text=True, check=False,
                                timeout=CONTAINER_TIMEOUT_S * 5)
    except subprocess.TimeoutExpired as exc:
        raise UpFailed(step.component, f"`{' '.join(step.argv)}` did not finish") from exc
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip()).splitlines()[-15:]
        raise UpFailed(step.component, f"`{' '.join(step.argv)}` exited with {result.returncode}:\n    "
                       + "\n    ".join(output))


def up_containers_command(timeout_s: float = CONTAINER_TIMEOUT_S) -> int:
    console = make_console()
    reporter = Reporter(console)
    workdir = Path.cwd()
    try:
        docker = require("docker", "`up --mode containers` needs Docker with the compose plugin "
                         "(or use `tradingsystem up` to run everything as local processes)")
    except MissingTool as exc:
        reporter.fail("docker", str(exc))
        return 2
    for compose_file in (DATABASE_COMPOSE, APPS_COMPOSE):
        if not (workdir / compose_file).exists():
            reporter.fail("compose", f"{compose_file} not found: run this from the project directory")
            return 2
    try:
        plan = prepare_plan(reporter, local_database=False)
    except (OSError, ValueError) as exc:
        reporter.fail("configuration", str(exc))
        return 1
    token = plan.programs["gateway"].environment.get("GATEWAY_SECRET_TOKEN")
    env = compose_environment(workdir, token)
    settings = plan.settings
    systemctl = shutil.which("systemctl")
    try:
        for step in compose_steps(docker, workdir, timeout_s=timeout_s):
            started = time.monotonic()
            run_step(step, env, workdir)
            reporter.ok(step.component, f"{step.description} healthy ({time.monotonic() - started:.1f} s)")
        for program in (_container_program("workspace", settings), _container_program("api", settings)):
            answer = wait_service(None, program, timeout_s)
            reporter.ok(program.name, f"container {describe_health(program, answer)}")
        if (unit := gateway_unit(systemctl)) is not None:
            step = gateway_unit_step(unit.systemctl)
            run_step(step, env, workdir)
            answer = wait_service(None, plan.programs["gateway"], timeout_s)
            reporter.ok("gateway", f"systemd unit started: {describe_health(plan.programs['gateway'], answer)}")
        else:
            reporter.info("gateway", f"systemd unit {GATEWAY_UNIT} is not installed: running the gateway as a "
                          "local process under supervisord")
            up_local(plan, reporter, timeout_s, only={"gateway"})
    except UpFailed as exc:
        reporter.fail(exc.component, exc.reason, exc.log_file)
        return 1
    except ValueError as exc:
        reporter.fail("configuration", str(exc))
        return 1
    console.print(f"\n  Workspace API    http://127.0.0.1:{settings.workspace_port}/api/items")
    console.print(f"  TP Capital API   http://127.0.0.1:{settings.api_port}/signals")
    console.print(f"  Telegram Gateway http://127.0.0.1:{settings.gateway_port}/health")
    return 0


def down_containers_command() -> int:
    console = make_console()
    reporter = Reporter(console)
    workdir = Path.cwd()
    try:
        docker = require("docker", "`down --mode containers` needs Docker with the compose plugin")
    except MissingTool as exc:
        reporter.fail("docker", str(exc))
        return 2
    env = compose_environment(workdir, None)
    systemctl = shutil.which("systemctl")
    try:
        if (unit := gateway_unit(systemctl)) is not None:
            run_step(gateway_unit_step(unit.systemctl, "stop"), env, workdir)
            reporter.ok("gateway", f"systemd unit {GATEWAY_UNIT} stopped")
        down_local(reporter)
        for step in compose_steps(docker, workdir, "down"):
            run_step(step, env, workdir)
            reporter.ok(step.component, f"{step.description} down")
    except UpFailed as exc:
        reporter.fail(exc.component, exc.reason)
        return 1
    return 0


def _container_program(name: str, settings: LauncherSettings) -> Program:
    port = settings.workspace_port if name == "workspace" else settings.api_port
    return Program(name=name, title=name, command=service_command(name), port=port)

