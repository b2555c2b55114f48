"""The launcher end to end: real supervisord, embedded PostgreSQL and the three services on free ports."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.conftest import Stack
from tests.support.servers import wait_until
from tradingsystem.core.embedded import port_in_use

SERVICES = ("postgres", "workspace", "api", "gateway")


def all_ports_free(stack: Stack) -> bool:
    return not any(port_in_use(port) for port in stack.ports.values())


def test_up_twice_down_twice_and_the_demo_signals_flow(stack: Stack) -> None:
    first = stack.up()
    for name in ("supervisord", *SERVICES):
        assert f"✔ {name}" in first.stdout, first.stdout
    assert "started" in first.stdout
    assert f"http://127.0.0.1:{stack.ports['api']}/signals" in first.stdout
    secrets_file = stack.var / "secrets.env"
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    token = secrets_file.read_text().split("GATEWAY_SECRET_TOKEN=")[1].strip()
    assert token not in first.stdout + first.stderr
    assert token not in "".join(p.read_text() for p in (stack.var / "logs").glob("*.log"))

    programs = stack.programs()
    assert [programs[name]["state"] for name in SERVICES] == ["RUNNING"] * 4
    assert {programs[name]["port"] for name in SERVICES} == set(stack.ports.values())
    # PostgreSQL refuses to run as root: under root it runs as the dedicated system user.
    postgres_user = psutil.Process(programs["postgres"]["pid"]).username()
    assert postgres_user == ("pgserver" if os.geteuid() == 0 else psutil.Process().username())

    # Zero configuration: the gateway replays the bundled sample channel and signals arrive in the API.
    def signals_arrived() -> bool:
        body = stack.get("api", "/signals?limit=50").json()
        return len(body["data"]) >= 3

    wait_until(signals_arrived, timeout=60, message="replayed signals in GET /signals")
    signals = stack.get("api", "/signals?limit=50").json()["data"]
    assert {s["source"] for s in signals} == {"replay"}
    assert all(isinstance(s["buy_min"], int | float) for s in signals)
    assert stack.get("gateway", "/health").json()["telegram"] == "replay"

    config_before = (stack.var / "supervisor" / "supervisord.conf").stat().st_mtime_ns
    second = stack.up()
    assert "nothing changed" in second.stdout
    # Nothing was started: no promise that signals are about to appear.
    assert "within seconds" in first.stdout and "within seconds" not in second.stdout
    assert f"http://127.0.0.1:{stack.ports['api']}/signals" in second.stdout
    assert "already running" in second.stdout
    assert (stack.var / "supervisor" / "supervisord.conf").stat().st_mtime_ns == config_before
    assert {n: p["pid"] for n, p in stack.programs().items()} == {n: programs[n]["pid"] for n in SERVICES}

    down = stack.run("down")
    assert down.returncode == 0, down.stdout
    assert "every port is free" in down.stdout
    assert all_ports_free(stack)
    assert stack.run("status").returncode == 3

    again = stack.run("down")
    assert again.returncode == 0
    assert "Nothing is running" in again.stdout


def test_up_on_a_machine_where_the_database_user_does_not_exist_yet(stack: Stack) -> None:
    # A fresh machine has no `pgserver` user: under root, supervisord refuses a configuration that
    # names an unknown user, so `up` must create it before writing one. A name no machine has.
    user = f"tsfresh{secrets.token_hex(4)}"
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    env = {"EMBEDDED_PG_SYSTEM_USER": user}
    try:
        result = stack.up(extra_env=env)
        assert "✔ postgres" in result.stdout and "initialised a new cluster" in result.stdout, result.stdout
        programs = stack.programs()
        assert [programs[name]["state"] for name in SERVICES] == ["RUNNING"] * 4
        expected = user if os.geteuid() == 0 else psutil.Process().username()
        assert psutil.Process(programs["postgres"]["pid"]).username() == expected
        assert stack.get("api", "/health").status_code == 200
        down = stack.run("down", extra_env=env)
        assert down.returncode == 0, down.stdout
        assert all_ports_free(stack)
    finally:
        stack.run("down", extra_env=env)
        if os.geteuid() == 0:
            subprocess.run(["userdel", user], capture_output=True, check=False)


def test_a_crashed_service_is_restarted_and_status_shows_it(stack: Stack) -> None:
    stack.up()
    before = stack.programs()["api"]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> bool:
        api = stack.programs()["api"]
        return api["state"] == "RUNNING" and api["pid"] not in (None, before["pid"])

    wait_until(restarted, timeout=30, message="supervisord to restart the API")
    after = stack.programs()["api"]
    assert after["unexpectedExits"] == 1
    assert "SIGKILL" in after["lastExit"]
    wait_until(lambda: stack.get("api", "/health").status_code == 200, timeout=30, message="API healthy again")
    table = stack.run("status")
    assert table.returncode == 0
    assert "SIGKILL" in table.stdout and str(after["pid"]) in table.stdout


def test_a_port_held_by_a_foreign_process_is_named_and_left_alone(stack: Stack) -> None:
    port = stack.ports["api"]
    holder = subprocess.Popen([sys.executable, "-c",
                               "import socket, time\n"
                               "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                               f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(600)"])
    try:
        wait_until(lambda: port_in_use(port), timeout=20, message="the foreign listener")
        result = stack.run("up")
        assert result.returncode == 1
        assert f"port {port}" in result.stdout
        assert f"pid {holder.pid}" in result.stdout
        assert "nothing was stopped" in result.stdout
        assert holder.poll() is None
        # It refused before starting anything.
        assert stack.run("status").returncode == 3
        assert not port_in_use(stack.ports["workspace"])
    finally:
        holder.kill()
        holder.wait(10)


def test_the_embedded_database_directory_deleted_between_runs_is_reinitialised(stack: Stack) -> None:
    stack.up()
    created = httpx.post(stack.url("workspace", "/api/items"), json={
        "title": "Revisar alvos", "category": "task", "priority": "high"}, timeout=10)
    assert created.status_code == 201
    assert stack.run("down").returncode == 0
    shutil.rmtree(stack.var / "postgres")

    result = stack.up()
    assert "initialised a new cluster" in result.stdout
    assert "applied" in result.stdout
    assert stack.get("workspace", "/api/items").json()["count"] == 0
    assert stack.run("health").returncode == 0


def test_health_with_each_component_down_in_turn(stack: Stack) -> None:
    stack.up()
    healthy = stack.run("health")
    assert healthy.returncode == 0, healthy.stdout
    assert healthy.stdout.startswith("Overall: healthy")

    for program, component, words in (
        ("gateway", "gateway", "Telegram Gateway is not answering"),
        ("workspace", "workspace", "Workspace API is not answering"),
        ("api", "api", "TP Capital API is not answering"),
        ("postgres", "database", "does not answer"),
    ):
        stopped = stack.supervisorctl("stop", program)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        result = stack.run("health")
        assert result.returncode == 2, result.stdout
        assert "Overall: critical" in result.stdout
        line = next(line for line in result.stdout.splitlines() if line.strip().startswith(component))
        assert "critical" in line and words in line, result.stdout
        report = json.loads(stack.run("health", "--format", "json").stdout)
        assert report["status"] == "critical"
        assert report["components"][component]["level"] == "critical"
        metrics = stack.run("health", "--format", "prometheus").stdout
        assert f'tradingsystem_component_up{{component="{component}"}} 0.0' in metrics
        restarted = stack.up()
        assert any(line.startswith(f"✔ {program} ") and "started" in line for line in restarted.stdout.splitlines())
        # The gateway reports `API unreachable` (degraded) until its next delivery succeeds.
        wait_until(lambda: stack.run("health").returncode == 0, timeout=90, interval=1,
                   message=f"healthy again after restarting {program}")


def test_health_is_degraded_when_the_gateway_needs_a_telegram_login(stack: Stack) -> None:
    # A user account configured without a session: the gateway runs and waits for `gateway login`.
    stack.env.update({"TELEGRAM_API_ID": "123456", "TELEGRAM_API_HASH": "0123456789abcdef0123456789abcdef"})
    result = stack.up()
    assert "telegram: login_required" in result.stdout
    assert "replays the bundled sample" not in result.stdout
    health = stack.run("health")
    assert health.returncode == 1, health.stdout
    gateway_line = next(line for line in health.stdout.splitlines() if line.strip().startswith("gateway"))
    assert "degraded" in gateway_line and "tradingsystem gateway login" in gateway_line


def test_a_configured_database_gets_no_embedded_server_and_no_sample_data(stack: Stack, database_url: str) -> None:
    stack.env["DATABASE_URL"] = database_url
    result = stack.up()
    assert "✔ postgres" not in result.stdout
    programs = stack.programs()
    assert "postgres" not in programs
    assert not (stack.var / "postgres").exists()
    assert stack.get("gateway", "/health").json()["telegram"] == "not_configured"
    assert stack.get("api", "/signals").json()["count"] == 0
    assert stack.run("health").returncode == 1


def test_logs_print_and_follow_the_captured_output(stack: Stack) -> None:
    stack.up()
    printed = stack.run("logs", "gateway", "-n", "5")
    assert printed.returncode == 0
    assert 0 < len(printed.stdout.splitlines()) <= 5
    every = stack.run("logs", "-n", "2")
    assert {"postgres", "workspace", "api", "gateway", "supervisord"} == {
        line.split(" | ")[0].strip() for line in every.stdout.splitlines()}

    follower = subprocess.Popen([sys.executable, "-m", "tradingsystem.cli", "logs", "supervisord", "-f", "-n", "1"],
                                cwd=stack.root, env=stack.env, stdout=subprocess.PIPE, text=True,
                                preexec_fn=_interruptible)
    try:
        assert follower.stdout is not None
        # The first line (the last one already logged) shows the follower is reading.
        assert follower.stdout.readline().strip()
        # `stop` makes supervisord log a line; the follower must print it.
        assert stack.supervisorctl("stop", "gateway").returncode == 0
        seen = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "stopped: gateway" not in seen:
            seen += follower.stdout.readline()
        assert "stopped: gateway" in seen
        follower.send_signal(signal.SIGINT)  # Ctrl-C ends a follow quietly
        assert follower.wait(10) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        if follower.stdout is not None:
            follower.stdout.close()


def _interruptible() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and a child inherits that
    # (Python then installs no KeyboardInterrupt handler); this test stands for Ctrl-C at a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_containers_mode_without_docker_is_a_clear_error(stack: Stack, tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    result = stack.run("up", "--mode", "containers", path=str(empty_bin))
    assert result.returncode == 2
    assert "`docker` is not installed" in result.stdout


def test_the_operator_scripts_wrap_the_commands(stack: Stack) -> None:
    repo = Path(__file__).resolve().parents[2]

    def script(relative: str, *args: str) -> subprocess.CompletedProcess[str]:
        # The scripts run from the project directory: the var directory must be absolute.
        return subprocess.run(["bash", str(repo / relative), *args], env=stack.env, capture_output=True, text=True,
                              timeout=180, check=False)

    assert script("scripts/universal/status.sh").returncode == 3
    started = script("scripts/universal/start.sh")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "All services are up" in started.stdout
    status = script("scripts/universal/status.sh", "--json")
    assert status.returncode == 0
    assert {p["state"] for p in json.loads(status.stdout)["programs"]} == {"RUNNING"}
    wait_until(lambda: script("scripts/maintenance/health-check-all.sh").returncode == 0, timeout=60, interval=1,
               message="health-check-all.sh to report healthy")
    report = json.loads(script("scripts/maintenance/health-check-all.sh", "--format", "json").stdout)
    assert set(report["components"]) == {"database", "workspace", "api", "gateway"}
    stopped = script("scripts/universal/stop.sh")
    assert stopped.returncode == 0 and "every port is free" in stopped.stdout
    assert all_ports_free(stack)
    assert script("scripts/maintenance/health-check-all.sh").returncode == 2
