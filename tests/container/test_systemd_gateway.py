"""The gateway's systemd unit, as shipped, run by a real systemd (PID 1 of a container): install, crash, stop, score.

The machine is a Debian 12 image with systemd, built from tests/container/systemd.Dockerfile with the release
installed the way docs/deployment.md tells an operator. Everything an operator would do runs inside it as
root: `tradingsystem gateway install-service`, `systemctl`, `journalctl`, the scripts. The tests run in file
order; each is one step of the operator's day and relies on the state the previous one left.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.compose import build_test_image, copy_checkout

from tradingsystem.gateway.systemd_unit import render_unit

pytestmark = [pytest.mark.container, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]

IMAGE = "tradingsystem-ci/systemd-gateway:test"
DOCKERFILE = REPO / "tests/container/systemd.Dockerfile"
# A recording run (make bench-record) points BENCH_RESULTS_DIR at bench/results/; otherwise a scratch directory.
SECURITY_REPORT = Path(os.environ.get("BENCH_RESULTS_DIR") or REPO / "var/bench/reports") / "systemd-security-container.txt"
EXPOSURE_GOAL = 2.0

UNIT = "tp-capital-gateway.service"
USER = "tp-capital-gateway"
VENV_BIN = "/opt/tradingsystem/.venv/bin"
TS = f"{VENV_BIN}/tradingsystem"
ENV_FILE = "/etc/tp-capital-gateway/gateway.env"
DATA_DIR = "/var/lib/tp-capital-gateway"
SESSION_DIR = f"{DATA_DIR}/.session"
SESSION_FILE = f"{SESSION_DIR}/telegram-gateway.session"
REPLAY_FILE = "/srv/tp-capital-replay/burst.json"
STANDIN_DIR = "/opt/tradingsystem-test"
STANDIN_FILES = ("tests/__init__.py", "tests/support/__init__.py", "tests/support/fake_bot_api.py",
                 "tests/container/bot_standin.py")
BOT_PORT = 8081
BURST = 400
BURST_INTERVAL_MS = 25
PSQL_ROWS = ("SELECT count(*), count(DISTINCT (channel_id, message_id, kind, edit_key)) "
             "FROM tp_capital.messages WHERE source = 'replay'")

# Fresh secrets for every run: the journal is searched for each of them.
GATEWAY_TOKEN = "gw-" + secrets.token_hex(16)
BOT_TOKEN = f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(26)}"
API_HASH = secrets.token_hex(16)
SECRETS = {"GATEWAY_SECRET_TOKEN": GATEWAY_TOKEN, "TELEGRAM_INGESTION_BOT_TOKEN": BOT_TOKEN,
           "TELEGRAM_API_HASH": API_HASH}

ENV_TEXT = f"""\
GATEWAY_SECRET_TOKEN={GATEWAY_TOKEN}
API_ENDPOINT=http://127.0.0.1:4005/ingest
TELEGRAM_API_ID=123456
TELEGRAM_API_HASH={API_HASH}
TELEGRAM_INGESTION_BOT_TOKEN={BOT_TOKEN}
TELEGRAM_BOT_API_URL=http://127.0.0.1:{BOT_PORT}
"""
REPLAY_ENV = f"TELEGRAM_REPLAY_FILE={REPLAY_FILE}\nREPLAY_INTERVAL_MS={BURST_INTERVAL_MS}\n"

# The operator's one-time login, done as the service user (docs/deployment.md). Telegram is out of reach,
# so the session is made the way Telethon stores one: a data centre (here a closed local port) and an auth key.
LOGIN = """
import os
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession
session = SQLiteSession(os.environ["TELEGRAM_SESSION_DIR"] + "/telegram-gateway")
session.set_dc(2, "127.0.0.1", 4443)
session.auth_key = AuthKey(os.urandom(256))
session.save()
session.close()
"""
SESSION_KEY = ("import sqlite3, hashlib, sys; c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True); "
               "print(hashlib.sha256(c.execute('SELECT auth_key FROM sessions').fetchone()[0]).hexdigest())")
JOURNAL_STATES = ("import sqlite3, sys; c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True); "
                  "print(dict(c.execute('SELECT state, count(*) FROM entries GROUP BY state')))")


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, interval_s: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"{what}: not within {timeout_s:.0f} s (last: {last!r})")


@dataclass
class Machine:
    """The running systemd container; `sh` runs a shell command in it as root."""

    docker: str
    name: str

    def sh(self, command: str, check: bool = True, timeout: float = 180,
           stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.docker, "exec", "-i", self.name, "bash", "-c", command], input=stdin,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"`{command}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def out(self, command: str) -> str:
        return self.sh(command).stdout.strip()

    def write(self, path: str, text: str, mode: str = "0600") -> None:
        self.sh(f"install -D -m {mode} /dev/stdin {shlex.quote(path)}", stdin=text)

    def show(self, *properties: str) -> dict[str, str]:
        text = self.out(f"systemctl show {UNIT} --property={','.join(properties)}")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        return self.out(f"journalctl -u {UNIT} --no-pager -o cat {' '.join(args)}")

    def cursor(self) -> str:
        line = self.out("journalctl -n 0 --show-cursor --no-pager -q")
        return line.removeprefix("-- cursor: ").strip()

    def http(self, url: str) -> tuple[int, dict[str, Any]]:
        result = self.sh(f"curl -s -m 5 -o /tmp/http-body -w '%{{http_code}}' {shlex.quote(url)}; "
                         "echo; cat /tmp/http-body", check=False)
        code, _, body = result.stdout.partition("\n")
        try:
            parsed = json.loads(body) if body.strip() else {}
        except ValueError:
            parsed = {"raw": body}
        return int(code or 0), parsed if isinstance(parsed, dict) else {"raw": parsed}

    def rows(self) -> tuple[int, int]:
        dsn = self.out(f"cd /opt/tradingsystem && {TS} db url")
        line = self.out(f"PSQL=$({VENV_BIN}/python -c 'from tradingsystem.core.embedded import bin_dir; "
                        f"print(bin_dir())')/psql; $PSQL {shlex.quote(dsn)} -AtF' ' -c {shlex.quote(PSQL_ROWS)}")
        total, distinct = line.split()
        return int(total), int(distinct)

    def gateway_pids(self) -> list[int]:
        found = self.sh("pgrep -f 'tradingsystem serve gateway'", check=False).stdout.split()
        return sorted(int(pid) for pid in found)


def burst_export(count: int) -> str:
    """A Telegram Desktop export of one channel with `count` plain messages (what the replay source reads)."""
    messages = [
        {"id": i, "type": "message", "date": "2025-10-24T16:30:39", "date_unixtime": str(1761334239 + i),
         "from": "Burst | TP Capital", "from_id": "channel1700000001", "text": f"burst message {i}",
         "text_entities": [{"type": "plain", "text": f"burst message {i}"}]}
        for i in range(1, count + 1)
    ]
    return json.dumps({"name": "Burst | TP Capital", "type": "public_channel", "id": 1700000001,
                       "messages": messages})


# ---------------------------------------------------------------------------- the machine


@pytest.fixture(scope="module")
def image(docker_engine: str, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The systemd image with the release (this checkout's files, as `git` sees them) in /opt/tradingsystem."""
    context = tmp_path_factory.mktemp("systemd-context")
    # The release is what an operator copies; the test's own stand-ins go in separately (STANDIN_FILES).
    copy_checkout(context / "release", skip_tests=True)
    return build_test_image(docker_engine, base_image, DOCKERFILE, IMAGE, context)


@pytest.fixture(scope="module")
def machine(image: str, docker_engine: str) -> Iterator[Machine]:
    name = f"tradingsystem-ci-systemd-{secrets.token_hex(4)}"
    # What ENVIRONMENT.md documents for systemd as PID 1, plus CAP_SYS_PTRACE, which root has on a real host:
    # without it systemd cannot combine PrivateUsers= with ProtectProc=invisible (docs/decisions.md).
    subprocess.run(
        [docker_engine, "run", "-d", "--name", name, "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE",
         "--security-opt", "seccomp=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
         "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp", image],
        capture_output=True, text=True, check=True,
    )
    box = Machine(docker_engine, name)
    try:
        for relative in STANDIN_FILES:
            box.sh(f"mkdir -p {shlex.quote(str(Path(STANDIN_DIR, relative).parent))}")
            subprocess.run([docker_engine, "cp", str(REPO / relative), f"{name}:{STANDIN_DIR}/{relative}"],
                           capture_output=True, text=True, check=True)
        state = wait_for("systemctl is-system-running", lambda: box.sh(
            "systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded"), 120)
        assert state
        yield box
    finally:
        subprocess.run([docker_engine, "rm", "-f", "-v", name], capture_output=True, check=False)


# ---------------------------------------------------------------------------- 1. install and enable


def test_install_service_as_documented_and_enable_now(machine: Machine) -> None:
    # docs/deployment.md, "The Gateway under systemd", step by step.
    machine.sh("install -d -m 0700 /etc/tp-capital-gateway && install -m 0600 /dev/null " + ENV_FILE)
    machine.write(ENV_FILE, ENV_TEXT)
    dry = machine.sh(f"{TS} gateway install-service --dry-run")
    assert dry.stdout.startswith("# Telegram Gateway"), dry.stdout
    assert machine.sh(f"getent passwd {USER}", check=False).returncode == 2  # the dry run created nobody
    real = machine.sh(f"{TS} gateway install-service")
    assert "Warning" not in real.stderr, real.stderr

    name, _, uid, _gid, _, home, shell = machine.out(f"getent passwd {USER}").split(":")
    assert name == USER and int(uid) < 1000 and home == DATA_DIR and shell == "/usr/sbin/nologin"
    assert machine.out(f"stat -c '%a %U %G' {ENV_FILE}") == "600 root root"
    for directory in (DATA_DIR, SESSION_DIR):
        assert machine.out(f"stat -c '%a %U %G' {directory}") == f"700 {USER} {USER}"
    # The unit systemd runs is the shipped template, only its placeholders filled in.
    installed = machine.out(f"cat /etc/systemd/system/{UNIT}") + "\n"
    assert installed == render_unit(USER, USER, Path(DATA_DIR), Path(DATA_DIR), Path(SESSION_DIR), Path(ENV_FILE),
                                    Path(TS))
    assert dry.stdout == installed

    # The one-time login as the service user, then the Bot API stand-in the bot source talks to.
    machine.sh(f"systemd-run --quiet --wait --collect -p User={USER} -p UMask=0077 -p EnvironmentFile={ENV_FILE} "
               f"-E TELEGRAM_SESSION_DIR={SESSION_DIR} {VENV_BIN}/python -c {shlex.quote(LOGIN)}")
    assert machine.out(f"stat -c '%a %U' {SESSION_FILE}") == f"600 {USER}"
    machine.sh(f"systemd-run --quiet --unit bot-api-standin --description 'Bot API stand-in' "
               f"-p WorkingDirectory={STANDIN_DIR} -E BOT_TOKEN={shlex.quote(BOT_TOKEN)} "
               f"{VENV_BIN}/python -m tests.container.bot_standin {BOT_PORT}")

    machine.sh(f"systemctl daemon-reload && systemctl enable --now {UNIT.removesuffix('.service')}")
    assert machine.out(f"systemctl is-enabled {UNIT}") == "enabled"
    wait_for("the unit active and /health/live answering", lambda: machine.sh(
        f"systemctl is-active {UNIT}", check=False).stdout.strip() == "active"
        and machine.http("http://127.0.0.1:4006/health/live")[0] == 200, 120)
    pid = int(machine.show("MainPID")["MainPID"])
    assert machine.out(f"ps -o user= -p {pid}") == USER
    status = machine.out(f"cat /proc/{pid}/status")
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^Seccomp:\s+2$", status, re.M), status
    assert re.search(r"^CapEff:\s+0+$", status, re.M) and re.search(r"^CapBnd:\s+0+$", status, re.M), status


# ---------------------------------------------------------------------------- 2. health and journal


def test_health_answers_and_the_journal_has_json_lines_without_secrets(machine: Machine) -> None:
    code, body = wait_for("/health with the bot connected", lambda: (
        lambda answer: answer if answer[1].get("telegram") == "connected" else None)(
        machine.http("http://127.0.0.1:4006/health")), 90)
    # The user account cannot reach Telegram (nothing can here); the bot reaches its stand-in.
    assert code == 200 and body["sources"] == {"user": "disconnected", "bot": "connected"}, body
    assert body["status"] in ("healthy", "degraded"), body

    # Telethon gives up its own connection attempts (to a closed port) before the gateway logs its retry.
    wait_for("the user source's retry in the journal", lambda: "Telegram connect failed; retrying" in
             machine.journal(), 120, 1)
    lines = machine.journal().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records, lines
    assert all({"level", "timestamp", "message", "service"} <= set(r) for r in records), records[:5]
    messages = {r["message"] for r in records}
    assert {"Telegram gateway started", "Telegram connect failed; retrying"} <= messages, messages
    started = next(r for r in records if r["message"] == "Telegram gateway started")
    assert started["token"].startswith("sha256:")  # a fingerprint, never the token
    non_json = [line for line in lines if not line.startswith("{")]
    assert all("tp-capital-gateway.service" in line or "TP Capital Telegram Gateway" in line
               for line in non_json), non_json  # only systemd's own lines besides the gateway's JSON
    everything = machine.out("journalctl --no-pager -o verbose")
    for name, value in SECRETS.items():
        assert value not in everything, f"{name} appears in the journal"


# ---------------------------------------------------------------------------- start.sh uses the unit


def test_start_script_brings_the_apis_up_and_uses_the_running_unit(machine: Machine) -> None:
    pid = int(machine.show("MainPID")["MainPID"])
    # The local stack shares the token with the unit's gateway through the project's .env (owner only).
    machine.write("/opt/tradingsystem/.env", f"GATEWAY_SECRET_TOKEN={GATEWAY_TOKEN}\n")
    result = machine.sh("/opt/tradingsystem/scripts/universal/start.sh --timeout 180", timeout=600)
    assert f"systemd unit {UNIT} active" in result.stdout and "already running" in result.stdout, result.stdout
    assert "journalctl -u" in result.stdout, result.stdout
    assert int(machine.show("MainPID")["MainPID"]) == pid  # used, not restarted
    assert machine.gateway_pids() == [pid]  # and no second gateway under supervisord
    status = json.loads(machine.out(f"cd /opt/tradingsystem && {TS} status --json"))
    gateway = next(p for p in status["programs"] if p["name"] == "gateway")
    assert gateway["state"] == "RUNNING" and gateway["pid"] == pid, status  # systemd's word, not supervisord's
    assert gateway["manager"].startswith(f"systemd unit {UNIT} active"), status
    assert all(p["state"] == "RUNNING" for p in status["programs"]), status
    wait_for("the gateway healthy once the API answers", lambda: machine.http(
        "http://127.0.0.1:4006/health")[1].get("status") == "healthy", 60)


# ---------------------------------------------------------------------------- 3. kill -9 mid-burst


def test_kill_9_mid_burst_is_restarted_after_restart_sec_and_loses_nothing(machine: Machine) -> None:
    assert machine.rows() == (0, 0)
    machine.write(REPLAY_FILE, burst_export(BURST), mode="0644")
    machine.write(ENV_FILE, ENV_TEXT + REPLAY_ENV)
    machine.sh(f"systemctl restart {UNIT}")
    rows_at_kill = wait_for("the burst reaching the API", lambda: (
        lambda rows: rows[0] if 20 <= rows[0] < BURST // 2 else None)(machine.rows()), 120, 0.2)
    pid = int(machine.show("MainPID")["MainPID"])
    cursor = machine.cursor()
    machine.sh(f"kill -9 {pid}")
    killed_at = time.monotonic()
    assert rows_at_kill < BURST

    wait_for("a new main process", lambda: (lambda shown: shown["ActiveState"] == "active"
             and int(shown["MainPID"]) not in (0, pid))(machine.show("ActiveState", "MainPID")), 90)
    restarted_after = time.monotonic() - killed_at
    shown = machine.show("NRestarts", "RestartUSec")
    assert shown["NRestarts"] == "1" and shown["RestartUSec"] == "10s", shown
    after = machine.journal(f"--after-cursor={shlex.quote(cursor)}")
    assert "Main process exited, code=killed, status=9/KILL" in after, after
    assert "Scheduled restart job, restart counter is at 1" in after, after
    # systemd's own clock: from the kill to the next start took at least RestartSec.
    entries = [json.loads(line) for line in machine.out(
        f"journalctl -u {UNIT} --no-pager -o json --after-cursor={shlex.quote(cursor)}").splitlines()]
    exited = next(int(e["__MONOTONIC_TIMESTAMP"]) for e in entries if "code=killed" in e.get("MESSAGE", ""))
    restarted = next(int(e["__MONOTONIC_TIMESTAMP"]) for e in entries
                     if str(e.get("MESSAGE", "")).startswith("Started tp-capital-gateway.service"))
    assert restarted - exited >= 10_000_000, (exited, restarted)

    wait_for("every message of the burst in the API", lambda: machine.rows()[0] >= BURST, 180)
    wait_for("the replay finished and the journal drained", lambda: "Replay finished" in machine.journal(
        f"--after-cursor={shlex.quote(cursor)}") and machine.http(
        "http://127.0.0.1:4006/health")[1].get("journalPending") == 0, 120)
    assert machine.rows() == (BURST, BURST)  # none lost, none twice
    print(f"\nkilled at {rows_at_kill}/{BURST} rows; running again {restarted_after:.1f} s after the kill")


# ---------------------------------------------------------------------------- 4. stop and restart


def _stop_report(machine: Machine) -> dict[str, str]:
    return machine.show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus", "TimeoutStopUSec",
                        "ActiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic")


def test_stop_is_graceful_within_the_stop_timeout_and_restart_keeps_session_and_journal(machine: Machine) -> None:
    machine.write(ENV_FILE, ENV_TEXT)  # the burst is over; the next start reads no replay file
    key_before = machine.out(f"{VENV_BIN}/python -c {shlex.quote(SESSION_KEY)} {SESSION_FILE}")
    # The durable journal is the same file (delivered entries are pruned; nothing is pending after the burst).
    journal_before = machine.out(f"stat -c '%i %a %U' {DATA_DIR}/journal.db")
    assert journal_before.endswith(f" 600 {USER}"), journal_before
    cursor = machine.cursor()
    started = time.monotonic()
    machine.sh(f"systemctl stop {UNIT}")
    elapsed = time.monotonic() - started
    shown = _stop_report(machine)
    assert shown["ActiveState"] == "inactive" and shown["Result"] == "success", shown
    assert shown["ExecMainCode"] == "1" and shown["ExecMainStatus"] == "0", shown  # exited, status 0
    stop_us = int(shown["InactiveEnterTimestampMonotonic"]) - int(shown["ActiveExitTimestampMonotonic"])
    assert shown["TimeoutStopUSec"] == "40s" and stop_us < 40_000_000, shown
    wait_for("the gateway's last line in the journal", lambda: "Graceful shutdown completed" in machine.journal(
        f"--after-cursor={shlex.quote(cursor)}"), 30)
    print(f"\nsystemctl stop took {elapsed:.1f} s (systemd: {stop_us / 1e6:.1f} s of 40 s)")

    machine.sh(f"systemctl start {UNIT}")
    first_pid = int(machine.show("MainPID")["MainPID"])
    wait_for("the gateway answering", lambda: machine.http("http://127.0.0.1:4006/health/live")[0] == 200, 90)
    cursor = machine.cursor()
    machine.sh(f"systemctl restart {UNIT}")
    wait_for("the gateway answering after the restart", lambda: machine.http(
        "http://127.0.0.1:4006/health")[1].get("telegram") == "connected", 90)
    assert int(machine.show("MainPID")["MainPID"]) != first_pid
    after = wait_for("the restarted gateway retrying Telegram with its session", lambda: (
        lambda text: text if "Telegram connect failed; retrying" in text else None)(
        machine.journal(f"--after-cursor={shlex.quote(cursor)}")), 120, 1)
    assert "Graceful shutdown completed" in after, after
    assert "No usable Telegram session" not in after, after
    # The same session (same auth key, same owner and mode, nothing set aside) and the same durable journal.
    assert machine.out(f"{VENV_BIN}/python -c {shlex.quote(SESSION_KEY)} {SESSION_FILE}") == key_before
    assert machine.out(f"stat -c '%a %U' {SESSION_FILE}") == f"600 {USER}"
    assert machine.out(f"ls -A {SESSION_DIR} | grep -c -e corrupt -e expired || true") == "0"
    assert machine.out(f"stat -c '%i %a %U' {DATA_DIR}/journal.db") == journal_before
    assert machine.out(f"{VENV_BIN}/python -c {shlex.quote(JOURNAL_STATES)} {DATA_DIR}/journal.db "
                       "| grep -c pending || true") == "0"
    # journald keeps the earlier runs' lines: the first start of the first test is still there.
    assert machine.journal().count("Telegram gateway started") >= 4
    assert machine.rows() == (BURST, BURST)


# ---------------------------------------------------------------------------- 5. the security score


def test_systemd_analyze_security_of_the_running_unit(machine: Machine, docker_engine: str) -> None:
    report = machine.out(f"SYSTEMD_COLORS=0 systemd-analyze security {UNIT} --no-pager")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\S+)", report)
    assert match, report
    exposure, verdict = float(match.group(1)), match.group(2)
    version = machine.out("systemctl --version | head -1")
    host = subprocess.run(["uname", "-srm"], capture_output=True, text=True, check=True).stdout.strip()
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    engine = subprocess.run([docker_engine, "version", "--format", "{{.Server.Version}}"], capture_output=True,
                            text=True, check=False).stdout.strip()
    SECURITY_REPORT.parent.mkdir(parents=True, exist_ok=True)
    SECURITY_REPORT.write_text(
        f"# systemd-analyze security {UNIT}: the unit as installed and running under systemd (PID 1)\n"
        f"# Recorded by tests/container/test_systemd_gateway.py on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"# Machine: {host}, {cores} cores; Docker engine {engine}; container {version} (Debian 12)\n"
        f"# Goal: exposure <= {EXPOSURE_GOAL} (\"OK\")\n"
        f"exposure: {exposure} {verdict}\n\n{report}\n",
        encoding="utf-8",
    )
    assert exposure <= EXPOSURE_GOAL and verdict == "OK", report


# ---------------------------------------------------------------------------- 6. the scripts use the unit


def test_health_check_and_stop_scripts_use_the_unit(machine: Machine) -> None:
    scripts = "/opt/tradingsystem/scripts"
    wait_for("the gateway healthy", lambda: machine.http("http://127.0.0.1:4006/health")[1].get(
        "status") == "healthy", 60)
    pid = int(machine.show("MainPID")["MainPID"])
    health = machine.sh(f"{scripts}/maintenance/health-check-all.sh", check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    assert f"systemd unit {UNIT} active (running, pid {pid}" in health.stdout, health.stdout
    as_json = json.loads(machine.out(f"{scripts}/maintenance/health-check-all.sh --format json"))
    assert as_json["components"]["gateway"]["manager"].startswith(f"systemd unit {UNIT} active"), as_json

    stop = machine.sh(f"{scripts}/universal/stop.sh", timeout=200)
    assert f"systemd unit {UNIT} stopped (was pid {pid}" in stop.stdout, stop.stdout
    assert "every port is free" in stop.stdout, stop.stdout
    shown = _stop_report(machine)
    assert shown["ActiveState"] == "inactive" and shown["Result"] == "success", shown
    assert machine.gateway_pids() == []

    down = machine.sh(f"{scripts}/maintenance/health-check-all.sh", check=False)
    assert down.returncode == 2, down.stdout
    assert f"systemd unit {UNIT} inactive" in down.stdout and f"journalctl -u {UNIT}" in down.stdout, down.stdout

    again = machine.sh(f"{scripts}/universal/start.sh --timeout 180", timeout=600)
    assert f"systemd unit {UNIT} active" in again.stdout and ", started:" in again.stdout, again.stdout
    assert machine.gateway_pids() == [int(machine.show("MainPID")["MainPID"])]
    machine.sh(f"{scripts}/universal/stop.sh", timeout=200)
    assert machine.out(f"systemctl is-active {UNIT} || true") == "inactive"
