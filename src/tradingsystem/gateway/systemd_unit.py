"""Renders and installs the hardened systemd unit that runs the Telegram Gateway on the host."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

UNIT_NAME = "tp-capital-gateway.service"
UNIT_PATH = Path("/etc/systemd/system") / UNIT_NAME
DEFAULT_USER = "tp-capital-gateway"
DEFAULT_DATA_DIR = Path("/var/lib/tp-capital-gateway")
DEFAULT_ENV_FILE = Path("/etc/tp-capital-gateway/gateway.env")
NEXT_STEP = "systemctl daemon-reload && systemctl enable --now tp-capital-gateway"

# The template ships inside the package (a wheel install has no repository checkout); the copy in
# deploy/systemd/tp-capital-gateway.service is kept identical by a test.
UNIT_TEMPLATE = """\
# Telegram Gateway (TP Capital) as a hardened host service.
# Template: `tradingsystem gateway install-service` replaces the @...@ placeholders with real paths and the
# service user, writes /etc/systemd/system/tp-capital-gateway.service (`--dry-run` prints it instead).
# The gateway runs here and not in a container so that the Telegram session never leaves this host.

[Unit]
Description=TP Capital Telegram Gateway (Telegram -> TP Capital API)
Wants=network-online.target
After=network-online.target
# Give up after 10 failed starts in 10 minutes instead of restarting forever.
StartLimitIntervalSec=600
StartLimitBurst=10

[Service]
Type=exec
User=@USER@
Group=@GROUP@
WorkingDirectory=@WORKING_DIR@
# Secrets (GATEWAY_SECRET_TOKEN, TELEGRAM_*) live only in this root-readable file.
EnvironmentFile=@ENV_FILE@
Environment=GATEWAY_DATA_DIR=@DATA_DIR@
Environment=TELEGRAM_SESSION_DIR=@SESSION_DIR@
Environment=PYTHONUNBUFFERED=1
Environment=PYTHONDONTWRITEBYTECODE=1
ExecStart=@EXECUTABLE@ serve gateway
Restart=on-failure
RestartSec=10s
# The gateway drains in-flight deliveries on SIGTERM within 30 s.
KillSignal=SIGTERM
TimeoutStopSec=40s
MemoryMax=500M
TasksMax=256
LimitNOFILE=16384

# Hardening: the gateway needs the network and its own two directories, nothing else.
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=@PROTECT_HOME@
ReadWritePaths=@READ_WRITE_PATHS@
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
PrivateUsers=yes
PrivateIPC=yes
PrivateMounts=yes
ProtectHostname=yes
ProtectClock=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""

# ProtectHome=yes hides these trees completely; a unit whose files live there gets read-only instead.
_HOME_TREES = (Path("/home"), Path("/root"), Path("/run/user"))
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}[$]?$")
# Characters that would need quoting or that systemd treats as specifiers/separators in these settings.
_UNSAFE_PATH_RE = re.compile(r"[\s%\"'\\;$`]")
# Variables that move the gateway's writable files; pointing them outside ReadWritePaths breaks it.
_PATH_VARIABLES = ("GATEWAY_DATA_DIR", "TELEGRAM_SESSION_DIR", "FAILURE_QUEUE_PATH")


def _check_name(kind: str, value: str) -> None:
    if not _NAME_RE.match(value):
        raise ValueError(f"invalid {kind} name {value!r}: use lower-case letters, digits, '-' and '_'")


def _check_path(kind: str, path: Path) -> None:
    if not path.is_absolute():
        raise ValueError(f"{kind} must be an absolute path, got {path}")
    if _UNSAFE_PATH_RE.search(str(path)):
        raise ValueError(f"{kind} {path} contains whitespace or characters systemd would reinterpret")


def _under(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


def _interpreter_of(executable: Path) -> Path | None:
    """The interpreter named on a script's `#!` line (a venv script runs the base Python through it)."""
    try:
        with executable.open("rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode(errors="replace").split()
    return Path(parts[0]) if parts else None


def _protect_home(paths: list[Path]) -> str:
    candidates = list(paths)
    for path in paths:
        candidates.append(path.resolve())
    if paths:
        interpreter = _interpreter_of(paths[-1])
        if interpreter is not None:
            candidates.extend([interpreter, interpreter.resolve()])
    if any(_under(p, tree) for p in candidates for tree in _HOME_TREES):
        return "read-only"
    return "yes"


def render_unit(
    user: str,
    group: str,
    working_dir: Path,
    data_dir: Path,
    session_dir: Path,
    env_file: Path,
    executable: Path,
) -> str:
    """The unit text for these paths; raises ValueError for a name or path systemd would misread."""
    _check_name("user", user)
    _check_name("group", group)
    for kind, path in (
        ("working directory", working_dir),
        ("data directory", data_dir),
        ("session directory", session_dir),
        ("environment file", env_file),
        ("executable", executable),
    ):
        _check_path(kind, path)
    writable = [str(data_dir)]
    if session_dir != data_dir and data_dir not in session_dir.parents:
        writable.append(str(session_dir))
    protect_home = _protect_home([working_dir, data_dir, session_dir, executable])
    values = {
        "@USER@": user,
        "@GROUP@": group,
        "@WORKING_DIR@": str(working_dir),
        "@ENV_FILE@": str(env_file),
        "@DATA_DIR@": str(data_dir),
        "@SESSION_DIR@": str(session_dir),
        "@EXECUTABLE@": str(executable),
        "@PROTECT_HOME@": protect_home,
        "@READ_WRITE_PATHS@": " ".join(writable),
    }
    text = UNIT_TEMPLATE
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def default_executable() -> Path:
    """The `tradingsystem` script of the running installation (the one beside this interpreter)."""
    beside = Path(sys.executable).with_name("tradingsystem")
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("tradingsystem")
    if found is None:
        raise FileNotFoundError("cannot find the `tradingsystem` executable; pass its absolute path")
    return Path(found).absolute()


def _read_env_file(env_file: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in env_file.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _env_file_warnings(env_file: Path, data_dir: Path, session_dir: Path) -> list[str]:
    """Problems with the environment file that would only show up when the service starts."""
    if not env_file.exists():
        return [f"{env_file} does not exist yet: create it (mode 0600) with GATEWAY_SECRET_TOKEN and the "
                "TELEGRAM_* settings before starting the service"]
    warnings: list[str] = []
    if env_file.stat().st_mode & 0o077:
        warnings.append(f"{env_file} is readable by other users; it holds secrets: chmod 600 {env_file}")
    try:
        values = _read_env_file(env_file)
    except (OSError, UnicodeDecodeError) as exc:
        return [*warnings, f"cannot read {env_file}: {exc}"]
    writable = (data_dir, session_dir)
    for name in _PATH_VARIABLES:
        value = values.get(name)
        if not value:
            continue
        path = Path(value)
        if not path.is_absolute() or not any(_under(path, root) for root in writable):
            # EnvironmentFile= overrides the unit's Environment=, and the unit can write only there.
            warnings.append(f"{env_file} sets {name}={value}, outside the writable directories "
                            f"{data_dir} and {session_dir}: remove it or install with --data-dir")
    return warnings


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _group_exists(group: str) -> bool:
    try:
        grp.getgrnam(group)
    except KeyError:
        return False
    return True


def _create_account(user: str, group: str, data_dir: Path) -> None:
    if not _group_exists(group):
        subprocess.run(["groupadd", "--system", group], check=True)
    subprocess.run(
        ["useradd", "--system", "--gid", group, "--home-dir", str(data_dir), "--no-create-home",
         "--shell", "/usr/sbin/nologin", "--comment", "TP Capital Telegram Gateway", user],
        check=True,
    )


def _prepare_directory(path: Path, user: str, group: str) -> None:
    """Owned by the service user, 0700: the session directory's mode is part of the contract."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, user=user, group=group)
    path.chmod(0o700)


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def install_service(
    dry_run: bool,
    user: str = DEFAULT_USER,
    group: str | None = None,
    working_dir: Path | None = None,
    data_dir: Path = DEFAULT_DATA_DIR,
    session_dir: Path | None = None,
    env_file: Path = DEFAULT_ENV_FILE,
    executable: Path | None = None,
    unit_path: Path = UNIT_PATH,
) -> int:
    """Write the rendered unit (or print it on stdout with `dry_run`); returns the exit code.

    Without `dry_run` it also creates the service user when missing and the data and session
    directories (0700, owned by that user). Messages for the operator go to stderr, so that
    `--dry-run > file` captures exactly the unit.
    """
    group = group or user
    data_dir = data_dir.absolute()
    session_dir = (session_dir or data_dir / ".session").absolute()
    working_dir = (working_dir or data_dir).absolute()
    env_file = env_file.absolute()
    try:
        executable = (executable or default_executable()).absolute()
        text = render_unit(user, group, working_dir, data_dir, session_dir, env_file, executable)
    except (ValueError, FileNotFoundError) as exc:
        _note(f"Error: {exc}")
        return 2
    warnings = _env_file_warnings(env_file, data_dir, session_dir)
    if dry_run:
        sys.stdout.write(text)
        sys.stdout.flush()
        _note(f"Dry run: nothing written. Without --dry-run this unit goes to {unit_path}.")
        if not _user_exists(user):
            _note(f"Dry run: user {user!r} does not exist and would be created (system account, no login).")
        for warning in warnings:
            _note(f"Warning: {warning}")
        return 0
    try:
        if not _user_exists(user):
            _create_account(user, group, data_dir)
            _note(f"Created system user {user!r} (group {group!r}).")
        for directory in dict.fromkeys((data_dir, session_dir)):
            _prepare_directory(directory, user, group)
        unit_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = unit_path.with_name(unit_path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, unit_path)
    except PermissionError as exc:
        _note(f"Error: {exc}. Run it as root (sudo), or use --dry-run to see the unit.")
        return 1
    except (OSError, subprocess.CalledProcessError, LookupError) as exc:
        _note(f"Error: {exc}")
        return 1
    for warning in warnings:
        _note(f"Warning: {warning}")
    _note(f"Wrote {unit_path}.")
    _note(f"Next: {NEXT_STEP}")
    return 0


def install_service_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the rendered unit instead of installing it.")
    ] = False,
    user: Annotated[
        str, typer.Option("--user", help="Dedicated system user the gateway runs as (created if missing).")
    ] = DEFAULT_USER,
    env_file: Annotated[
        Path, typer.Option("--env-file", help="Root-readable file with GATEWAY_SECRET_TOKEN and TELEGRAM_*.")
    ] = DEFAULT_ENV_FILE,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Journal, failure queue and session (in <dir>/.session).")
    ] = DEFAULT_DATA_DIR,
) -> None:
    """Install the gateway as the systemd service `tp-capital-gateway` (hardened, restarts on failure)."""
    code = install_service(dry_run=dry_run, user=user, env_file=env_file, data_dir=data_dir)
    if code:
        raise typer.Exit(code)
