"""Checks the TimescaleDB and load-balancer image definitions: hadolint, base as an argument, non-root, scripts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from tests.unit.test_deploy_docker import find_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "deploy/timescaledb/Dockerfile", ROOT / "deploy/loadbalancer/Dockerfile"]
SCRIPTS = [ROOT / "deploy/timescaledb/docker-entrypoint.sh", ROOT / "deploy/timescaledb/000_install_timescaledb.sh",
           ROOT / "tools/ci/timescaledb-image.sh"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_reports_nothing(dockerfile: Path) -> None:
    result = subprocess.run([find_tool("hadolint"), "--no-color", str(dockerfile)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_is_a_build_argument_and_the_user_is_numeric_and_unprivileged(dockerfile: Path) -> None:
    text = dockerfile.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms and all(f.startswith("${BASE") for f in froms), froms
    assert re.search(r"^ARG BASE(_IMAGE)?=debian:bookworm-slim$", text, flags=re.M)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_are_executable(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    assert script.stat().st_mode & 0o111


def test_the_vendored_source_never_enters_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    assert not [name for name in tracked.splitlines() if name.endswith((".tar.gz", ".tgz"))]
