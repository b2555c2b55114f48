"""The Docker engine and one isolated compose stack (own project, network, volume and host ports) for tests."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import ProcessServer, tradingsystem_argv
from tradingsystem.core.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "src/tradingsystem/gateway/data/sample_export.json"
DATABASE_FILE = Path("tools/compose/docker-compose.database.yml")
APPS_FILE = Path("tools/compose/docker-compose.apps.yml")
IMAGES_SCRIPT = ROOT / "tools" / "ci" / "images.sh"
REQUIRE_VARIABLE = "TRADINGSYSTEM_REQUIRE_CONTAINERS"
# What an operator's shell might hold that would point the stack elsewhere.
ISOLATED_PREFIXES = ("TELEGRAM_", "TIMESCALEDB_", "GATEWAY_", "REPLAY_", "FAILURE_QUEUE_", "COMPOSE_")
ISOLATED_NAMES = {"DATABASE_URL", "API_SECRET_TOKEN", "API_ENDPOINT", "HOST", "TRADINGSYSTEM_VAR_DIR",
                  "WORKSPACE_PORT", "API_PORT", "EMBEDDED_PG_PORT", "TRADINGSYSTEM_STACK", "TP_CAPITAL_API_KEY"}
# Gateway-side secrets a shared environment may hold; none of them may reach a container.
GATEWAY_SECRETS = ("TELEGRAM_API_ID", "TELEGRAM_API_HASH", "TELEGRAM_INGESTION_BOT_TOKEN", "TELEGRAM_PHONE_NUMBER")


def required() -> bool:
    """CI sets TRADINGSYSTEM_REQUIRE_CONTAINERS=1: a missing engine is then a failure, never a skip."""
    return os.environ.get(REQUIRE_VARIABLE, "") == "1"


def engine_problem() -> str | None:
    """Why the container suite cannot run here, or None when a Docker engine with Compose v2 answers."""
    if shutil.which("docker") is None:
        return "no `docker` command on PATH"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        last = (info.stderr.strip() or info.stdout.strip()).splitlines()[-1:] or ["no output"]
        return f"no Docker engine answers (`docker info`: {last[0]})"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30,
                             check=False)
    if compose.returncode != 0:
        return "Compose v2 is missing (`docker compose version` fails)"
    return None


def build_images() -> dict[str, str]:
    """Run tools/ci/images.sh (layer cache kept) and return the `NAME=value` lines it printed."""
    result = subprocess.run([str(IMAGES_SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=3600,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"tools/ci/images.sh failed ({result.returncode}):\n{result.stderr[-4000:]}")
    values = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isupper():
            values[key] = value
    return values


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def inspect(container: str) -> dict[str, Any]:
    data = json.loads(docker("inspect", container).stdout)
    assert isinstance(data, list) and len(data) == 1
    return dict(data[0])


def isolated_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items()
            if key not in ISOLATED_NAMES and not key.startswith(ISOLATED_PREFIXES)}


def copy_project(target: Path) -> Path:
    """What `up --mode containers` and the dev profile need of the project: compose files, scripts, sources."""
    for name in ("tools/compose", "scripts", "src", "deploy"):
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", ".dockerignore"):
        shutil.copy2(ROOT / name, target / name)
    return target


def copy_checkout(target: Path, skip_tests: bool = False) -> Path:
    """This checkout's files as git sees them (tracked and untracked, not ignored), as they are now, into target."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if skip_tests and name.startswith("tests/"):
            continue
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            copy = target / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(source.read_bytes())
            copy.chmod(source.stat().st_mode & 0o777)
    return target


def build_test_image(docker_client: str, base_image: str, dockerfile: Path, tag: str, context: Path) -> str:
    """`docker build` of a test machine from the local Debian base (registries reached through the host)."""
    started = time.monotonic()
    result = subprocess.run(
        [docker_client, "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base_image}",
         "-f", str(dockerfile), "-t", tag, str(context)],
        capture_output=True, text=True, check=False, timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    print(f"\nimage {tag} built in {time.monotonic() - started:.0f} s")
    return tag


@dataclass
class ComposeStack:
    """One stack of both compose files under its own TRADINGSYSTEM_STACK name, on free host ports."""

    name: str
    root: Path
    env: dict[str, str]
    ports: dict[str, int]
    outputs: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, images: dict[str, str], root: Path = ROOT, **extra: str) -> ComposeStack:
        name = f"tstest{secrets.token_hex(4)}"
        ports = {"api": free_port(), "workspace": free_port(), "database": free_port(), "gateway": free_port()}
        password = secrets.token_urlsafe(18)
        env = {
            **isolated_environment(),
            "TRADINGSYSTEM_STACK": name,
            "IMAGE_TAG": os.environ.get("IMAGE_TAG", "local"),
            "TIMESCALEDB_PASSWORD": password,
            "GATEWAY_SECRET_TOKEN": secrets.token_urlsafe(24),
            "API_PORT": str(ports["api"]),
            "WORKSPACE_PORT": str(ports["workspace"]),
            "GATEWAY_PORT": str(ports["gateway"]),
            # Host-side view of the database (`tradingsystem health`); the containers use timescaledb:5432.
            "TIMESCALEDB_HOST": "127.0.0.1",
            "TIMESCALEDB_PORT": str(ports["database"]),
            "TIMESCALEDB_USER": "tradingsystem",
            "TIMESCALEDB_DATABASE": "tradingsystem",
            **{key: value for key, value in images.items() if key != "BASE_IMAGE"},
            **extra,
        }
        return cls(name, root, env, ports)

    # ------------------------------------------------------------------ compose

    def compose(self, file: Path, *args: str, timeout: float = 300, check: bool = True,
                project: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["docker", "compose", "-f", str(file)]
        if project is not None:
            argv += ["-p", project]
        result = subprocess.run([*argv, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        self.outputs.append(f"$ {' '.join(argv[3:] + list(args))} -> {result.returncode}\n{result.stderr[-2000:]}")
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose -f {file} {' '.join(args)} -> {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def up(self) -> None:
        """The operator's two commands: the database file first (it creates the network), then the apps."""
        self.compose(DATABASE_FILE, "up", "-d")
        self.compose(APPS_FILE, "up", "-d")

    def down(self) -> None:
        self.compose(APPS_FILE, "down")
        self.compose(DATABASE_FILE, "down")

    def destroy(self) -> None:
        """Remove everything the stack created, volume included (the fixture's teardown)."""
        projects = {f"{self.name}-apps", f"{self.name}-database", f"{self.name}-dev"}
        ids = set()
        for project in projects:
            found = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}", check=False)
            ids.update(found.stdout.split())
        if ids:
            docker("rm", "-f", "-v", *sorted(ids), check=False, timeout=180)
        docker("network", "rm", self.network, check=False)
        docker("volume", "rm", self.volume, check=False)

    @property
    def network(self) -> str:
        return f"{self.name}_backend"

    @property
    def volume(self) -> str:
        return f"{self.name}_timescaledb_data"

    def container(self, service: str) -> str:
        project = {"timescaledb": "database"}.get(service, "apps")
        if service.endswith("-dev"):
            project = "dev"
        return f"{self.name}-{project}-{service}-1"

    def running(self) -> list[str]:
        """Names of this stack's running containers (any of its compose projects)."""
        names = []
        for project in ("apps", "database", "dev"):
            found = docker("ps", "--format", "{{.Names}}", "--filter",
                           f"label=com.docker.compose.project={self.name}-{project}", check=False)
            names += found.stdout.split()
        return sorted(names)

    def health(self, service: str) -> str:
        state = inspect(self.container(service))["State"]
        return str(state.get("Health", {}).get("Status", state.get("Status")))

    def wait_healthy(self, services: tuple[str, ...] = ("timescaledb", "tp-capital-api", "workspace"),
                     timeout: float = 300) -> float:
        """Wait until docker reports every service `healthy`; return the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {service: self.health(service) for service in services}
            if all(state == "healthy" for state in states.values()):
                return time.monotonic() - started
            time.sleep(0.5)
        logs = {service: docker("logs", "--tail", "20", self.container(service), check=False) for service in services}
        tails = "\n".join(f"--- {s}\n{r.stdout[-1500:]}{r.stderr[-1500:]}" for s, r in logs.items())
        raise AssertionError(f"not all healthy after {timeout:.0f} s: {states}\n{tails}")

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """A command of the project (`tradingsystem ...` via this interpreter, or a script) in the stack's root."""
        command = [sys.executable, "-m", "tradingsystem.cli", *argv[1:]] if argv[0] == "tradingsystem" else list(argv)
        env = {**self.env, "PATH": f"{Path(sys.executable).parent}:{self.env.get('PATH', '/usr/bin:/bin')}"}
        result = subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout,
                                check=False)
        self.outputs.append(f"$ {' '.join(argv)} -> {result.returncode}\n{result.stdout}{result.stderr}")
        return result

    def psql(self, sql: str) -> str:
        """One query in the database container, unaligned and tuples-only."""
        result = docker("exec", self.container("timescaledb"), "psql", "-v", "ON_ERROR_STOP=1", "-U", "tradingsystem",
                        "-d", "tradingsystem", "-tAc", sql)
        return result.stdout.strip()


def write_export(path: Path, channel: int, count: int) -> Path:
    """A Telegram Desktop export of `count` distinct signal messages in one channel."""
    start = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    messages = []
    for i in range(count):
        when = start + timedelta(minutes=i)
        text = f"Swing Trade\n\nAtivo: PETR4\nCompra: {20 + i},10 a {20 + i},30\nAlvo 1: {25 + i},00\nStop: {18 + i},00"
        messages.append({"id": 7000 + i, "type": "message", "date": when.strftime("%Y-%m-%dT%H:%M:%S"),
                         "date_unixtime": str(int(when.timestamp())), "from": "Container test",
                         "from_id": f"channel{channel}", "text": text,
                         "text_entities": [{"type": "plain", "text": text}]})
    path.write_text(json.dumps({"name": "Container test", "type": "public_channel", "id": channel,
                                "messages": messages}), encoding="utf-8")
    return path


def gateway_environment(stack: ComposeStack, data_dir: Path, export: Path, **extra: str) -> dict[str, str]:
    """The gateway on the host, publishing into the API container through its published port."""
    return {
        "GATEWAY_SECRET_TOKEN": stack.env["GATEWAY_SECRET_TOKEN"],
        "API_ENDPOINT": stack.url("api", "/ingest"),
        "GATEWAY_PORT": str(stack.ports["gateway"]),
        "GATEWAY_DATA_DIR": str(data_dir),
        "TELEGRAM_REPLAY_FILE": str(export),
        "TELEGRAM_API_ID": "", "TELEGRAM_API_HASH": "", "TELEGRAM_INGESTION_BOT_TOKEN": "",
        **extra,
    }


def start_gateway(stack: ComposeStack, data_dir: Path, export: Path, **extra: str) -> ProcessServer:
    env = gateway_environment(stack, data_dir / "data", export, **extra)
    server = ProcessServer(tradingsystem_argv("serve", "gateway"), env, stack.ports["gateway"],
                           data_dir / "gateway.log").start()
    server.wait_healthy(60)
    return server


def gateway_health(server: ProcessServer) -> dict[str, object]:
    body = httpx.get(server.url + "/health", timeout=5, trust_env=False).json()
    assert isinstance(body, dict)
    return body


DEV_SERVICES = {"tp-capital-api-dev": "api", "workspace-dev": "workspace"}
LIVE_SOURCE = "tradingsystem/core/http.py"
LIVE_ANSWER = '{"status": "alive", "uptime": uptime_s(app)}'


def up_dev_profile(stack: ComposeStack) -> None:
    """The database, then the dev profile's two services (source mounted, --reload) in their own project."""
    stack.compose(DATABASE_FILE, "up", "-d")
    stack.wait_healthy(("timescaledb",))
    stack.compose(APPS_FILE, "--profile", "dev", "up", "-d", *DEV_SERVICES, project=f"{stack.name}-dev")
    stack.wait_healthy(tuple(DEV_SERVICES))


def live_status(stack: ComposeStack, name: str) -> str | None:
    try:
        body = httpx.get(stack.url(name, "/health/live"), timeout=2, trust_env=False).json()
    except (httpx.HTTPError, ValueError):
        return None
    return str(body.get("status"))


def edit_and_time_reload(stack: ComposeStack, marker: str, timeout: float = 60) -> dict[str, float]:
    """Change what /health/live answers in the mounted source; seconds until each dev service serves it."""
    source = stack.root / "src" / LIVE_SOURCE
    text = source.read_text(encoding="utf-8")
    current = re.search(r'\{"status": "([^"]+)", "uptime": uptime_s\(app\)\}', text)
    assert current is not None, f"{LIVE_SOURCE} no longer has the /health/live answer this test edits"
    started = time.monotonic()
    source.write_text(text.replace(current.group(0), LIVE_ANSWER.replace('"alive"', f'"{marker}"')), encoding="utf-8")
    seen: dict[str, float] = {}
    deadline = started + timeout
    while len(seen) < len(DEV_SERVICES) and time.monotonic() < deadline:
        for name in DEV_SERVICES.values():
            if name not in seen and live_status(stack, name) == marker:
                seen[name] = round(time.monotonic() - started, 2)
        time.sleep(0.05)
    assert len(seen) == len(DEV_SERVICES), f"only {seen} served the edit within {timeout:.0f} s"
    return seen
