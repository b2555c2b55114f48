"""Workspace HTTP routes: parse and validate the request, call the service, shape the envelope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from tradingsystem.core.http import FastJSON, LeanRoute
from tradingsystem.core.openapi import json_body, read_json, responses
from tradingsystem.workspace.models import (
    CategoryAnswer,
    CategoryCreate,
    CategoryDeleteAnswer,
    CategoryList,
    CategoryUpdate,
    ItemCreate,
    ItemPage,
    ItemStatsAnswer,
    ItemUpdate,
    OneItem,
    Priority,
    Status,
)
from tradingsystem.workspace.repository import ItemFilter
from tradingsystem.workspace.service import WorkspaceService

router = APIRouter(route_class=LeanRoute)


def _svc(request: Request) -> WorkspaceService:
    service: WorkspaceService = request.app.state.workspace
    return service


def ok(data: Any, status: int = 200, **extra: Any) -> FastJSON:
    return FastJSON({"success": True, "data": data, **extra}, status_code=status)


@router.get("/items", tags=["items"], summary="List items, newest first", response_model=None,
            responses=responses(ItemPage, 200, 503))
async def list_items(
    request: Request,
    category: Annotated[str | None, Query(max_length=50)] = None,
    status: Status | None = None,
    priority: Priority | None = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    f = ItemFilter(category=category, status=status, priority=priority, tag=tag, search=search)
    items, total = await _svc(request).list_items_json(f, limit, offset)
    # The items arrive as JSON text already; only the envelope is added here.
    body = b'{"success":true,"data":' + items.encode() + b',"count":' + str(total).encode() + b"}"
    return Response(body, media_type="application/json")


@router.get("/items/stats", tags=["items"], summary="Counts by category, status and priority", response_model=None,
            responses=responses(ItemStatsAnswer, 200, 503))
async def item_stats(request: Request) -> FastJSON:
    return ok(await _svc(request).stats())


@router.get("/items/{item_id}", tags=["items"], summary="One item", response_model=None,
            responses=responses(OneItem, 200, 404, 503))
async def get_item(request: Request, item_id: str) -> FastJSON:
    return ok(await _svc(request).get_item(item_id))


# Write routes read their bodies themselves: the service validates them, the category against the
# database among the rest, and answers every problem at once.
@router.post("/items", tags=["items"], status_code=201, summary="Create an item", response_model=None,
             openapi_extra=json_body(ItemCreate), responses=responses(OneItem, 201, 409, 503, description="Created"))
async def create_item(request: Request) -> FastJSON:
    return ok(await _svc(request).create_item(await read_json(request)), status=201)


_UPDATE_ITEM = {"tags": ["items"], "summary": "Update an item (partial)", "response_model": None,
                "openapi_extra": json_body(ItemUpdate), "responses": responses(OneItem, 200, 404, 503)}


@router.put("/items/{item_id}", **_UPDATE_ITEM)  # type: ignore[arg-type]
@router.patch("/items/{item_id}", **_UPDATE_ITEM)  # type: ignore[arg-type]
async def update_item(request: Request, item_id: str) -> FastJSON:
    return ok(await _svc(request).update_item(item_id, await read_json(request)))


@router.delete("/items/{item_id}", tags=["items"], status_code=204, summary="Delete an item", response_model=None,
               responses=responses(None, 204, 404, 503, description="Deleted"))
async def delete_item(request: Request, item_id: str) -> Response:
    await _svc(request).delete_item(item_id)
    return Response(status_code=204)


@router.get("/categories", tags=["categories"], summary="Active categories by display order", response_model=None,
            responses=responses(CategoryList, 200, 503))
async def list_categories(request: Request, include_inactive: bool = False) -> FastJSON:
    data = await _svc(request).list_categories(include_inactive)
    return ok(data, count=len(data))


@router.get("/categories/{name}", tags=["categories"], summary="One category", response_model=None,
            responses=responses(CategoryAnswer, 200, 404, 503))
async def get_category(request: Request, name: str) -> FastJSON:
    return ok(await _svc(request).get_category(name))


@router.post("/categories", tags=["categories"], status_code=201, summary="Create a category", response_model=None,
             openapi_extra=json_body(CategoryCreate),
             responses=responses(CategoryAnswer, 201, 409, 503, description="Created"))
async def create_category(request: Request) -> FastJSON:
    return ok(await _svc(request).create_category(await read_json(request)), status=201)


@router.put("/categories/{name}", tags=["categories"], summary="Update a category (partial)", response_model=None,
            openapi_extra=json_body(CategoryUpdate), responses=responses(CategoryAnswer, 200, 404, 503))
async def update_category(request: Request, name: str) -> FastJSON:
    return ok(await _svc(request).update_category(name, await read_json(request)))


@router.patch("/categories/{name}/toggle", tags=["categories"], summary="Activate or deactivate a category",
              response_model=None, responses=responses(CategoryAnswer, 200, 404, 503))
async def toggle_category(request: Request, name: str) -> FastJSON:
    return ok(await _svc(request).toggle_category(name))


@router.delete("/categories/{name}", tags=["categories"], summary="Delete an unused category",
               response_model=None, responses=responses(CategoryDeleteAnswer, 200, 404, 409, 503,
                                                        description="Deleted"))
async def delete_category(request: Request, name: str) -> FastJSON:
    await _svc(request).delete_category(name)
    return FastJSON({"success": True, "message": f"Category {name} deleted", "data": {"id": name, "name": name}})
