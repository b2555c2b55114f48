"""Imports aiogram with its Telegram models built on first use instead of all at import (about 100 MB less)."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel

# aiogram declares its ~400 types with `defer_build=True`, then `aiogram.types` rebuilds every one of them at
# import with the namespace that resolves their forward references (aiogram issue #1513). Each built model holds
# its own copy of the validators of every model it can contain, so the gateway's resident set grew by ~130 MB
# for the handful of models the bot source ever validates. During the import, those rebuild calls only record
# the namespace; `complete` builds the models a caller uses with it, and every other aiogram model that is
# still incomplete gets it as its parent namespace, where pydantic looks when it builds a model on first use.
# Models of other packages are rebuilt as usual.
_namespace: dict[str, Any] = {}


def import_aiogram() -> None:
    """Import aiogram (once) with its models left deferred; later calls are free."""
    if "aiogram.types" in sys.modules:
        return
    original = BaseModel.__dict__["model_rebuild"]

    def remember_namespace(cls: type[BaseModel], /, *args: Any, _types_namespace: Any = None, **kwargs: Any) -> Any:
        if not cls.__module__.startswith("aiogram.") or _types_namespace is None or args or kwargs:
            return original.__func__(cls, *args, _types_namespace=_types_namespace, **kwargs)
        _namespace.update(_types_namespace)
        return None

    BaseModel.model_rebuild = classmethod(remember_namespace)  # type: ignore[assignment,method-assign]
    try:
        import aiogram
        import aiogram.methods
        import aiogram.types
    finally:
        BaseModel.model_rebuild = original  # type: ignore[method-assign]
    for module in (aiogram.types, aiogram.methods):
        for name in module.__all__:
            model = getattr(module, name, None)
            if isinstance(model, type) and issubclass(model, BaseModel) and not model.__pydantic_complete__:
                own = model.__dict__.get("__pydantic_parent_namespace__") or {}
                model.__pydantic_parent_namespace__ = {**_namespace, **dict(own)}


def complete(*models: type[BaseModel]) -> None:
    """Build these aiogram models now, with aiogram's namespace (what a source validates on its hot path)."""
    for model in models:
        if not model.__pydantic_complete__:
            model.model_rebuild(_types_namespace=_namespace)
