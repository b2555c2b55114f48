"""Small SQL-building helpers shared by the repositories."""

from __future__ import annotations


def like_pattern(term: str) -> str:
    """A `LIKE`/`ILIKE` pattern that finds `term` anywhere, its own `%`, `_` and `\\` matched literally."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
