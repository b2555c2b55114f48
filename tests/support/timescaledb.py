"""A real TimescaleDB for tests: the project's image in a container on a free loopback port, removed afterwards."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = ROOT / "tools" / "ci" / "timescaledb-image.sh"
DEFAULT_IMAGE = "tradingsystem-ci/timescaledb:2.28.3-pg15"
IMAGE_VARIABLE = "TIMESCALEDB_IMAGE"
USER = "postgres"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def ensure_image() -> str:
    """The image to run: $TIMESCALEDB_IMAGE as given, else the local build (made or refreshed by its script)."""
    image = os.environ.get(IMAGE_VARIABLE, "")
    if image:
        return image
    result = subprocess.run([str(IMAGE_SCRIPT), DEFAULT_IMAGE], capture_output=True, text=True, timeout=3600,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{IMAGE_SCRIPT.name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return DEFAULT_IMAGE


class TimescaleContainer:
    """One TimescaleDB server in a container, published on 127.0.0.1:<a port docker picks>."""

    def __init__(self, image: str, *server_options: str, name_prefix: str = "tradingsystem-test-timescaledb") -> None:
        self.image = image
        self.server_options = list(server_options)
        self.name = f"{name_prefix}-{uuid.uuid4().hex[:10]}"
        self.password = secrets.token_urlsafe(18)
        self.port = 0

    def start(self, timeout: float = 120) -> TimescaleContainer:
        docker("run", "-d", "--name", self.name, "-p", "127.0.0.1::5432", "-e", f"POSTGRES_PASSWORD={self.password}",
               "--tmpfs", "/var/lib/postgresql/data:uid=999,gid=999,mode=0700", "--shm-size", "256m",
               self.image, "postgres", *self.server_options)
        try:
            published = docker("port", self.name, "5432/tcp").stdout.strip().splitlines()[0]
            self.port = int(published.rsplit(":", 1)[1])
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        # The entrypoint's first start runs initdb and the init scripts on a socket-only server, then restarts:
        # ready means a TCP login with the password works.
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            state = docker("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip()
            if state != "true":
                raise RuntimeError(f"{self.name} exited during start:\n{self.logs()}")
            try:
                asyncio.run(self._ping())
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                last = exc
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not accept logins within {timeout:.0f} s ({last!r}):\n{self.logs()}")

    async def _ping(self) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=3)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    @property
    def admin_url(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def logs(self) -> str:
        result = docker("logs", "--tail", "60", self.name, check=False)
        return result.stdout + result.stderr

    def stop(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False, timeout=60)


def engine_answers() -> bool:
    try:
        return docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main(argv: list[str]) -> int:
    """`python -m tests.support.timescaledb COMMAND…`: run COMMAND with a TimescaleDB server for the tests.

    The server is this project's image in a container on a free loopback port; COMMAND sees its admin URL in
    TRADINGSYSTEM_TEST_PG_ADMIN_URL, and the container is removed afterwards. Without a Docker engine the pass
    is not run (one line says so), unless TRADINGSYSTEM_REQUIRE_CONTAINERS=1, where that is a failure.
    """
    from tests.support.pg import EXTERNAL_VARIABLE

    if not argv:
        print("usage: python -m tests.support.timescaledb COMMAND [ARG...]", file=sys.stderr)
        return 2
    if not engine_answers():
        if os.environ.get("TRADINGSYSTEM_REQUIRE_CONTAINERS") == "1":
            print("TimescaleDB pass: no Docker engine answers and TRADINGSYSTEM_REQUIRE_CONTAINERS=1; "
                  "tools/ci/docker-engine.sh starts one", file=sys.stderr)
            return 1
        print("TimescaleDB pass not run: no Docker engine answers (tools/ci/docker-engine.sh starts one)")
        return 0
    started = time.monotonic()
    image = ensure_image()
    server = TimescaleContainer(image).start()
    print(f"TimescaleDB pass: {image} on 127.0.0.1:{server.port} (ready in {time.monotonic() - started:.0f} s)",
          flush=True)
    try:
        return subprocess.run(argv, env={**os.environ, EXTERNAL_VARIABLE: server.admin_url}, check=False).returncode
    finally:
        server.stop()
        print(f"TimescaleDB pass: {time.monotonic() - started:.0f} s in all", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
