"""LeanRoute: which endpoints it calls directly, and that such a call gets what FastAPI would have passed."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from tradingsystem.core.http import FastJSON, LeanRoute

router = APIRouter(route_class=LeanRoute)


@router.get("/items/{item_id}/notes/{note}")
async def plain(request: Request, item_id: str, note: str) -> FastJSON:
    return FastJSON({"item": item_id, "note": note, "path": request.url.path})


@router.get("/no-request/{name}")
async def without_request(name: str) -> Response:
    return Response(name)


@router.get("/query")
async def with_query(limit: Annotated[int, Query()] = 1) -> FastJSON:
    return FastJSON({"limit": limit})


@router.get("/header")
async def with_header(x_token: Annotated[str | None, Header()] = None) -> FastJSON:
    return FastJSON({"token": x_token})


@router.get("/typed/{n}")
async def typed_path(n: int) -> FastJSON:
    return FastJSON({"n": n})


@router.get("/model")
async def returns_a_dict(request: Request) -> dict[str, Any]:
    return {"ok": True}


def _dependency() -> int:
    return 1


@router.get("/depends")
async def with_dependency(value: Annotated[int, Depends(_dependency)]) -> FastJSON:
    return FastJSON({"value": value})


def route(path: str) -> APIRoute:
    found = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == path)
    return found


def is_lean(path: str) -> bool:
    return route(path).get_route_handler().__qualname__.startswith("LeanRoute.")


def request_for(path: str, path_params: dict[str, str]) -> Request:
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [], "path_params": path_params, "root_path": "", "scheme": "http",
             "server": ("127.0.0.1", 80)}
    return Request(scope)


def test_only_endpoints_with_nothing_to_resolve_are_called_directly() -> None:
    assert is_lean("/items/{item_id}/notes/{note}")
    assert is_lean("/no-request/{name}")
    for path in ("/query", "/header", "/typed/{n}", "/model", "/depends"):
        assert not is_lean(path), path


def test_a_direct_call_gets_the_request_and_the_path_parameters() -> None:
    handler = route("/items/{item_id}/notes/{note}").get_route_handler()
    response = asyncio.run(handler(request_for("/items/a1/notes/n 2", {"item_id": "a1", "note": "n 2"})))
    assert response.body == b'{"item":"a1","note":"n 2","path":"/items/a1/notes/n 2"}'

    handler = route("/no-request/{name}").get_route_handler()
    assert asyncio.run(handler(request_for("/no-request/x", {"name": "x"}))).body == b"x"
