"""OpenAPI documents that say what a service really answers: real bodies, every error, every `$ref` resolvable."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from tradingsystem.core.errors import ValidationFailed

REF = "#/components/schemas/{model}"
# Where `json_body` parks a request body's schemas until `finish_document` moves them to the components.
_SCHEMAS_KEY = "x-tradingsystem-schemas"
ERROR_DESCRIPTIONS = {
    400: "Validation failed: `details` lists every problem",
    401: "Missing or wrong credentials",
    403: "Not allowed from this client",
    404: "Not found",
    409: "Conflict with the stored state",
    413: "Body larger than the limit",
    429: "Rate limit exceeded; retry after `retryAfter` seconds",
    500: "Unexpected error (never a stack trace)",
    503: "Database unavailable",
}
# Every operation can meet these at the edge (EdgeMiddleware), before a route runs.
EDGE_ERRORS = (413, 429, 500)
_ERROR_SCHEMA = {400: "ValidationFailed", 413: "PayloadTooLarge", 429: "TooManyRequests", 500: "InternalError"}
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads and validates its JSON body itself: the model documents it."""
    schema = model.model_json_schema(ref_template=REF)
    schemas = {**schema.pop("$defs", {}), model.__name__: schema}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(model.__name__)}}},
        _SCHEMAS_KEY: schemas,
    }


def responses(ok: type[BaseModel] | None = None, status: int = 200, *errors: int,
              description: str = "Success") -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its success body (None for 204) and the errors its rules can answer."""
    documented: dict[int | str, dict[str, Any]] = {}
    documented[status] = {"description": description} if ok is None else {"model": ok, "description": description}
    for code in errors:
        documented[code] = {"description": ERROR_DESCRIPTIONS[code]}
    return documented


async def read_json(request: Request) -> Any:
    """The request's JSON body; 400 with the contract's message when it is not JSON."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(["body must be valid JSON"]) from exc


def error_schemas(envelope: bool) -> dict[str, dict[str, Any]]:
    """The error bodies as `core.http.ErrorShape` writes them (the Workspace adds `"success": false`)."""

    def shape(extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
        properties: dict[str, Any] = {"success": {"const": False, "type": "boolean"}} if envelope else {}
        properties["error"] = {"type": "string"}
        properties.update(extra)
        return {"type": "object", "properties": properties,
                "required": (["success"] if envelope else []) + ["error", *required]}

    details = {"details": {"type": "array", "items": {"type": "string"}}}
    return {
        "Error": shape(details, []),
        "ValidationFailed": shape(details, ["details"]),
        "PayloadTooLarge": shape({"limit": {"type": "integer"}}, ["limit"]),
        "TooManyRequests": shape({"retryAfter": {"type": "integer", "minimum": 1}}, ["retryAfter"]),
        "InternalError": shape({"correlationId": {"type": "string"}}, ["correlationId"]),
    }


def _operations(document: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "options", "head", "trace"):
                yield operation


def finish_document(document: dict[str, Any], envelope: bool) -> dict[str, Any]:
    """Make FastAPI's document exact: body schemas into the components, FastAPI's unused 422 out (this
    project answers 400), and every error an operation can meet declared with its body."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for operation in _operations(document):
        schemas.update(operation.pop(_SCHEMAS_KEY, {}))
        answers: dict[str, Any] = operation.setdefault("responses", {})
        answers.pop("422", None)
        if operation.get("parameters") or operation.get("requestBody"):
            answers.setdefault("400", {"description": ERROR_DESCRIPTIONS[400]})
        for edge in EDGE_ERRORS:
            answers.setdefault(str(edge), {"description": ERROR_DESCRIPTIONS[edge]})
        for code, answer in answers.items():
            if not code.isdigit() or int(code) < 400 or "content" in answer:
                continue
            name = _ERROR_SCHEMA.get(int(code), "Error")
            answer["content"] = {"application/json": {"schema": ref(name)}}
            if code == "429":
                answer["headers"] = {"Retry-After": {"description": "seconds until the window resets",
                                                     "schema": {"type": "integer"}}}
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    schemas.update(error_schemas(envelope))
    return document


def install(app: FastAPI, envelope: bool) -> None:
    """Serve the finished document at `/openapi.json` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                                   description=app.description, routes=app.routes)
            app.openapi_schema = finish_document(document, envelope)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
