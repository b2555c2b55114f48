"""The Workspace API against a real PostgreSQL: the contract's items, categories, errors and edges."""

from __future__ import annotations

import httpx
import pytest

ITEM = {"title": "Coletar cotações da B3", "category": "coleta-dados", "priority": "high"}


def create(client: httpx.Client, **fields: object) -> dict[str, object]:
    response = client.post("/api/items", json={**ITEM, **fields})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def test_create_get_update_delete_item(workspace: httpx.Client) -> None:
    item = create(workspace, tags=["b3", "dados"], metadata={"origem": "planilha"}, description="Diário")
    assert item["status"] == "new"
    assert item["tags"] == ["b3", "dados"]
    assert item["metadata"] == {"origem": "planilha"}
    assert item["createdAt"] == item["created_at"] and item["createdAt"].endswith("Z")

    got = workspace.get(f"/api/items/{item['id']}").json()
    assert got == {"success": True, "data": item}

    updated = workspace.put(f"/api/items/{item['id']}", json={"status": "in-progress"}).json()["data"]
    assert updated["status"] == "in-progress" and updated["title"] == ITEM["title"]
    assert updated["updatedAt"] >= item["updatedAt"]
    patched = workspace.patch(f"/api/items/{item['id']}", json={"priority": "critical"}).json()["data"]
    assert patched["priority"] == "critical" and patched["status"] == "in-progress"

    assert workspace.delete(f"/api/items/{item['id']}").status_code == 204
    missing = workspace.get(f"/api/items/{item['id']}")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "error": f"Item {item['id']} not found"}
    assert workspace.delete(f"/api/items/{item['id']}").status_code == 404


def test_bare_routes_alias_the_api_prefix(workspace: httpx.Client) -> None:
    item = create(workspace)
    assert workspace.get(f"/items/{item['id']}").json()["data"]["id"] == item["id"]
    assert workspace.get("/categories").json()["data"][0]["name"] == "feature"


def test_client_id_kept_and_duplicate_is_409(workspace: httpx.Client) -> None:
    item = create(workspace, id="legacy-42")
    assert item["id"] == "legacy-42"
    again = workspace.post("/api/items", json={**ITEM, "id": "legacy-42"})
    assert again.status_code == 409
    assert again.json() == {"success": False, "error": "Item with this ID already exists"}


def test_list_filters_search_tag_and_paging_count_total(workspace: httpx.Client) -> None:
    for i in range(7):
        create(workspace, title=f"Bug {i}", category="bug", priority="low", tags=["api"] if i % 2 else ["ui"])
    create(workspace, title="Painel de risco", category="dashboard", priority="medium", status="review",
           description="Gráfico de exposição")

    page = workspace.get("/api/items", params={"category": "bug", "limit": 3, "offset": 0}).json()
    assert page["count"] == 7 and len(page["data"]) == 3
    titles = [i["title"] for i in page["data"]]
    assert titles == ["Bug 6", "Bug 5", "Bug 4"]  # newest first
    last = workspace.get("/api/items", params={"category": "bug", "limit": 3, "offset": 6}).json()
    assert last["count"] == 7 and [i["title"] for i in last["data"]] == ["Bug 0"]
    beyond = workspace.get("/api/items", params={"category": "bug", "limit": 3, "offset": 50}).json()
    assert beyond["count"] == 7 and beyond["data"] == []

    assert workspace.get("/api/items", params={"tag": "api"}).json()["count"] == 3
    assert workspace.get("/api/items", params={"status": "review"}).json()["count"] == 1
    assert workspace.get("/api/items", params={"priority": "low", "tag": "ui"}).json()["count"] == 4
    found = workspace.get("/api/items", params={"search": "EXPOSIÇÃO"}).json()
    assert [i["title"] for i in found["data"]] == ["Painel de risco"]
    assert workspace.get("/api/items", params={"search": "%"}).json()["count"] == 0


def test_stats(workspace: httpx.Client) -> None:
    create(workspace)
    create(workspace, category="bug", priority="low", status="completed")
    stats = workspace.get("/api/items/stats").json()["data"]
    assert stats == {
        "total": 2,
        "byCategory": {"coleta-dados": 1, "bug": 1},
        "byStatus": {"new": 1, "completed": 1},
        "byPriority": {"high": 1, "low": 1},
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"category": "bug", "priority": "low"}, "title is required"),
        ({**ITEM, "title": ""}, "title is required"),
        ({**ITEM, "title": "   "}, "title is required"),
        ({**ITEM, "title": "x" * 201}, "title must be at most 200 characters"),
        ({**ITEM, "priority": "urgent"}, "priority must be one of: low, medium, high, critical"),
        ({**ITEM, "status": "done"}, "status must be one of: new, review, in-progress, completed, rejected"),
        ({**ITEM, "description": "d" * 2001}, "description must be at most 2000 characters"),
        ({**ITEM, "tags": ["ok", ""]}, "tags.1 is required"),
        ({**ITEM, "tags": [f"t{i}" for i in range(21)]}, "tags must have at most 20 items"),
        ({**ITEM, "metadata": [1, 2]}, "metadata must be an object"),
        ({**ITEM, "tags": "b3"}, "tags must be a list"),
        ({**ITEM, "title": 42}, "title must be a string"),
        ({"title": "t"}, "category is required"),
    ],
)
def test_create_validation_messages(workspace: httpx.Client, body: dict[str, object], expected: str) -> None:
    response = workspace.post("/api/items", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["success"] is False and payload["error"] == "Validation failed"
    assert expected in payload["details"]


def test_unknown_category_is_rejected_with_the_active_list(workspace: httpx.Client) -> None:
    response = workspace.post("/api/items", json={**ITEM, "category": "nope"})
    assert response.status_code == 400
    assert response.json()["details"][0].startswith("category must be one of: feature, bug, task")


def test_an_inactive_category_is_refused_and_nothing_is_stored(workspace: httpx.Client) -> None:
    assert workspace.patch(f"/api/categories/{ITEM['category']}/toggle").json()["data"]["is_active"] is False
    response = workspace.post("/api/items", json={**ITEM, "id": "in-inactive-category"})
    assert response.status_code == 400
    [detail] = response.json()["details"]
    assert detail.startswith("category must be one of: ") and ITEM["category"] not in detail.split(": ", 1)[1]
    assert workspace.get("/api/items/in-inactive-category").status_code == 404
    assert workspace.patch(f"/api/categories/{ITEM['category']}/toggle").json()["data"]["is_active"] is True
    create(workspace, id="in-inactive-category")


def test_update_rejects_unknown_fields_and_bad_values(workspace: httpx.Client) -> None:
    item = create(workspace)
    response = workspace.put(f"/api/items/{item['id']}", json={"titel": "typo"})
    assert response.status_code == 400
    assert response.json()["details"] == ["titel is not an allowed field"]
    assert workspace.put(f"/api/items/{item['id']}", json={"status": "done"}).status_code == 400
    assert workspace.put(f"/api/items/{item['id']}", json={"title": None}).status_code == 400
    assert workspace.put(f"/api/items/{item['id']}", json={}).status_code == 400
    assert workspace.put("/api/items/does-not-exist", json={"title": "x"}).status_code == 404


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_unknown_fields_are_refused_alike_on_create_and_update(workspace: httpx.Client, method: str) -> None:
    item = create(workspace)
    url = "/api/items" if method == "post" else f"/api/items/{item['id']}"
    body = {**ITEM, "titel": "typo", "colour": "red"} if method == "post" else {"titel": "typo", "colour": "red"}
    response = getattr(workspace, method)(url, json=body)
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "Validation failed",
                               "details": ["titel is not an allowed field", "colour is not an allowed field"]}
    assert workspace.get("/api/items").json()["count"] == 1  # nothing was created


@pytest.mark.parametrize("method", ["post", "put"])
def test_every_problem_is_listed_in_one_answer(workspace: httpx.Client, method: str) -> None:
    item = create(workspace)
    url = "/api/items" if method == "post" else f"/api/items/{item['id']}"
    bad = {"category": "nope", "priority": "urgent", "title": ""}
    body = {**ITEM, **bad} if method == "post" else bad
    response = getattr(workspace, method)(url, json=body)
    assert response.status_code == 400
    details = response.json()["details"]
    assert "title is required" in details
    assert "priority must be one of: low, medium, high, critical" in details
    assert any(d.startswith("category must be one of: feature, bug") for d in details)
    assert len(details) == 3


def test_category_bodies_are_strict_and_refuse_unknown_fields(workspace: httpx.Client) -> None:
    base = {"name": "infra", "display_name": "Infra"}
    for body, expected in (
        ({**base, "is_active": 0}, ["is_active must be true or false"]),
        ({**base, "is_active": "true"}, ["is_active must be true or false"]),
        ({**base, "display_order": "1"}, ["display_order must be an integer"]),
        ({**base, "colour": "#112233", "is_active": 1}, ["is_active must be true or false",
                                                        "colour is not an allowed field"]),
    ):
        response = workspace.post("/api/categories", json=body)
        assert response.status_code == 400, body
        assert response.json()["details"] == expected
        update = workspace.put("/api/categories/bug", json={k: v for k, v in body.items() if k not in base})
        assert update.status_code == 400, body
        assert update.json()["details"] == expected
    assert workspace.get("/api/categories/infra").status_code == 404
    assert workspace.get("/api/categories/bug").json()["data"]["is_active"] is True


def test_non_json_and_oversized_bodies(workspace: httpx.Client) -> None:
    bad = workspace.post("/api/items", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400
    assert bad.json()["details"] == ["body must be valid JSON"]
    big = workspace.post("/api/items", json={**ITEM, "description": "x" * (2 * 1024 * 1024)})
    assert big.status_code == 413
    assert big.json()["success"] is False


def test_sql_metacharacters_are_stored_literally(workspace: httpx.Client) -> None:
    nasty = "Robert'); DROP TABLE workspace.items;-- %_\\"
    item = create(workspace, title=nasty, tags=["' OR 1=1 --"])
    assert workspace.get(f"/api/items/{item['id']}").json()["data"]["title"] == nasty
    assert workspace.get("/api/items", params={"search": "1=1"}).json()["count"] == 1
    assert workspace.get("/api/items", params={"search": "DROP TABLE"}).json()["count"] == 1


def test_seeded_categories_and_category_crud(workspace: httpx.Client) -> None:
    names = [c["name"] for c in workspace.get("/api/categories").json()["data"]]
    assert names == ["feature", "bug", "task", "idea", "documentacao", "coleta-dados", "banco-dados",
                     "analise-dados", "gestao-riscos", "dashboard"]
    created = workspace.post("/api/categories", json={"name": "infra", "display_name": "Infra",
                                                      "display_order": 11})
    assert created.status_code == 201 and created.json()["data"]["is_active"] is True
    assert workspace.post("/api/categories", json={"name": "infra", "display_name": "X"}).status_code == 409
    assert workspace.post("/api/categories", json={"name": "Bad Name", "display_name": "X"}).status_code == 400
    changed = workspace.put("/api/categories/infra", json={"color": "#112233"}).json()["data"]
    assert changed["color"] == "#112233"
    toggled = workspace.patch("/api/categories/infra/toggle").json()["data"]
    assert toggled["is_active"] is False
    assert "infra" not in [c["name"] for c in workspace.get("/api/categories").json()["data"]]
    assert workspace.post("/api/items", json={**ITEM, "category": "infra"}).status_code == 400
    assert workspace.get("/api/categories/infra").json()["data"]["is_active"] is False
    assert workspace.delete("/api/categories/infra").json()["success"] is True
    assert workspace.get("/api/categories/infra").status_code == 404
    assert workspace.delete("/api/categories/infra").status_code == 404


def test_deleting_a_category_in_use_is_409(workspace: httpx.Client) -> None:
    create(workspace, category="idea")
    response = workspace.delete("/api/categories/idea")
    assert response.status_code == 409
    assert response.json()["success"] is False


def test_edge_conventions(workspace: httpx.Client) -> None:
    response = workspace.get("/api/nothing-here", headers={"X-Correlation-Id": "abc-123"})
    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Not Found"}
    assert response.headers["x-correlation-id"] == "abc-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    generated = workspace.get("/health").headers["x-correlation-id"]
    assert len(generated) >= 16
    docs = workspace.get("/docs")
    assert "default-src 'none'" in docs.headers["content-security-policy"]
    cors = workspace.options("/api/items", headers={"Origin": "http://localhost:3103",
                                                    "Access-Control-Request-Method": "POST"})
    assert cors.headers["access-control-allow-origin"] == "http://localhost:3103"
    other = workspace.options("/api/items", headers={"Origin": "http://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers


def test_health_and_metrics(workspace: httpx.Client) -> None:
    health = workspace.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy" and body["database"] == "connected"
    assert isinstance(body["uptime"], float | int) and body["timestamp"].endswith("Z")
    assert workspace.get("/health/live").status_code == 200
    create(workspace)
    metrics = workspace.get("/metrics").text
    for name in ("workspace_items_created_total 1.0", "workspace_items_updated_total 0.0",
                 "workspace_items_deleted_total 0.0", "workspace_items_total 1.0",
                 "workspace_database_connection_status 1.0",
                 'workspace_query_duration_seconds_count{operation="create_item"} 1.0'):
        assert name in metrics


def test_a_deleted_seed_category_is_not_seeded_again(database_url: str) -> None:
    from tests.support.servers import ThreadServer
    from tradingsystem.workspace.app import build_app

    for restart in range(2):
        server = ThreadServer(build_app(database_url)).start()
        try:
            with httpx.Client(base_url=server.url) as client:
                names = [c["name"] for c in client.get("/api/categories").json()["data"]]
                if restart == 0:
                    assert "dashboard" in names
                    assert client.delete("/api/categories/dashboard").status_code == 200
                else:
                    assert "dashboard" not in names and len(names) == 9
        finally:
            server.stop()


def test_listed_items_are_exactly_the_items(workspace: httpx.Client) -> None:
    create(workspace, tags=["b3", "ação"], metadata={"nested": {"x": [1, 2.5, None]}}, description="Ünïcode ✅")
    create(workspace, title='Aspas "duplas" e \\ barra')
    listed = workspace.get("/api/items").json()
    assert listed["success"] is True and listed["count"] == 2
    for item in listed["data"]:
        assert item == workspace.get(f"/api/items/{item['id']}").json()["data"]
    assert workspace.get("/api/items", params={"category": "idea"}).json() == {"success": True, "data": [],
                                                                                 "count": 0}
