"""Turns pydantic's validation errors into the contract's short, human `details` messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    # pydantic reports tagged/union members as extra path segments; keep the field names people wrote.
    return ".".join(p for p in parts if not p.startswith(("function-", "constrained-"))) or "body"


def format_validation_errors(errors: Sequence[Any]) -> list[str]:
    """One message per problem: "title is required", "priority must be one of: …", "limit must be …"."""
    messages: list[str] = []
    for err in errors:
        kind = err.get("type", "")
        loc = err.get("loc", ())
        field = _field(loc)
        ctx = err.get("ctx") or {}
        if kind == "missing":
            msg = f"{field} is required"
        elif kind == "json_invalid":
            msg = "body must be valid JSON"
        elif kind in ("model_attributes_type", "dict_type", "model_type") and field == "body":
            msg = "body must be a JSON object"
        elif kind == "extra_forbidden":
            msg = f"{field} is not an allowed field"
        elif kind in ("literal_error", "enum"):
            expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
            msg = f"{field} must be one of: {expected}"
        elif kind in ("string_too_short",):
            # An empty (or blank) required string is as good as a missing one.
            msg = (f"{field} is required" if ctx.get("min_length") == 1
                   else f"{field} must be at least {ctx.get('min_length')} characters")
        elif kind == "string_too_long":
            msg = f"{field} must be at most {ctx.get('max_length')} characters"
        elif kind == "too_long":
            msg = f"{field} must have at most {ctx.get('max_length')} items"
        elif kind == "too_short":
            msg = f"{field} must have at least {ctx.get('min_length')} items"
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            msg = f"{field} {err.get('msg', 'is out of range').lower()}"
        elif kind in ("bool_type", "bool_parsing"):
            msg = f"{field} must be true or false"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            msg = f"{field} must be an object"
        elif kind == "list_type":
            msg = f"{field} must be a list"
        elif kind in ("float_type", "float_parsing", "finite_number"):
            msg = f"{field} must be a number"
        elif kind.startswith("int_") or kind == "int_type":
            msg = f"{field} must be an integer"
        elif kind.startswith("string_") or kind == "string_type":
            msg = f"{field} must be a string"
        elif kind == "value_error":
            msg = str(ctx.get("error") or err.get("msg", "is invalid")).removeprefix("Value error, ")
        else:
            msg = f"{field}: {err.get('msg', 'is invalid')}"
        if msg not in messages:
            messages.append(msg)
    return messages


def check_body(model: type[M], raw: Any) -> tuple[M | None, list[str]]:
    """`raw` (parsed JSON) as `model`, or None and every problem found in it."""
    try:
        return model.model_validate(raw), []
    except ValidationError as exc:
        return None, format_validation_errors(exc.errors())
