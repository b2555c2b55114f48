"""Structured JSON logging for every service: one object per line on stdout, secrets redacted or fingerprinted."""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import structlog

_RECENT_MAX = 1000
_lock = threading.Lock()
_recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=_RECENT_MAX)
_service = "tradingsystem"


REDACTED = "[REDACTED]"
# Secrets are found in every log path by value (whatever the text around them) and by shape:
_SHAPES = (
    # a Bot API token, alone or in a URL path (`…/bot<id>:<secret>/getUpdates` in aiohttp's error texts)
    (re.compile(r"(?<!\d)\d{5,16}:[A-Za-z0-9_-]{30,}"), REDACTED),
    # the password of a URL (`postgresql://user:<password>@host/db`)
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE), r"\1" + REDACTED + "@"),
)
# Variables whose values are secrets: every service reads its own from these names (env or `.env`).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_HASH|API_KEY|SESSION_STRING", re.IGNORECASE)
_MIN_SECRET = 6  # shorter values would redact ordinary words; no real secret is this short
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None


def add_secrets(*values: str | None) -> None:
    """Redact these values (comma lists are split) from every log record from now on."""
    global _secret_re
    new = {part.strip() for value in values if value for part in (value, *value.split(","))}
    new = {v for v in new if len(v) >= _MIN_SECRET}
    with _lock:
        if new <= _secrets:
            return
        _secrets.update(new)
        _secret_re = re.compile("|".join(re.escape(v) for v in sorted(_secrets, key=len, reverse=True)))


def _secrets_from_environment(env_file: Path = Path(".env")) -> list[str]:
    values = dict(os.environ)
    if env_file.is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(env_file).items() if v})
    return [v for k, v in values.items() if _SECRET_NAME.search(k)]


def redact(text: str) -> str:
    """`text` with every known secret and every secret-shaped piece replaced by `[REDACTED]`."""
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for shape, replacement in _SHAPES:
        text = shape.sub(replacement, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return redact(str(value))  # exceptions, URLs, paths: rendered as text anyway


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: _scrub(v) for k, v in event.items()}


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


def configure_logging(service: str, level: str = "INFO", secrets: Iterable[str | None] = ()) -> None:
    """Route structlog and the standard library's logging into one JSON line per record on stdout.

    Every record (message, fields, exception text, records of libraries such as aiohttp, aiogram and
    Telethon) is redacted: the `secrets` given, every secret-named variable of the environment and
    `.env`, Bot API tokens and URL passwords become `[REDACTED]`."""
    global _service
    _service = service
    add_secrets(*_secrets_from_environment(), *secrets)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.format_exc_info,
        _redact,
        _timestamp,
        _shape,
        _remember,
        _render,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(),  # stdout at the time of each write
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
            extra: dict[str, Any] = {"exc_info": record.exc_info} if record.exc_info else {}
            getattr(log, method)(msg, logger=record.name, **extra)

    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(numeric)
    logging.captureWarnings(True)  # warnings (e.g. unclosed sessions with their URLs) take the same path

    def _uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        structlog.get_logger(service).critical("Uncaught exception", exc_info=(kind, exc, tb))

    def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            _uncaught(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = _uncaught  # a traceback printed by Python itself would bypass the redaction
    threading.excepthook = _uncaught_in_thread
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
