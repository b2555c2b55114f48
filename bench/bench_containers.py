"""Benchmark of the compose stack: `up` (database file, then apps file) to all healthy, and the dev profile's reload."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.compose import (
    APPS_FILE,
    DATABASE_FILE,
    ComposeStack,
    build_images,
    copy_project,
    edit_and_time_reload,
    up_dev_profile,
)

from bench.common import RESULTS, log, machine_info, write_result

RESULT_FILE = RESULTS / "containers.json"
TARGET_RELOAD_S = 2.0


def one_up(images: dict[str, str]) -> dict[str, float]:
    """A new stack (new volume: initdb and migrations included) from the two `up -d` commands to all healthy."""
    stack = ComposeStack.create(images)
    try:
        started = time.monotonic()
        stack.compose(DATABASE_FILE, "up", "-d")
        stack.compose(APPS_FILE, "up", "-d")
        stack.wait_healthy(timeout=600)
        cold = time.monotonic() - started
        stack.down()
        started = time.monotonic()
        stack.up()
        stack.wait_healthy(timeout=600)
        warm = time.monotonic() - started
    finally:
        stack.destroy()
    return {"cold_up_to_healthy_s": round(cold, 1), "warm_up_to_healthy_s": round(warm, 1)}


def reloads(images: dict[str, str], edits: int) -> list[float]:
    root = Path(tempfile.mkdtemp(prefix="ts-bench-dev-"))
    copy_project(root)
    stack = ComposeStack.create(images, root=root)
    try:
        up_dev_profile(stack)
        # The slower of the two services for each edit: the edit is served once both serve it.
        return [max(edit_and_time_reload(stack, f"alive-{i}").values()) for i in range(edits)]
    finally:
        stack.destroy()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--no-build", action="store_true",
                        help="use the images already built (IMAGE_TAG, TIMESCALEDB_IMAGE), not tools/ci/images.sh")
    args = parser.parse_args()
    machine = machine_info()
    images = {} if args.no_build else build_images()
    if os.environ.get("TIMESCALEDB_IMAGE"):
        images["TIMESCALEDB_IMAGE"] = os.environ["TIMESCALEDB_IMAGE"]
    runs: list[dict[str, float]] = []
    for run in range(args.runs):
        runs.append(one_up(images))
        log(f"run {run + 1}: {runs[-1]}")
    edits = reloads(images, args.edits)
    log(f"reloads: {edits}")
    data: dict[str, Any] = {
        "benchmark": "compose stack",
        "machine": {**machine, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "what": "up_to_healthy: wall time from `docker compose -f tools/compose/docker-compose.database.yml up -d` "
                "(then the apps file) until docker reports the database and both API containers `healthy`; cold "
                "is a new volume (initdb, extension, migrations), warm is after `down` with the volume kept. "
                "reload: the dev profile, from writing a mounted source file on the host until both dev "
                "containers serve the changed /health/live answer. Images are built beforehand.",
        "images": images,
        "runs": runs,
        "best": {
            "cold_up_to_healthy_s": min(r["cold_up_to_healthy_s"] for r in runs),
            "warm_up_to_healthy_s": min(r["warm_up_to_healthy_s"] for r in runs),
            "reload_s": min(edits),
            "reload_median_s": round(statistics.median(edits), 2),
        },
        "reload_s": edits,
        "reload_target_s": TARGET_RELOAD_S,
        "reload_target_met": statistics.median(edits) <= TARGET_RELOAD_S,
    }
    path = write_result(RESULT_FILE.stem, data)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
