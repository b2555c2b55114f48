"""Both APIs' OpenAPI documents: valid, self-contained, every route in them, every answer with its real body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from openapi_spec_validator import validate

METHODS = ("get", "put", "post", "delete", "patch")
# The old API's paths keep the old API's error shapes (see docs/api.md).
COMPAT_PREFIXES = ("/sync-messages", "/telegram/", "/reload-channels", "/config/")
DSN = "postgresql://nobody@127.0.0.1:9/none"  # never connected to: the document needs no database


def tp_capital() -> FastAPI:
    from tradingsystem.tpcapital.app import build_app

    return build_app(DSN)


def workspace() -> FastAPI:
    from tradingsystem.workspace.app import build_app

    return build_app(DSN)


@pytest.fixture(params=[tp_capital, workspace], ids=["tp-capital", "workspace"])
def app(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", "document-test-token")
    built: FastAPI = request.param()
    return built


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def resolve(document: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), f"{pointer} points outside the document"
    node: Any = document
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"dangling $ref {pointer}"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def body_schema(document: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    schema = answer["content"]["application/json"]["schema"]
    resolved: dict[str, Any] = resolve(document, schema["$ref"]) if "$ref" in schema else schema
    return resolved


def test_the_document_is_valid_openapi_and_every_ref_resolves(app: FastAPI) -> None:
    document = app.openapi()
    validate(document)  # raises on an invalid document
    found = list(refs(document))
    assert found
    for pointer in found:
        resolve(document, pointer)
    assert "HTTPValidationError" not in document["components"]["schemas"]


# Served but rightly undocumented: probes, metrics, the documents themselves.
UNDOCUMENTED = {"/health", "/health/live", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def test_every_route_the_app_serves_is_in_the_document(app: FastAPI) -> None:
    document = app.openapi()
    served = set()
    for route in iter_route_contexts(app.routes):
        if route.path in UNDOCUMENTED or not route.methods:
            continue
        path = route.path
        if app.title == "Workspace API" and not path.startswith("/api/"):
            path = "/api" + path  # the same routes without the prefix, for proxies that strip it
        served |= {(method.lower(), path) for method in route.methods if method != "HEAD"}
    documented = {(method, path) for method, path, _ in operations(document)}
    assert served == documented
    assert len(documented) >= 13


def test_every_success_is_described_by_its_real_body(app: FastAPI) -> None:
    document = app.openapi()
    for method, path, operation in operations(document):
        answers = operation["responses"]
        successes = [code for code in answers if code.startswith("2")]
        if not successes:
            # An operation kept only to refuse (the old API's bot writes): its refusal is its answer.
            assert path.startswith(COMPAT_PREFIXES) and "409" in answers, f"{method} {path} declares no success"
        for code in successes:
            if code == "204":
                assert "content" not in answers[code]
                continue
            schema = body_schema(document, answers[code])
            assert schema.get("type") == "object" and schema.get("properties"), \
                f"{method} {path} {code}: {answers[code]['content']}"
            assert schema.get("required"), f"{method} {path} {code} requires nothing"


def test_every_error_an_operation_can_meet_is_declared_with_its_body(app: FastAPI) -> None:
    document = app.openapi()
    envelope = app.title == "Workspace API"
    for method, path, operation in operations(document):
        answers = operation["responses"]
        assert "422" not in answers
        for code in ("413", "429", "500"):  # the edge: body limit, rate limit, last resort
            assert code in answers, f"{method} {path} lacks {code}"
        if operation.get("parameters") or operation.get("requestBody"):
            assert "400" in answers, f"{method} {path} lacks 400"
        for code, answer in answers.items():
            if int(code) < 400:
                continue
            schema = body_schema(document, answer)
            assert schema.get("type") == "object" and schema.get("properties"), f"{method} {path} {code}"
            if code in ("400", "413", "429", "500") or not path.startswith(COMPAT_PREFIXES):
                assert "error" in schema["required"], f"{method} {path} {code}"
            if envelope:
                assert "success" in schema["required"], f"{method} {path} {code}"
        if "400" in answers:
            assert "details" in body_schema(document, answers["400"])["required"]
        assert "Retry-After" in answers["429"]["headers"]


@pytest.mark.parametrize(("method", "path", "codes"), [
    ("post", "/ingest", {"200", "400", "401", "503"}),
    ("post", "/ingest/batch", {"200", "400", "401", "503"}),
    ("get", "/signals/{signal_id}", {"200", "404", "503"}),
    ("delete", "/signals/{signal_id}", {"204", "401", "403", "404"}),
    ("post", "/telegram-channels", {"201", "401", "403", "409"}),
])
def test_tp_capital_declares_the_contract_answers(method: str, path: str, codes: set[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", "document-test-token")
    answers = tp_capital().openapi()["paths"][path][method]["responses"]
    assert codes <= set(answers)


def test_the_ingest_bodies_are_self_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", "document-test-token")
    document = tp_capital().openapi()
    schemas = document["components"]["schemas"]
    assert {"IngestPayload", "ForwardedFrom", "IngestBatch"} <= set(schemas)
    batch = document["paths"]["/ingest/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert resolve(document, batch["$ref"])["properties"]["messages"]["items"] == {
        "$ref": "#/components/schemas/IngestPayload"}


@pytest.mark.parametrize(("method", "path", "codes"), [
    ("post", "/api/items", {"201", "400", "409", "503"}),
    ("put", "/api/items/{item_id}", {"200", "400", "404"}),
    ("patch", "/api/items/{item_id}", {"200", "400", "404"}),
    ("delete", "/api/items/{item_id}", {"204", "404"}),
    ("delete", "/api/categories/{name}", {"200", "404", "409"}),
])
def test_workspace_declares_the_contract_answers(method: str, path: str, codes: set[str]) -> None:
    answers = workspace().openapi()["paths"][path][method]["responses"]
    assert codes <= set(answers)


def test_workspace_bodies_refuse_unknown_fields_and_take_booleans_strictly() -> None:
    schemas = workspace().openapi()["components"]["schemas"]
    for name in ("ItemCreate", "ItemUpdate", "CategoryCreate", "CategoryUpdate"):
        assert schemas[name]["additionalProperties"] is False, name
    assert schemas["CategoryCreate"]["properties"]["is_active"]["type"] == "boolean"
