"""The compose dev profile: a source file edited on the host is what the containers serve moments later."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.compose import (
    DEV_SERVICES,
    ComposeStack,
    copy_project,
    docker,
    edit_and_time_reload,
    inspect,
    live_status,
    up_dev_profile,
)

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]


@pytest.fixture
def dev_stack(images: dict[str, str]) -> Iterator[ComposeStack]:
    # A copy of the project: the edit must never touch the checkout the other tests import.
    root = Path(tempfile.mkdtemp(prefix="ts-container-dev-"))
    copy_project(root)
    stack = ComposeStack.create(images, root=root)
    try:
        yield stack
    finally:
        stack.destroy()
        shutil.rmtree(root, ignore_errors=True)


def test_an_edited_source_file_is_served_after_the_reload(dev_stack: ComposeStack, capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    up_dev_profile(dev_stack)
    for service, name in DEV_SERVICES.items():
        mounts = {m["Destination"]: m for m in inspect(dev_stack.container(service))["Mounts"]}
        assert Path(mounts["/app/src"]["Source"]) == dev_stack.root / "src"
        assert mounts["/app/src"]["RW"] is False
        assert live_status(dev_stack, name) == "alive"
    first = edit_and_time_reload(dev_stack, "alive-edited")
    second = edit_and_time_reload(dev_stack, "alive-edited-again")
    # Measured, not asserted (bench/bench_containers.py records it): shown in the test report.
    with capsys.disabled():
        print(f"\ndev profile reload: first edit {first}, second edit {second} (seconds)")
    # The service restarted in place: the container is the same one, still running.
    for service in DEV_SERVICES:
        assert inspect(dev_stack.container(service))["RestartCount"] == 0
        assert docker("exec", dev_stack.container(service), "python", "-c",
                      "open('/app/src/probe', 'w')", check=False).returncode != 0
