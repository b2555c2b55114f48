"""`serve … --reload`: a change under the source tree restarts the service by itself."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

import tradingsystem
from tests.support.servers import ProcessServer, tradingsystem_argv, wait_until
from tradingsystem.core.embedded import free_port


def test_workspace_reloads_on_a_source_change(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"DATABASE_URL": database_url, "WORKSPACE_PORT": str(port)}
    proc = ProcessServer(tradingsystem_argv("serve", "workspace", "--reload"), env, port, tmp_path / "ws.log")
    probe = Path(tradingsystem.__file__).parent / f"_reload_probe_{uuid.uuid4().hex[:8]}.py"
    proc.start()
    try:
        proc.wait_healthy(60, path="/health")
        before = httpx.get(proc.url + "/health").json()["uptime"]
        probe.write_text('"""Reload probe."""\n')
        wait_until(lambda: "Reloading" in proc.output() or "changes detected" in proc.output(), 20,
                   message="the reloader to notice the change")

        def restarted() -> bool:
            try:
                response = httpx.get(proc.url + "/health", timeout=1)
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json()["uptime"] < before + 0.5

        wait_until(restarted, 30, message="the restarted service to answer")
    finally:
        probe.unlink(missing_ok=True)
        proc.stop()
