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


@router.get("/header-required")
async def with_required_header(x_token: Annotated[str, Header()]) -> FastJSON:
    return FastJSON({"token": x_token})


@router.get("/header-int")
async def with_int_header(x_count: Annotated[int | None, Header()] = None) -> FastJSON:
    return FastJSON({"count": x_count})


@router.get("/header-constrained")
async def with_constrained_header(x_token: Annotated[str | None, Header(max_length=3)] = None) -> FastJSON:
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


def request_for(path: str, path_params: dict[str, str], headers: list[tuple[bytes, bytes]] | None = None
                ) -> Request:
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": headers or [], "path_params": path_params, "root_path": "", "scheme": "http",
             "server": ("127.0.0.1", 80)}
    return Request(scope)


def test_only_endpoints_with_nothing_to_resolve_are_called_directly() -> None:
    assert is_lean("/items/{item_id}/notes/{note}")
    assert is_lean("/no-request/{name}")
    assert is_lean("/header")
    for path in ("/query", "/header-required", "/header-int", "/header-constrained", "/typed/{n}", "/model",
                 "/depends"):
        assert not is_lean(path), path


def test_a_direct_call_gets_the_request_and_the_path_parameters() -> None:
    handler = route("/items/{item_id}/notes/{note}").get_route_handler()
    response = asyncio.run(handler(request_for("/items/a1/notes/n 2", {"item_id": "a1", "note": "n 2"})))
    assert response.body == b'{"item":"a1","note":"n 2","path":"/items/a1/notes/n 2"}'

    handler = route("/no-request/{name}").get_route_handler()
    assert asyncio.run(handler(request_for("/no-request/x", {"name": "x"}))).body == b"x"


def test_a_direct_call_gets_an_optional_header_by_its_hyphenated_name_or_none() -> None:
    handler = route("/header").get_route_handler()
    given = request_for("/header", {}, [(b"x-token", b"abc"), (b"x-token", b"second")])
    assert asyncio.run(handler(given)).body == b'{"token":"abc"}'  # the first of repeated headers, as FastAPI
    assert asyncio.run(handler(request_for("/header", {}, [(b"x_token", b"abc")]))).body == b'{"token":null}'
    assert asyncio.run(handler(request_for("/header", {}))).body == b'{"token":null}'
