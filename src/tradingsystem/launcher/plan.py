"""What the launcher runs: settings, the programs and their environment, and the supervisord config text."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradingsystem.core.dbcli import embedded, var_dir
from tradingsystem.core.embedded import EmbeddedPostgres
from tradingsystem.core.settings import DatabaseSettings

DEMO_REPLAY_INTERVAL_MS = 500
SECRETS_FILE = "secrets.env"
# AF_UNIX socket paths are limited to 108 bytes; deep temporary directories go past that.
MAX_SOCKET_PATH = 100

SERVICE_ORDER = ("workspace", "api", "gateway")
STOP_ORDER = ("gateway", "api", "workspace", "postgres")


class LauncherSettings(BaseSettings):
    """The settings the launcher itself needs, from the environment and `.env` (same names as the services)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    workspace_port: int = Field(3200, validation_alias="WORKSPACE_PORT")
    api_port: int = Field(4005, validation_alias="API_PORT")
    gateway_port: int = Field(4006, validation_alias="GATEWAY_PORT")
    host: str | None = Field(None, validation_alias="HOST")
    telegram_api_id: str | None = Field(None, validation_alias="TELEGRAM_API_ID")
    telegram_api_hash: str | None = Field(None, validation_alias="TELEGRAM_API_HASH")
    telegram_ingestion_bot_token: str | None = Field(None, validation_alias="TELEGRAM_INGESTION_BOT_TOKEN")
    telegram_replay_file: str | None = Field(None, validation_alias="TELEGRAM_REPLAY_FILE")
    replay_interval_ms: str | None = Field(None, validation_alias="REPLAY_INTERVAL_MS")
    gateway_secret_token: str | None = Field(
        None, validation_alias=AliasChoices("GATEWAY_SECRET_TOKEN", "API_SECRET_TOKEN")
    )
    api_endpoint: str | None = Field(None, validation_alias="API_ENDPOINT")
    gateway_data_dir: str | None = Field(None, validation_alias="GATEWAY_DATA_DIR")
    failure_queue_warn_bytes: int = Field(52428800, validation_alias="FAILURE_QUEUE_WARN_BYTES")

    @field_validator("host", "telegram_api_id", "telegram_api_hash", "telegram_ingestion_bot_token",
                     "telegram_replay_file", "replay_interval_ms", "gateway_secret_token", "api_endpoint",
                     "gateway_data_dir", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def telegram_configured(self) -> bool:
        """A user account (id and hash) or an ingestion bot is configured."""
        account = bool(self.telegram_api_id and self.telegram_api_hash)
        return account or bool(self.telegram_ingestion_bot_token)


@dataclass(frozen=True)
class Program:
    """One supervisord program: what it runs, as whom, where it listens and how it is checked."""

    name: str
    title: str
    command: list[str]
    port: int
    environment: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stopsignal: str = "TERM"
    stopwaitsecs: int = 35
    priority: int = 100
    # Killing the whole group matters for the Python services (reloader children); PostgreSQL
    # shuts its own backends down and must receive the signal alone.
    stopasgroup: bool = True
    # Where the process starts; the services need the project directory (their `.env`).
    directory: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Paths:
    """Where the launcher keeps its state under the var directory."""

    root: Path

    @property
    def supervisor_dir(self) -> Path:
        return self.root / "supervisor"

    @property
    def config(self) -> Path:
        return self.supervisor_dir / "supervisord.conf"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def supervisord_log(self) -> Path:
        return self.logs / "supervisord.log"

    @property
    def secrets(self) -> Path:
        return self.root / SECRETS_FILE

    @property
    def gateway_data(self) -> Path:
        return self.root / "gateway"

    @property
    def socket(self) -> Path:
        """The control socket; moved to a short private directory when the var path is too deep."""
        preferred = self.supervisor_dir / "supervisor.sock"
        if len(str(preferred)) <= MAX_SOCKET_PATH:
            return preferred
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path("/tmp") / f"tradingsystem-{os.geteuid()}" / f"{digest}.sock"  # noqa: S108

    def log_file(self, program: str) -> Path:
        return self.logs / f"{program}.log"


def paths() -> Paths:
    return Paths(var_dir().resolve())


def sample_export() -> Path:
    """The bundled Telegram Desktop export that the zero-configuration demo replays."""
    return Path(str(resources.files("tradingsystem.gateway") / "data" / "sample_export.json"))


def token_fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def read_secrets(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    return values


def ensure_generated_token(path: Path) -> tuple[str, bool]:
    """The launcher's own `GATEWAY_SECRET_TOKEN` (created once, 0600); returns it and whether it is new."""
    existing = read_secrets(path).get("GATEWAY_SECRET_TOKEN")
    if existing:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Generated by `tradingsystem up`: shared by the TP Capital API and the gateway.\n")
        handle.write(f"GATEWAY_SECRET_TOKEN={token}\n")
    path.chmod(0o600)
    return token, True


@dataclass
class Plan:
    """Everything `up` needs to know, resolved once from the environment and `.env`."""

    settings: LauncherSettings
    paths: Paths
    programs: dict[str, Program]
    embedded_db: EmbeddedPostgres | None
    database_url: str | None
    demo_replay: bool
    token_generated: bool
    token_fingerprint: str
    workdir: Path

    @property
    def ordered(self) -> list[Program]:
        names = (["postgres"] if "postgres" in self.programs else []) + list(SERVICE_ORDER)
        return [self.programs[name] for name in names]


def service_command(service: str) -> list[str]:
    return [sys.executable, "-m", "tradingsystem.cli", "serve", service]


def build_plan(settings: LauncherSettings | None = None, *, token: str | None = None,
               workdir: Path | None = None, local_database: bool = True) -> Plan:
    """Resolve programs and environments. `token` is the generated token when none is configured;
    `local_database=False` (container mode) leaves the database to compose."""
    settings = settings or LauncherSettings()
    where = paths()
    workdir = (workdir or Path.cwd()).resolve()
    db_configured = DatabaseSettings().configured
    embedded_db = None if (db_configured or not local_database) else embedded()
    database_url = embedded_db.url if embedded_db else None

    common: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    if settings.host is None:
        # A developer machine: nothing listens beyond loopback unless the operator says so.
        common["HOST"] = "127.0.0.1"
    generated = settings.gateway_secret_token is None
    if generated and token is None:
        raise ValueError("a generated token is required when GATEWAY_SECRET_TOKEN is not configured")
    secret_env = {"GATEWAY_SECRET_TOKEN": token} if generated and token else {}
    db_env = {"DATABASE_URL": database_url} if database_url else {}

    programs: dict[str, Program] = {}
    if embedded_db is not None:
        programs["postgres"] = Program(
            name="postgres", title="PostgreSQL (embedded)", command=embedded_db.server_args(),
            port=embedded_db.port, user=embedded_db.run_as, stopsignal="INT", stopwaitsecs=30, priority=10,
            stopasgroup=False, directory=embedded_db.data_dir.resolve(),
        )
    programs["workspace"] = Program(
        name="workspace", title="Workspace API", command=service_command("workspace"), port=settings.workspace_port,
        environment={**common, **db_env, "WORKSPACE_PORT": str(settings.workspace_port)}, priority=20,
    )
    programs["api"] = Program(
        name="api", title="TP Capital API", command=service_command("api"), port=settings.api_port,
        environment={**common, **db_env, **secret_env, "API_PORT": str(settings.api_port)}, priority=20,
    )
    gateway_env = {**common, **secret_env, "GATEWAY_PORT": str(settings.gateway_port)}
    if settings.api_endpoint is None:
        gateway_env["API_ENDPOINT"] = f"http://127.0.0.1:{settings.api_port}/ingest"
    if settings.gateway_data_dir is None:
        gateway_env["GATEWAY_DATA_DIR"] = str(where.gateway_data)
    demo = embedded_db is not None and not settings.telegram_configured and settings.telegram_replay_file is None
    if demo:
        gateway_env["TELEGRAM_REPLAY_FILE"] = str(sample_export())
        if settings.replay_interval_ms is None:
            gateway_env["REPLAY_INTERVAL_MS"] = str(DEMO_REPLAY_INTERVAL_MS)
    programs["gateway"] = Program(
        name="gateway", title="Telegram Gateway", command=service_command("gateway"), port=settings.gateway_port,
        environment=gateway_env, priority=30,
    )
    fingerprint = token_fingerprint(settings.gateway_secret_token or token or "")
    return Plan(settings=settings, paths=where, programs=programs, embedded_db=embedded_db,
                database_url=database_url, demo_replay=demo, token_generated=generated,
                token_fingerprint=fingerprint, workdir=workdir)


class UnrepresentableValue(ValueError):
    """A value supervisord's configuration syntax cannot carry unchanged."""


def _conf_value(value: str) -> str:
    # supervisord reads inline comments (whitespace then `;` or `#`) and expands %(name)s in every
    # value: refuse the first rather than silently cut a path, double the percent signs.
    if "\n" in value or re.search(r"\s[;#]", value):
        raise UnrepresentableValue(f"cannot write {value!r} into the supervisord configuration")
    return value.replace("%", "%%")


def _env_value(key: str, value: str) -> str:
    # supervisord splits `environment=` with a non-POSIX shlex: no escapes, and the quotes around a
    # value are stripped, so the value itself may contain only the other quote character.
    if value and (value[0] in "\"'" or value[-1] in "\"'"):
        raise UnrepresentableValue(f"{key} cannot start or end with a quote in the supervisord configuration")
    if '"' not in value:
        return _conf_value(f'"{value}"')
    if "'" not in value:
        return _conf_value(f"'{value}'")
    raise UnrepresentableValue(f"{key} cannot contain both quote characters in the supervisord configuration")


def render_config(plan: Plan) -> str:
    """The supervisord configuration for `plan` (deterministic: same plan, same text)."""
    where = plan.paths
    lines = [
        "; Written by `tradingsystem up`; rewritten on every run.",
        "[unix_http_server]",
        f"file={_conf_value(str(where.socket))}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={_conf_value(str(where.supervisord_log))}",
        "logfile_maxbytes=10MB",
        "logfile_backups=3",
        "loglevel=info",
        f"pidfile={_conf_value(str(where.supervisor_dir / 'supervisord.pid'))}",
        f"childlogdir={_conf_value(str(where.logs))}",
        f"directory={_conf_value(str(plan.workdir))}",
        f"identifier=tradingsystem-{hashlib.sha256(str(where.root).encode()).hexdigest()[:12]}",
        "nodaemon=false",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_conf_value(str(where.socket))}",
    ]
    for program in plan.ordered:
        lines += [
            "",
            f"[program:{program.name}]",
            f"command={_conf_value(shlex.join(program.command))}",
            f"directory={_conf_value(str(program.directory or plan.workdir))}",
            # `up` starts the programs itself, in order, waiting for each one.
            "autostart=false",
            "autorestart=true",
            "startsecs=1",
            "startretries=3",
            f"priority={program.priority}",
            f"stopsignal={program.stopsignal}",
            f"stopwaitsecs={program.stopwaitsecs}",
            f"stopasgroup={'true' if program.stopasgroup else 'false'}",
            f"killasgroup={'true' if program.stopasgroup else 'false'}",
            "redirect_stderr=true",
            f"stdout_logfile={_conf_value(str(where.log_file(program.name)))}",
            "stdout_logfile_maxbytes=10MB",
            "stdout_logfile_backups=3",
        ]
        if program.user:
            lines.append(f"user={program.user}")
        if program.environment:
            pairs = ",".join(f"{key}={_env_value(key, value)}" for key, value in sorted(program.environment.items()))
            lines.append(f"environment={pairs}")
    return "\n".join(lines) + "\n"
