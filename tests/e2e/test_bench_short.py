"""`make bench`: every benchmark runs in its short mode into a scratch directory; bench/results/ is left alone."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "bench" / "results"
EXPECTED = {"parser.json", "ceiling.json", "workspace.json", "ingest.json", "gateway.json", "gateway_memory.json",
            "up.json", "batch_sql.json", "tail.json", "SUMMARY.md"}


def snapshot(directory: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(directory.iterdir())}


@pytest.mark.timeout(1200)
def test_the_short_mode_runs_every_benchmark_into_scratch_and_leaves_the_results_alone(tmp_path: Path) -> None:
    before = snapshot(RECORDED)
    out = tmp_path / "scratch"
    # The compose stack's benchmark is left out here: the container suite runs that stack already.
    result = subprocess.run([sys.executable, "-m", "bench.run_all", "--out", str(out), "--skip", "containers"],
                            cwd=ROOT, capture_output=True, text=True, timeout=1100, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert snapshot(RECORDED) == before
    assert {path.name for path in out.iterdir()} == EXPECTED
    for name in EXPECTED - {"SUMMARY.md"}:
        data = json.loads((out / name).read_text())
        assert data["machine"]["cores"]  # every result says which machine it comes from
    assert json.loads((out / "parser.json").read_text())["messages"] >= 5000
    assert json.loads((out / "up.json").read_text())["runs"] == 1
    [batch_sql] = json.loads((out / "batch_sql.json").read_text())["runs"]["current"]
    assert batch_sql["functions_ms_per_batch"]["ingest_batch"]["calls_per_batch"] == 1
    tail = json.loads((out / "tail.json").read_text())["figures"]
    assert len(tail["floor_insert"]["runs"]) == 1 and tail["ingest"]["median_p99_ms"] > 0
    assert "Workspace API" in (out / "SUMMARY.md").read_text()


def test_record_and_out_together_are_refused() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.run_all", "--record", "--out", "/tmp/x"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--record writes bench/results/" in result.stderr
