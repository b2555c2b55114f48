"""How `make test` treats the container suite without an engine: deselected with one line, or failed in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITE = "tests/container/test_stack.py"


def run_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # An engine address where nothing listens: `docker info` fails the way it does on a machine without one.
    environment = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", **env}
    environment.pop("TRADINGSYSTEM_REQUIRE_CONTAINERS", None)
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITE], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=240, check=False)


def test_without_an_engine_the_suite_is_deselected_and_says_why(tmp_path: Path) -> None:
    result = run_suite(tmp_path)
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if line.startswith("container suite not run")]
    assert len(lines) == 1, output
    assert "no Docker engine answers" in lines[0] and "TRADINGSYSTEM_REQUIRE_CONTAINERS=1" in lines[0]
    assert "docker-engine.sh" in lines[0]
    # Deselected, not skipped: nothing ran, nothing was reported as skipped.
    assert "deselected" in output and "skipped" not in output, output
    assert result.returncode == 5, output  # pytest's "no tests ran" for a suite of container tests only


def test_in_ci_a_missing_engine_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = run_suite(tmp_path, TRADINGSYSTEM_REQUIRE_CONTAINERS="1")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "container suite is required (TRADINGSYSTEM_REQUIRE_CONTAINERS=1) but cannot run" in output
    assert "no Docker engine answers" in output
    assert "skipped" not in output and "deselected" not in output
