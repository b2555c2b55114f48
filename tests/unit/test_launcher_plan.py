"""The launcher's plan: which programs run with which environment, and a config supervisord itself accepts."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shlex
import subprocess
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from tradingsystem.launcher.commands import ensure_run_as_user
from tradingsystem.launcher.plan import (
    DEMO_REPLAY_INTERVAL_MS,
    LauncherSettings,
    Paths,
    Plan,
    UnrepresentableValue,
    build_plan,
    ensure_generated_token,
    render_config,
    sample_export,
)

CLEARED = ("DATABASE_URL", "TIMESCALEDB_HOST", "TELEGRAM_API_ID", "TELEGRAM_API_HASH", "TELEGRAM_INGESTION_BOT_TOKEN",
           "TELEGRAM_REPLAY_FILE", "REPLAY_INTERVAL_MS", "GATEWAY_SECRET_TOKEN", "API_SECRET_TOKEN", "API_ENDPOINT",
           "GATEWAY_DATA_DIR", "HOST", "WORKSPACE_PORT", "API_PORT", "GATEWAY_PORT", "EMBEDDED_PG_PORT",
           "EMBEDDED_PG_SYSTEM_USER")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no project `.env` leaks in
    monkeypatch.setenv("TRADINGSYSTEM_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WORKSPACE_PORT", "13200")
    monkeypatch.setenv("API_PORT", "14005")
    monkeypatch.setenv("GATEWAY_PORT", "14006")
    monkeypatch.setenv("EMBEDDED_PG_PORT", "15433")
    return tmp_path


def parse(text: str, tmp_path: Path) -> dict[str, object]:
    """Let supervisord's own option parser read the rendered file."""
    path = tmp_path / "supervisord.conf"
    path.write_text(text)
    options = ServerOptions()
    options.realize(args=["-c", str(path)])
    return {process.name: process for group in options.process_group_configs for process in group.process_configs}


def test_zero_configuration_runs_the_embedded_database_and_the_sample_replay(tmp_path: Path) -> None:
    plan = build_plan(token="generated-token")
    assert [p.name for p in plan.ordered] == ["postgres", "workspace", "api", "gateway"]
    assert plan.demo_replay
    gateway = plan.programs["gateway"].environment
    assert Path(gateway["TELEGRAM_REPLAY_FILE"]) == sample_export()
    assert json.loads(sample_export().read_text())["messages"]
    assert gateway["REPLAY_INTERVAL_MS"] == str(DEMO_REPLAY_INTERVAL_MS)
    assert gateway["API_ENDPOINT"] == "http://127.0.0.1:14005/ingest"
    assert gateway["GATEWAY_DATA_DIR"] == str((tmp_path / "var" / "gateway").resolve())
    assert "DATABASE_URL" not in gateway  # the gateway never gets database access
    url = "postgresql://postgres@127.0.0.1:15433/tradingsystem"
    assert plan.programs["workspace"].environment["DATABASE_URL"] == url
    assert plan.programs["api"].environment["DATABASE_URL"] == url
    # One token, shared by the API and the gateway.
    assert plan.programs["api"].environment["GATEWAY_SECRET_TOKEN"] == gateway["GATEWAY_SECRET_TOKEN"]
    assert plan.programs["postgres"].port == 15433
    assert plan.programs["postgres"].user == ("pgserver" if os.geteuid() == 0 else None)


@pytest.mark.parametrize("variables", [
    {"TELEGRAM_API_ID": "1", "TELEGRAM_API_HASH": "abc"},
    {"TELEGRAM_INGESTION_BOT_TOKEN": "123:abc"},
])
def test_a_configured_telegram_source_turns_the_demo_off(monkeypatch: pytest.MonkeyPatch,
                                                        variables: dict[str, str]) -> None:
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    plan = build_plan(token="t")
    assert not plan.demo_replay
    assert "TELEGRAM_REPLAY_FILE" not in plan.programs["gateway"].environment


def test_an_account_id_without_its_hash_is_not_a_configured_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_API_ID", "1")
    assert build_plan(token="t").demo_replay


@pytest.mark.parametrize("variables", [
    {"DATABASE_URL": "postgresql://u:p@db.example:5432/prod"},
    {"TIMESCALEDB_HOST": "db.example"},
])
def test_a_configured_database_means_no_embedded_server_and_never_sample_data(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    plan = build_plan(token="t")
    assert "postgres" not in plan.programs
    assert plan.embedded_db is None and plan.database_url is None
    assert not plan.demo_replay
    for program in plan.programs.values():
        assert "DATABASE_URL" not in program.environment  # the services read the operator's own settings
        assert "TELEGRAM_REPLAY_FILE" not in program.environment


def test_the_database_in_dotenv_counts_as_configured(isolated: Path) -> None:
    (isolated / ".env").write_text("DATABASE_URL=postgresql://u:p@db.example:5432/prod\n")
    assert "postgres" not in build_plan(token="t").programs


def test_operator_settings_are_not_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", "operator-token")
    monkeypatch.setenv("API_ENDPOINT", "http://10.0.0.5:4005/ingest")
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("REPLAY_INTERVAL_MS", "50")
    plan = build_plan()
    gateway = plan.programs["gateway"].environment
    assert "GATEWAY_SECRET_TOKEN" not in gateway and "API_ENDPOINT" not in gateway and "HOST" not in gateway
    assert "REPLAY_INTERVAL_MS" not in gateway
    assert not plan.token_generated


def test_without_a_configured_token_one_must_be_generated() -> None:
    with pytest.raises(ValueError, match="generated token"):
        build_plan()


def test_the_rendered_config_is_what_supervisord_reads(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Under root the config names the database's OS user: a name this machine does not have yet,
    # created by the step `up` runs before it writes the config (supervisord refuses unknown users).
    user = f"tsplan{secrets.token_hex(4)}"
    monkeypatch.setenv("EMBEDDED_PG_SYSTEM_USER", user)
    token = "tok%en \"quoted\", =comma;hash#\\"
    plan = build_plan(token=token)
    text = render_config(plan)
    for sub in ("logs", "supervisor"):  # `up` creates them before starting supervisord
        (isolated / "var" / sub).mkdir(parents=True)
    ensure_run_as_user(plan)
    try:
        check_config(plan, text, token, isolated)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["userdel", user], capture_output=True, check=False)


def check_config(plan: Plan, text: str, token: str, isolated: Path) -> None:
    assert text == render_config(build_plan(token=token))  # deterministic
    processes = parse(text, isolated)
    assert set(processes) == {"postgres", "workspace", "api", "gateway"}
    for name, process in processes.items():
        program = plan.programs[name]
        assert process.command == shlex.join(program.command)  # type: ignore[attr-defined]
        assert (process.environment or {}) == program.environment  # type: ignore[attr-defined]
        assert process.autostart is False  # type: ignore[attr-defined]
        assert process.autorestart  # type: ignore[attr-defined]
    assert processes["api"].environment["GATEWAY_SECRET_TOKEN"] == token  # type: ignore[attr-defined]
    assert processes["workspace"].directory == str(isolated.resolve())  # type: ignore[attr-defined]
    assert processes["postgres"].directory == str((isolated / "var" / "postgres").resolve())  # type: ignore[attr-defined]
    if os.geteuid() == 0:
        assert processes["postgres"].uid == pwd.getpwnam(plan.programs["postgres"].user or "").pw_uid  # type: ignore[attr-defined]


def test_a_generated_token_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secrets.env"
    token, created = ensure_generated_token(path)
    assert created and len(token) >= 40
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o644)
    again, created_again = ensure_generated_token(path)
    assert (again, created_again) == (token, False)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_deep_var_directory_gets_a_short_private_socket(tmp_path: Path) -> None:
    short = Paths(tmp_path / "var")
    assert short.socket == tmp_path / "var" / "supervisor" / "supervisor.sock"
    deep = Paths(tmp_path / ("d" * 120) / "var")
    assert len(str(deep.socket)) < 100
    assert deep.socket != Paths(tmp_path / ("e" * 120) / "var").socket
    assert deep.socket == Paths(tmp_path / ("d" * 120) / "var").socket


def test_settings_read_ports_from_dotenv(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_PORT")
    (isolated / ".env").write_text("API_PORT=4999\n")
    assert LauncherSettings().api_port == 4999


@pytest.mark.parametrize("token", ["both \" and ' quotes", '"leading-quote', "a ;comment"])
def test_values_supervisord_would_alter_are_refused(token: str) -> None:
    with pytest.raises(UnrepresentableValue):
        render_config(build_plan(token=token))
