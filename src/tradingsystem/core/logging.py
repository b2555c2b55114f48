"""Structured JSON logging for every service: one object per line on stdout, secrets only as fingerprints."""

from __future__ import annotations

import collections
import hashlib
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

_RECENT_MAX = 1000
_lock = threading.Lock()
_recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=_RECENT_MAX)
_service = "tradingsystem"


def fingerprint(secret: str) -> str:
    """A short SHA-256 fingerprint an operator can recognise a secret by, without revealing it."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def _timestamp(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    event["timestamp"] = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    return event


def _shape(_: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["message"] = str(event.pop("event", ""))
    event["level"] = "warn" if method == "warning" else ("error" if method in ("exception", "critical") else method)
    event.setdefault("service", _service)
    return event


def _remember(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    # Kept so that a service can answer `/logs` with its own recent records.
    context = {k: v for k, v in event.items() if k not in ("timestamp", "level", "message", "service")}
    record = {
        "timestamp": event.get("timestamp"),
        "level": event.get("level"),
        "message": event.get("message"),
        "context": context,
    }
    with _lock:
        _recent.append(record)
    return event


def _render(_: Any, __: str, event: dict[str, Any]) -> str:
    return orjson.dumps(event, default=str).decode()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route structlog and the standard library's logging into one JSON line per record on stdout."""
    global _service
    _service = service
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        _timestamp,
        _shape,
        _remember,
        _render,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )

    class _ToStructlog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                msg = record.getMessage()
            except Exception:  # a broken format string must not take logging down
                msg = str(record.msg)
            log = structlog.get_logger(record.name)
            method = record.levelname.lower()
            if method not in ("debug", "info", "warning", "error", "critical"):
                method = "info"
            getattr(log, method)(msg, logger=record.name)

    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(numeric)
    # uvicorn's access log duplicates our request log; its error log is useful.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def recent_records(limit: int = 100, level: str | None = None) -> list[dict[str, Any]]:
    """The newest `limit` log records of this process, newest first, optionally of one level."""
    with _lock:
        items = list(_recent)
    items.reverse()
    if level:
        wanted = "warn" if level.lower() == "warning" else level.lower()
        items = [r for r in items if r.get("level") == wanted]
    return items[:limit]
