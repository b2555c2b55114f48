"""LowDB → PostgreSQL migration through the real command: mapping, nothing dropped, verification, rollback."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from tests.support.servers import tradingsystem_argv

LIBRARY = {
    "items": [
        {"id": "1", "title": "Integrar B3", "description": "Cotações", "category": "coleta-dados",
         "priority": "high", "status": "pending", "tags": ["b3", "api"], "createdAt": "2024-03-01T10:00:00.000Z",
         "updatedAt": "2024-03-02T10:00:00.000Z", "metadata": {"sprint": 4}},
        {"id": 2, "title": "Backtest de stops", "category": "Estratégias Quant", "priority": "urgent",
         "status": "in_progress", "tags": [], "created_at": "2024-04-01T10:00:00Z", "owner": "ana"},
        {"id": "3", "title": "Relatório antigo", "category": "idea", "priority": "low", "status": "cancelled",
         "tags": ["legado"]},
    ],
    "categories": [{"name": "arquivo-morto", "display_name": "Arquivo"}],
}


def run(path: Path, database_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(tradingsystem_argv("workspace", "migrate-lowdb", str(path), *argv), env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def test_no_file_is_skipped(tmp_path: Path, database_url: str) -> None:
    result = run(tmp_path / "library.json", database_url)
    assert result.returncode == 0
    assert "No LowDB file found, skipping migration" in result.stdout


@pytest.mark.asyncio
async def test_migrates_maps_keeps_and_renames(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "library.json"
    path.write_text(json.dumps(LIBRARY), encoding="utf-8")
    result = run(path, database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Migration completed: 3 items" in result.stdout
    assert "status pending -> new" in result.stdout and "priority urgent -> critical" in result.stdout
    assert not path.exists()
    assert (tmp_path / f"library.json.migrated-{datetime.now(UTC):%Y%m%d}").exists()

    rows = {r["id"]: r for r in await fetch(database_url, "SELECT * FROM workspace.items")}
    assert set(rows) == {"1", "2", "3"}
    assert rows["1"]["status"] == "new" and list(rows["1"]["tags"]) == ["b3", "api"]
    assert json.loads(rows["1"]["metadata"]) == {"sprint": 4, "legacy_status": "pending"}
    assert rows["1"]["created_at"] == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert rows["2"]["status"] == "in-progress" and rows["2"]["priority"] == "critical"
    assert rows["2"]["category"] == "estrategias-quant"
    assert json.loads(rows["2"]["metadata"])["legacy_fields"] == {"owner": "ana"}
    assert rows["3"]["status"] == "rejected"
    cats = {r["name"] for r in await fetch(database_url, "SELECT name FROM workspace.categories")}
    assert {"estrategias-quant", "arquivo-morto", "idea", "feature"} <= cats

    # A re-run over the same content is harmless: nothing duplicated, nothing changed.
    path.write_text(json.dumps(LIBRARY), encoding="utf-8")
    again = run(path, database_url)
    assert again.returncode == 0 and "Migration completed: 3 items" in again.stdout
    assert len(await fetch(database_url, "SELECT id FROM workspace.items")) == 3


@pytest.mark.asyncio
async def test_any_error_rolls_back_and_leaves_the_file(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "library.json"
    broken = {"items": [*LIBRARY["items"], {"id": "4", "title": "nul \u0000 byte", "category": "novidade",
                                            "priority": "low", "status": "new"}]}
    path.write_text(json.dumps(broken), encoding="utf-8")
    before = path.read_bytes()
    result = run(path, database_url)
    assert result.returncode == 1
    assert "Migration failed, nothing changed" in result.stdout
    assert path.read_bytes() == before
    assert await fetch(database_url, "SELECT id FROM workspace.items") == []
    cats = {r["name"] for r in await fetch(database_url, "SELECT name FROM workspace.categories")}
    assert "novidade" not in cats and "estrategias-quant" not in cats


def test_invalid_json_and_wrong_shape_exit_1(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "library.json"
    path.write_text("{not json", encoding="utf-8")
    assert run(path, database_url).returncode == 1
    assert path.exists()
    path.write_text(json.dumps({"posts": []}), encoding="utf-8")
    assert run(path, database_url).returncode == 1


def test_old_script_path_still_works(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "library.json"
    path.write_text(json.dumps({"items": [LIBRARY["items"][0]]}), encoding="utf-8")
    import os
    import sys

    env = {**os.environ, "DATABASE_URL": database_url, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    result = subprocess.run(["scripts/database/migrate-lowdb-to-timescale.sh", str(path)], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Migration completed: 1 items" in result.stdout
