"""`make test`'s own set-up step: silent when everything is there, one clear line when it cannot install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "ci" / "prereqs.sh"


def fake_tools(bin_dir: Path, *names: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)


def run(bin_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Only the given directory on PATH: no apt-get, so nothing can be installed from here.
    env = {"PATH": str(bin_dir), "PYTHON": sys.executable, "VENV": str(cwd / ".venv"), "HOME": str(cwd)}
    return subprocess.run(["/bin/bash", str(SCRIPT)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_nothing_missing_is_silent(tmp_path: Path) -> None:
    fake_tools(tmp_path / "bin", "promtool", "systemd-analyze")
    result = run(tmp_path / "bin", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_missing_tools_without_apt_stop_at_once_with_one_line_naming_them_and_the_install(tmp_path: Path) -> None:
    fake_tools(tmp_path / "bin", "systemd-analyze")
    result = run(tmp_path / "bin", tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == "", result.stderr
    assert "promtool" in lines[0] and "systemd-analyze" not in lines[0]
    assert "apt-get install -y --no-install-recommends prometheus" in lines[0]


def test_every_missing_tool_is_named_in_the_same_line(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    result = run(tmp_path / "bin", tmp_path)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "promtool" in line and "systemd-analyze" in line and "prometheus systemd" in line


def test_ci_and_make_test_use_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "tools/ci/prereqs.sh" in makefile
    test_target = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "prereqs" in test_target
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci
    assert os.access(SCRIPT, os.X_OK)
