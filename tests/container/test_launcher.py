"""The container stack through the project's own commands: `tradingsystem up|health|down --mode containers`
and the wrapper scripts, in a copy of the project so that nothing of the checkout's `.env` or `var/` is used."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.compose import SAMPLE, ComposeStack, copy_project, docker
from tests.support.servers import wait_until

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

SERVICES = ("timescaledb", "tp-capital-api", "workspace")


@pytest.fixture
def project(images: dict[str, str]) -> Iterator[ComposeStack]:
    root = Path(tempfile.mkdtemp(prefix="ts-container-project-"))
    copy_project(root)
    stack = ComposeStack.create(images, root=root, TRADINGSYSTEM_VAR_DIR=str(root / "var"),
                                TELEGRAM_REPLAY_FILE=str(SAMPLE), REPLAY_INTERVAL_MS="5")
    try:
        yield stack
    finally:
        try:
            stack.run("tradingsystem", "down", "--mode", "containers")
        finally:
            stack.destroy()
            shutil.rmtree(root, ignore_errors=True)


def outputs(stack: ComposeStack) -> str:
    return "\n".join(stack.outputs)


def health(stack: ComposeStack, *command: str) -> tuple[int, dict[str, object]]:
    result = stack.run(*command, "--format", "json")
    return result.returncode, json.loads(result.stdout)


def test_up_mode_containers_serves_signals_and_health_grades_the_stack(project: ComposeStack) -> None:
    up = project.run("tradingsystem", "up", "--mode", "containers")
    assert up.returncode == 0, outputs(project)
    for service in SERVICES:
        assert project.health(service) == "healthy", service
    # The gateway runs on the host (here under supervisord: no systemd unit) and publishes into the container.
    assert "local process under supervisord" in up.stdout

    def signals() -> int:
        body = httpx.get(project.url("api", "/signals"), timeout=5, trust_env=False).json()
        return int(body["count"])

    wait_until(lambda: signals() >= 5, 90, message="replayed signals served by the API container")

    for command in (("tradingsystem", "health"), ("scripts/maintenance/health-check-all.sh",)):
        code, report = health(project, *command)
        assert code == 0 and report["status"] == "healthy", (command, report)
        components = report["components"]
        assert isinstance(components, dict)
        assert {name: c["level"] for name, c in components.items()} == {
            "database": "healthy", "workspace": "healthy", "api": "healthy", "gateway": "healthy"}

    docker("stop", project.container("tp-capital-api"))
    for command in (("tradingsystem", "health"), ("scripts/maintenance/health-check-all.sh",)):
        code, report = health(project, *command)
        assert code == 2 and report["status"] == "critical", (command, report)
        components = report["components"]
        assert isinstance(components, dict)
        assert components["api"]["level"] == "critical" and components["api"]["state"] == "down"
        assert components["workspace"]["level"] == "healthy"
    text = project.run("tradingsystem", "health")
    assert text.returncode == 2 and "Overall: critical" in text.stdout

    down = project.run("tradingsystem", "down", "--mode", "containers")
    assert down.returncode == 0, outputs(project)
    assert project.running() == []
    assert docker("volume", "inspect", project.volume, check=False).returncode == 0, "the data volume is gone"
    with pytest.raises(httpx.ConnectError):
        httpx.get(project.url("gateway", "/health"), timeout=5, trust_env=False)


def test_the_start_and_stop_scripts_run_the_container_stack(project: ComposeStack) -> None:
    start = project.run("scripts/universal/start.sh", "--mode", "containers")
    assert start.returncode == 0, outputs(project)
    for service in SERVICES:
        assert project.health(service) == "healthy", service
    body = httpx.get(project.url("workspace", "/health"), timeout=5, trust_env=False).json()
    assert body["status"] == "healthy"
    stop = project.run("scripts/universal/stop.sh", "--mode", "containers")
    assert stop.returncode == 0, outputs(project)
    assert project.running() == []
    assert docker("volume", "inspect", project.volume, check=False).returncode == 0
