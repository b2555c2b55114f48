"""Fixtures of the container suite: the engine (required in CI), the images built once, isolated stacks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.compose import (
    GATEWAY_SECRETS,
    REQUIRE_VARIABLE,
    ComposeStack,
    build_images,
    engine_problem,
)


@pytest.fixture(scope="session")
def engine() -> None:
    problem = engine_problem()
    if problem is not None:
        pytest.fail(f"the container suite is required ({REQUIRE_VARIABLE}=1) but cannot run: {problem}. "
                    "tools/ci/docker-engine.sh installs and starts an engine on Debian as root.", pytrace=False)


@pytest.fixture(scope="session")
def images(engine: None) -> dict[str, str]:
    """The project's images, built once per run by tools/ci/images.sh; `NAME=value` settings for compose."""
    values = build_images()
    # A database image chosen by the caller (TIMESCALEDB_IMAGE) wins over what the script built.
    if os.environ.get("TIMESCALEDB_IMAGE"):
        values["TIMESCALEDB_IMAGE"] = os.environ["TIMESCALEDB_IMAGE"]
    return values


@pytest.fixture(scope="module")
def stack(images: dict[str, str]) -> Iterator[ComposeStack]:
    """Both compose files up, the way an operator starts them, under a unique name; torn down with its volume."""
    instance = ComposeStack.create(images, **{key: f"must-not-leak-{key.lower()}" for key in GATEWAY_SECRETS})
    try:
        instance.up()
        instance.wait_healthy()
        yield instance
    finally:
        instance.destroy()


@pytest.fixture
def gateway_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ts-container-gw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "tradingsystem-ci/debian-base:bookworm"


@pytest.fixture(scope="session")
def docker_engine(engine: None) -> str:
    """The client for image builds: Debian's has the classic builder (the newer one on PATH lacks buildx)."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker") or "docker"


@pytest.fixture(scope="session")
def base_image(engine: None) -> str:
    """The local Debian base image (tools/ci/base-image.sh keeps one that exists) the systemd machine starts from."""
    result = subprocess.run([str(REPO / "tools/ci/base-image.sh"), BASE_IMAGE], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        pytest.fail(f"cannot build {BASE_IMAGE}: {result.stderr.strip() or result.stdout.strip()}")
    return BASE_IMAGE
