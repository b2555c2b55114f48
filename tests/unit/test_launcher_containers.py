"""`up|down --mode containers`: the compose and systemd commands, and clear errors when a tool is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradingsystem.launcher.containers import (
    APPS_COMPOSE,
    DATABASE_COMPOSE,
    compose_environment,
    compose_steps,
    gateway_unit_step,
)

REPO = Path(__file__).resolve().parents[2]


def test_compose_brings_the_database_up_before_the_apps() -> None:
    steps = compose_steps("/usr/bin/docker", REPO, timeout_s=240)
    # --wait: each file is done when docker's own health status says healthy, so the apps never start
    # against a database that is still initialising.
    wait = ["--wait", "--wait-timeout", "240"]
    assert [step.argv for step in steps] == [
        ["/usr/bin/docker", "compose", "-f", str(REPO / DATABASE_COMPOSE), "up", "-d", *wait],
        ["/usr/bin/docker", "compose", "-f", str(REPO / APPS_COMPOSE), "up", "-d", *wait],
    ]
    assert all(Path(step.argv[3]).exists() for step in steps)


def test_compose_takes_the_apps_down_first_and_keeps_the_data_volume() -> None:
    steps = compose_steps("docker", REPO, "down")
    assert [step.component for step in steps] == ["apps", "timescaledb"]
    assert all(step.argv[-1] == "down" and "-v" not in step.argv for step in steps)


def test_the_gateway_unit_is_driven_by_systemctl() -> None:
    assert gateway_unit_step("/bin/systemctl").argv == ["/bin/systemctl", "start", "tp-capital-gateway.service"]
    assert gateway_unit_step("/bin/systemctl", "stop").argv[1] == "stop"


def stand_in(tmp_path: Path, name: str, script: str) -> Path:
    """A real executable playing an external tool (Docker, systemctl) that this machine does not run."""
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def test_compose_sees_the_project_dotenv_under_the_process_environment(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TIMESCALEDB_PASSWORD=from-dotenv\nLOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.delenv("GATEWAY_SECRET_TOKEN", raising=False)
    env = compose_environment(tmp_path, "generated")
    assert env["TIMESCALEDB_PASSWORD"] == "from-dotenv"
    assert env["LOG_LEVEL"] == "WARNING"
    assert env["GATEWAY_SECRET_TOKEN"] == "generated"
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", "operator")
    assert compose_environment(tmp_path, "generated")["GATEWAY_SECRET_TOKEN"] == "operator"


def run_cli(tmp_path: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TELEGRAM_", "GATEWAY_"))}
    env.update({"PATH": path, "TRADINGSYSTEM_VAR_DIR": str(tmp_path / "var")})
    return subprocess.run([sys.executable, "-m", "tradingsystem.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("command", ["up", "down"])
def test_without_docker_containers_mode_exits_2_with_a_message(tmp_path: Path, command: str) -> None:
    (tmp_path / "bin").mkdir()
    result = run_cli(tmp_path, str(tmp_path / "bin"), command, "--mode", "containers")
    assert result.returncode == 2
    assert "`docker` is not installed or not on PATH" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_failing_compose_stops_up_with_its_message(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    stand_in(tmp_path, "docker", f'echo "$@" >> {calls}\n'
             'echo "required variable TIMESCALEDB_PASSWORD is missing a value" >&2\nexit 1\n')
    result = run_cli(tmp_path, str(tmp_path / "bin"), "up", "--mode", "containers")
    assert result.returncode == 1
    assert "timescaledb" in result.stdout and "TIMESCALEDB_PASSWORD is missing a value" in result.stdout
    # It stopped at the database: the apps file was never run.
    assert calls.read_text().splitlines() == [f"compose -f {REPO / DATABASE_COMPOSE} up -d --wait --wait-timeout 180"]
    # The generated token is private to the var directory and never printed.
    token = (tmp_path / "var" / "secrets.env").read_text().split("GATEWAY_SECRET_TOKEN=")[1].strip()
    assert token not in result.stdout
