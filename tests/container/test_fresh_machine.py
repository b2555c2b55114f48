"""A machine that has never seen the project runs the README's two commands, as root and as an ordinary user.

The machine is a container built from tests/container/fresh.Dockerfile: Debian 12 with Python, make and a clone
of this checkout, nothing else. In it, `make up` must bring every service up with signals on /signals and
`make down` must free every port; `make test` must do its own set-up (as root it installs what it needs, as an
ordinary user it stops at once with one line naming the install command, and passes once that command has run).
The container shares the host's network (PyPI is reached the way the host reaches it), so the services listen
on the host's 3200, 4005 and 4006: those ports must be free when this suite runs.

`make test` runs with a selection (PYTEST_ARGS): the whole suite runs in CI itself, on a fresh clone; what the
fresh machine adds is the set-up (prerequisites, venv, lint) and the tests that depend on it (promtool,
systemd-analyze, the embedded PostgreSQL under this user), not a second copy of the full run (docs/decisions.md).
"""

from __future__ import annotations

import secrets
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.compose import build_test_image, copy_checkout
from tests.support.servers import wait_until

pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "tests/container/fresh.Dockerfile"
IMAGE = "tradingsystem-ci/fresh-machine:test"
PORTS = {"workspace": 3200, "api": 4005, "gateway": 4006}
CHECKOUTS = {"root": "/root/tradingsystem", "trader": "/home/trader/tradingsystem"}
# The tests that depend on what `make test` sets up: promtool, systemd-analyze, PostgreSQL under this user.
SELECTION = ("tests/unit/test_ci_prereqs.py tests/unit/test_deploy_systemd.py tests/unit/test_deploy_prometheus.py "
             "tests/integration/test_tpcapital_ingest.py")
MAKE_TEST = f"make test PYTEST_ARGS={shlex.quote(SELECTION)}"


@dataclass
class Machine:
    """One fresh container; commands run in the clone as `user`, the way that user would type them."""

    docker: str
    name: str
    user: str

    def run(self, command: str, user: str | None = None, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        who = user or self.user
        started = time.monotonic()
        result = subprocess.run(
            [self.docker, "exec", "-u", who, "-w", CHECKOUTS[self.user], self.name, "bash", "-c", command],
            capture_output=True, text=True, timeout=timeout, check=False)
        print(f"[{who}] $ {command}  -> {result.returncode} in {time.monotonic() - started:.0f} s")
        return result


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.fixture(scope="module")
def image(docker_engine: str, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("fresh-context")
    clone = context / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(REPO), str(clone)], check=True, timeout=120)
    # A clone holds what is committed; in a working copy with edits the files as they are now go on top
    # (CI's checkout is clean, so there the clone is exactly main).
    copy_checkout(clone)
    return build_test_image(docker_engine, base_image, DOCKERFILE, IMAGE, context)


@pytest.fixture(params=sorted(CHECKOUTS))
def machine(request: pytest.FixtureRequest, image: str, docker_engine: str) -> Iterator[Machine]:
    busy = {service: port for service, port in PORTS.items() if port_in_use(port)}
    if busy:
        pytest.fail(f"the fresh-machine test needs the host's ports {busy} free (its services listen there)",
                    pytrace=False)
    name = f"tradingsystem-ci-fresh-{request.param}-{secrets.token_hex(4)}"
    subprocess.run([docker_engine, "run", "-d", "--name", name, "--network", "host", image],
                   capture_output=True, text=True, check=True, timeout=120)
    box = Machine(docker_engine, name, request.param)
    try:
        yield box
    finally:
        # Whatever the test left running dies with the container; the ports are the host's, so check them.
        subprocess.run([docker_engine, "rm", "-f", "-v", name], capture_output=True, check=False, timeout=120)


def signal_count() -> int:
    try:
        response = httpx.get(f"http://127.0.0.1:{PORTS['api']}/signals", timeout=5, trust_env=False)
    except httpx.HTTPError:
        return 0
    return int(response.json()["count"]) if response.status_code == 200 else 0


def test_the_readme_commands_on_a_fresh_machine(machine: Machine) -> None:
    assert machine.run("id -un").stdout.strip() == machine.user
    # Nothing of the project is there yet: no venv, no var directory, no database user.
    assert machine.run("test ! -e .venv && test ! -e var && ! getent passwd pgserver").returncode == 0

    # 1. The README's run command.
    up = machine.run("make up")
    assert up.returncode == 0, output(up)
    assert "warning" not in (up.stdout + up.stderr).lower(), output(up)
    wait_until(lambda: signal_count() >= 5, 120, message="the demo channel's signals on /signals")
    for service, port in PORTS.items():
        path = "/api/items" if service == "workspace" else "/health"
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5, trust_env=False)
        assert response.status_code == 200, (service, response.text)
    status = machine.run(".venv/bin/tradingsystem status")
    assert status.returncode == 0, output(status)

    down = machine.run("make down")
    assert down.returncode == 0, output(down)
    assert "warning" not in (down.stdout + down.stderr).lower(), output(down)
    still = {service: port for service, port in PORTS.items() if port_in_use(port)}
    assert still == {}, f"ports still taken after make down: {still}\n{output(down)}"

    # 2. The README's test command.
    if machine.user != "root":
        # An ordinary user cannot install packages: one line names what is missing and the command that installs it.
        refused = machine.run(MAKE_TEST)
        assert refused.returncode != 0
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output(refused)
        assert "promtool" in errors[0] and "systemd-analyze" in errors[0], errors[0]
        command = errors[0].split("install with: ", 1)[1].split(" (Debian", 1)[0]
        assert command.startswith("sudo apt-get install"), errors[0]
        # What the administrator does with that line (no sudo in this container: root runs it directly).
        installed = machine.run(f"apt-get update -qq && {command.removeprefix('sudo ')}", user="root", timeout=900)
        assert installed.returncode == 0, output(installed)
    tested = machine.run(MAKE_TEST)
    assert tested.returncode == 0, output(tested)
    assert " passed" in tested.stdout and " failed" not in tested.stdout, output(tested)
    assert "warning" not in (tested.stdout + tested.stderr).lower(), output(tested)
