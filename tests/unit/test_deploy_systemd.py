"""Checks the gateway's systemd unit: rendering, install-service, systemd-analyze verify and exposure."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from tradingsystem.gateway import systemd_unit
from tradingsystem.gateway.systemd_unit import (
    NEXT_STEP,
    UNIT_NAME,
    UNIT_TEMPLATE,
    default_executable,
    install_service,
    install_service_command,
    render_unit,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_FILE = ROOT / "deploy" / "systemd" / "tp-capital-gateway.service"
# A recording run (make bench-record) points BENCH_RESULTS_DIR at bench/results/; otherwise a scratch directory.
SECURITY_REPORT = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "var" / "bench" / "reports") / "systemd-security.txt"
EXPOSURE_GOAL = 2.0
MISSING_USER = "tpgw-absent-user"


def find_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (Debian package `systemd`; `make test` installs it)")
    return found


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections to (key, value) lists; systemd allows a key several times, so no dict per section."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"setting outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [value for k, value in unit[section] if k == key]


def one(unit: dict[str, list[tuple[str, str]]], key: str) -> str:
    found = values(unit, "Service", key)
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


class Layout:
    """A realistic set of paths for rendering, all inside a test directory."""

    def __init__(self, base: Path) -> None:
        self.data_dir = base / "var" / "lib" / "tp-capital-gateway"
        self.session_dir = self.data_dir / ".session"
        self.env_file = base / "etc" / "tp-capital-gateway" / "gateway.env"
        self.working_dir = self.data_dir
        # A stand-in for the installed script, so that the result does not depend on where this
        # checkout's interpreter lives (under /root it would rightly switch ProtectHome to read-only).
        self.executable = base / "opt" / "tradingsystem" / "bin" / "tradingsystem"
        self.executable.parent.mkdir(parents=True)
        self.executable.write_text("#!/usr/bin/python3\n", encoding="utf-8")
        self.executable.chmod(0o755)
        self.unit_path = base / "etc" / "systemd" / "system" / UNIT_NAME

    def render(self, user: str = "tp-capital-gateway") -> str:
        return render_unit(user, user, self.working_dir, self.data_dir, self.session_dir, self.env_file,
                           self.executable)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    # pytest's tmp_path lives in /tmp, which is neither under /home nor /root: ProtectHome=yes applies.
    return Layout(tmp_path)


@pytest.fixture
def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def write_unit(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / UNIT_NAME
    path.write_text(text, encoding="utf-8")
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([find_tool("systemd-analyze"), *args], capture_output=True, text=True, check=False,
                          env=env)


# ---------------------------------------------------------------------------- template and render


def test_repository_template_is_the_one_the_package_renders() -> None:
    assert TEMPLATE_FILE.read_text(encoding="utf-8") == UNIT_TEMPLATE


def test_render_fills_every_placeholder(layout: Layout) -> None:
    text = layout.render()
    assert not re.search(r"@[A-Z_]+@", text), text
    unit = parse_unit(text)
    assert one(unit, "User") == "tp-capital-gateway"
    assert one(unit, "Group") == "tp-capital-gateway"
    assert one(unit, "WorkingDirectory") == str(layout.working_dir)
    assert one(unit, "EnvironmentFile") == str(layout.env_file)
    assert one(unit, "ExecStart") == f"{layout.executable} serve gateway"
    env = values(unit, "Service", "Environment")
    assert f"GATEWAY_DATA_DIR={layout.data_dir}" in env
    assert f"TELEGRAM_SESSION_DIR={layout.session_dir}" in env
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]


def test_supervision_settings(layout: Layout) -> None:
    unit = parse_unit(layout.render())
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "RestartSec") == "10s"
    assert one(unit, "MemoryMax") == "500M"
    assert "network-online.target" in values(unit, "Unit", "After")[0]


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "UMask": "0077",
}


@pytest.mark.parametrize(("key", "expected"), sorted(HARDENING.items()))
def test_hardening_directive(layout: Layout, key: str, expected: str) -> None:
    assert one(parse_unit(layout.render()), key) == expected


def test_system_calls_are_filtered_to_a_service_set(layout: Layout) -> None:
    filters = values(parse_unit(layout.render()), "Service", "SystemCallFilter")
    assert "@system-service" in filters
    assert any(f.startswith("~") and "@privileged" in f for f in filters)


def test_only_the_data_and_session_directories_are_writable(layout: Layout, tmp_path: Path) -> None:
    unit = parse_unit(layout.render())
    assert one(unit, "ReadWritePaths").split() == [str(layout.data_dir)]
    # A session directory elsewhere is listed on its own; nothing else ever is.
    elsewhere = tmp_path / "sessions"
    text = render_unit("gw", "gw", layout.working_dir, layout.data_dir, elsewhere, layout.env_file,
                       layout.executable)
    assert one(parse_unit(text), "ReadWritePaths").split() == [str(layout.data_dir), str(elsewhere)]


def test_files_under_home_get_a_read_only_home(layout: Layout) -> None:
    text = render_unit("gw", "gw", Path("/home/ops/tradingsystem"), Path("/home/ops/gateway-data"),
                       Path("/home/ops/gateway-data/.session"), layout.env_file, layout.executable)
    unit = parse_unit(text)
    # ProtectHome=yes would hide them; read-only plus ReadWritePaths still confines the writes.
    assert one(unit, "ProtectHome") == "read-only"
    assert one(unit, "ReadWritePaths") == "/home/ops/gateway-data"


@pytest.mark.parametrize(
    ("user", "path", "message"),
    [
        ("Bad User", None, "invalid user"),
        ("gw", Path("relative/data"), "absolute"),
        ("gw", Path("/var/lib/with space"), "whitespace"),
        ("gw", Path("/var/lib/100%"), "whitespace"),
    ],
)
def test_render_rejects_what_systemd_would_misread(
    layout: Layout, user: str, path: Path | None, message: str
) -> None:
    data_dir = path or layout.data_dir
    with pytest.raises(ValueError, match=message):
        render_unit(user, "gw", layout.working_dir, data_dir, layout.session_dir, layout.env_file,
                    layout.executable)


# ---------------------------------------------------------------------------- systemd-analyze


def test_systemd_analyze_verify_accepts_the_rendered_unit(layout: Layout, tmp_path: Path) -> None:
    path = write_unit(tmp_path / "verify", layout.render())
    result = analyze("verify", "--man=no", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    # Unknown or misspelt settings are only warnings; any output at all is a defect.
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


def test_systemd_analyze_verify_is_really_checking(layout: Layout, tmp_path: Path) -> None:
    broken = layout.render().replace(f"ExecStart={layout.executable}", "ExecStart=/nonexistent/tradingsystem")
    broken = broken.replace("UMask=0077", "UMsk=0077")
    path = write_unit(tmp_path / "broken", broken)
    result = analyze("verify", "--man=no", str(path))
    assert result.returncode != 0
    assert "UMsk" in result.stderr and "/nonexistent/tradingsystem" in result.stderr


def test_security_exposure_is_within_goal(layout: Layout, tmp_path: Path) -> None:
    path = write_unit(tmp_path / "security", layout.render())
    result = analyze("security", "--offline=true", "--no-pager", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    exposure = float(match.group(1))
    version = analyze("--version").stdout.splitlines()[0]
    SECURITY_REPORT.parent.mkdir(parents=True, exist_ok=True)
    SECURITY_REPORT.write_text(
        f"# systemd-analyze security --offline=true {UNIT_NAME} ({version})\n"
        f"# Rendered by tests/unit/test_deploy_systemd.py; goal: exposure <= {EXPOSURE_GOAL}\n"
        f"exposure: {exposure}\n\n{result.stdout}",
        encoding="utf-8",
    )
    assert exposure <= EXPOSURE_GOAL, result.stdout


# ---------------------------------------------------------------------------- install-service


def test_dry_run_prints_exactly_the_unit_and_changes_nothing(
    layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code = install_service(
        dry_run=True, user=MISSING_USER, data_dir=layout.data_dir, env_file=layout.env_file,
        executable=layout.executable, unit_path=layout.unit_path,
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert out == render_unit(MISSING_USER, MISSING_USER, layout.data_dir, layout.data_dir, layout.session_dir,
                              layout.env_file, layout.executable)
    assert "would be created" in err and MISSING_USER in err
    assert "does not exist yet" in err  # the env file
    assert not layout.unit_path.exists()
    assert not layout.data_dir.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(MISSING_USER)


def test_install_writes_the_unit_and_prepares_private_directories(
    layout: Layout, current_user: str, capsys: pytest.CaptureFixture[str]
) -> None:
    layout.env_file.parent.mkdir(parents=True)
    layout.env_file.write_text("GATEWAY_SECRET_TOKEN=not-a-real-token\n", encoding="utf-8")
    layout.env_file.chmod(0o600)
    code = install_service(
        dry_run=False, user=current_user, group=pwd.getpwnam(current_user).pw_name,
        data_dir=layout.data_dir, env_file=layout.env_file, executable=layout.executable,
        unit_path=layout.unit_path,
    )
    _, err = capsys.readouterr()
    assert code == 0, err
    assert layout.unit_path.read_text(encoding="utf-8") == render_unit(
        current_user, current_user, layout.data_dir, layout.data_dir, layout.session_dir, layout.env_file,
        layout.executable,
    )
    assert layout.unit_path.stat().st_mode & 0o777 == 0o644
    for directory in (layout.data_dir, layout.session_dir):
        assert directory.stat().st_mode & 0o777 == 0o700
        assert directory.stat().st_uid == pwd.getpwnam(current_user).pw_uid
    assert NEXT_STEP in err
    assert "Warning" not in err
    assert "not-a-real-token" not in err


def test_install_warns_about_env_files_that_would_break_the_unit(
    layout: Layout, current_user: str, capsys: pytest.CaptureFixture[str]
) -> None:
    layout.env_file.parent.mkdir(parents=True)
    # A copy of a development .env: world-readable, data dir relative to the checkout.
    layout.env_file.write_text("GATEWAY_DATA_DIR=./var/gateway\nGATEWAY_SECRET_TOKEN=x\n", encoding="utf-8")
    layout.env_file.chmod(0o644)
    code = install_service(
        dry_run=True, user=current_user, data_dir=layout.data_dir, env_file=layout.env_file,
        executable=layout.executable, unit_path=layout.unit_path,
    )
    _, err = capsys.readouterr()
    assert code == 0
    assert "GATEWAY_DATA_DIR=./var/gateway" in err
    assert f"chmod 600 {layout.env_file}" in err


def test_install_reports_an_invalid_path_with_exit_code_2(
    layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code = install_service(dry_run=True, data_dir=Path("/var/lib/with space"), env_file=layout.env_file,
                           executable=layout.executable, unit_path=layout.unit_path)
    assert code == 2
    assert "whitespace" in capsys.readouterr().err


def test_install_service_command_as_a_typer_command(layout: Layout) -> None:
    app = typer.Typer()
    app.command("install-service")(install_service_command)
    app.command("noop")(lambda: None)  # two commands, so typer keeps the sub-command name
    result = CliRunner().invoke(app, [
        "install-service", "--dry-run", "--user", "gw-operator", "--data-dir", str(layout.data_dir),
        "--env-file", str(layout.env_file),
    ])
    assert result.exit_code == 0, result.output
    unit = parse_unit(result.stdout)
    assert one(unit, "User") == "gw-operator"
    assert one(unit, "EnvironmentFile") == str(layout.env_file)
    assert one(unit, "ExecStart").endswith("tradingsystem serve gateway")
    assert not layout.unit_path.exists()
    failing = CliRunner().invoke(app, ["install-service", "--dry-run", "--data-dir", "/x/with space"])
    assert failing.exit_code == 2


def test_default_executable_is_this_installation_script() -> None:
    executable = default_executable()
    assert executable.is_absolute() and executable.name == "tradingsystem"
    assert os.access(executable, os.X_OK)
    result = subprocess.run([str(executable), "serve", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "gateway" in result.stdout


def test_an_interpreter_under_home_makes_home_read_only(tmp_path: Path) -> None:
    script = tmp_path / "tradingsystem"
    script.write_text("#!/home/ops/.pyenv/versions/3.12.7/bin/python3\n", encoding="utf-8")
    text = render_unit("gw", "gw", tmp_path, tmp_path / "data", tmp_path / "data" / ".session",
                       tmp_path / "gateway.env", script)
    assert one(parse_unit(text), "ProtectHome") == "read-only"


def test_module_defaults_target_the_system_locations() -> None:
    assert systemd_unit.UNIT_PATH == Path("/etc/systemd/system/tp-capital-gateway.service")
    assert NEXT_STEP == "systemctl daemon-reload && systemctl enable --now tp-capital-gateway"


# ---------------------------------------------------------------------------- MemoryDenyWriteExecute

# The unit sets MemoryDenyWriteExecute=yes; the kernel offers the same restriction to any process
# (PR_SET_MDWE, Linux >= 6.3), so the real gateway can be run under it without systemd as PID 1.
MDWE_RUNNER = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
assert libc.prctl(66, 0, 0, 0, 0) == 1  # PR_GET_MDWE
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    print("MDWE active: writable+executable mapping refused", flush=True)
else:
    sys.exit("MDWE not enforced")
sys.argv = ["tradingsystem", "serve", "gateway"]
from tradingsystem.cli import main
main()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mdwe_gateway(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """The real gateway (`tradingsystem serve gateway`) in a process under memory-deny-write-execute."""
    port = free_port()
    log_path = tmp_path / "gateway.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_SECRET_TOKEN": "mdwe-test-token",
        "GATEWAY_PORT": str(port),
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "API_ENDPOINT": f"http://127.0.0.1:{free_port()}/ingest",
    }
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", MDWE_RUNNER], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        yield process, port, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_the_gateway_runs_with_memory_deny_write_execute(
    mdwe_gateway: tuple[subprocess.Popen[str], int, Path],
) -> None:
    process, port, log_path = mdwe_gateway
    deadline = time.monotonic() + 60
    live = None
    while live is None and time.monotonic() < deadline and process.poll() is None:
        try:
            live = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    assert live is not None and live.status_code == 200, log_path.read_text(encoding="utf-8")
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert "telegram_connection_status" in metrics.text
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=45)
    log = log_path.read_text(encoding="utf-8")
    assert log.startswith("MDWE active"), log
    assert code == 0, log
