"""The Workspace API's bodies: what a valid item or category looks like at the edge, and what is answered."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Priority = Literal["low", "medium", "high", "critical"]
Status = Literal["new", "review", "in-progress", "completed", "rejected"]
PRIORITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
STATUSES: tuple[str, ...] = ("new", "review", "in-progress", "completed", "rejected")

Tag = Annotated[str, Field(min_length=1, max_length=50)]
Slug = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[a-z0-9-]+$")]
ItemId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


# Strict: JSON types are taken as they are (`0` is not a boolean, `"1"` not an integer), and unknown fields
# are refused on create as on update, so that a typo never silently does nothing.
REQUEST = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class ItemCreate(BaseModel):
    """A new backlog item; an optional client-chosen `id` is kept."""

    model_config = REQUEST

    id: ItemId | None = None
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    category: str = Field(min_length=1, max_length=50)
    priority: Priority
    status: Status = "new"
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ItemUpdate(BaseModel):
    """A partial update of the fields of `ItemCreate` (but the id)."""

    model_config = REQUEST

    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    category: str | None = Field(None, min_length=1, max_length=50)
    priority: Priority | None = None
    status: Status | None = None
    tags: list[Tag] | None = Field(None, max_length=20)
    metadata: dict[str, Any] | None = None


class CategoryCreate(BaseModel):
    model_config = REQUEST

    name: Slug
    display_name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=500)
    color: str = Field("#6B7280", pattern=r"^#[0-9A-Fa-f]{6}$")
    display_order: int = Field(0, ge=0, le=100000)
    is_active: bool = True


class CategoryUpdate(BaseModel):
    model_config = REQUEST

    display_name: str | None = Field(None, min_length=1, max_length=100)
    description: str | None = Field(None, max_length=500)
    color: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$")
    display_order: int | None = Field(None, ge=0, le=100000)
    is_active: bool | None = None


# Response bodies, for the OpenAPI document (the routes answer plain dicts shaped like these).


class Item(BaseModel):
    id: str
    title: str
    description: str
    category: str
    priority: Priority
    status: Status
    tags: list[str]
    metadata: dict[str, Any]
    createdAt: str
    updatedAt: str
    created_at: str
    updated_at: str


class OneItem(BaseModel):
    success: Literal[True]
    data: Item


class ItemPage(BaseModel):
    success: Literal[True]
    data: list[Item]
    count: int = Field(description="How many items match the filters")


class ItemStats(BaseModel):
    total: int
    byCategory: dict[str, int]
    byStatus: dict[str, int]
    byPriority: dict[str, int]


class ItemStatsAnswer(BaseModel):
    success: Literal[True]
    data: ItemStats


class Category(BaseModel):
    """A category as the API answers it; `id` repeats `name` for dashboards that key categories by id."""

    id: str
    name: str
    display_name: str
    description: str
    color: str
    display_order: int
    is_active: bool
    created_at: str
    updated_at: str


class CategoryDeleted(BaseModel):
    id: str
    name: str


class CategoryAnswer(BaseModel):
    success: Literal[True]
    data: Category


class CategoryList(BaseModel):
    success: Literal[True]
    data: list[Category]
    count: int


class CategoryDeleteAnswer(BaseModel):
    """`DELETE /categories/{name}`: 200 with a body, because dashboards read `success` from it."""

    success: Literal[True]
    message: str
    data: CategoryDeleted
