"""Log redaction: known secrets and secret-shaped text never reach a log line, whichever path it takes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tradingsystem.core.logging import REDACTED, configure_logging

BOT_TOKEN = "7312345678:AAHk3vQx9-Very_Secret_Bot_Token_Part"
GATEWAY_TOKEN = "gw-token-that-must-stay-private-42"
API_HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def lines(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.chdir("/")
    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", f"old-rotated-token,{GATEWAY_TOKEN}")
    monkeypatch.setenv("TELEGRAM_API_HASH", API_HASH)
    configure_logging("redaction-test", "DEBUG", secrets=[BOT_TOKEN])

    def read() -> list[str]:
        return [line for line in capfd.readouterr().out.splitlines() if line.startswith("{")]

    yield read
    logging.getLogger().handlers.clear()
    structlog.reset_defaults()


def test_messages_fields_and_nested_values_are_redacted(lines: Any) -> None:
    log = structlog.get_logger("t")
    log.warning(f"getUpdates failed for http://127.0.0.1:1/bot{BOT_TOKEN}/getUpdates",
                headers={"X-Gateway-Token": GATEWAY_TOKEN}, hashes=[API_HASH], plain="kept as it is")
    [line] = lines()
    assert BOT_TOKEN not in line and GATEWAY_TOKEN not in line and API_HASH not in line
    record = json.loads(line)
    assert record["message"] == f"getUpdates failed for http://127.0.0.1:1/bot{REDACTED}/getUpdates"
    assert record["headers"] == {"X-Gateway-Token": REDACTED} and record["hashes"] == [REDACTED]
    assert record["plain"] == "kept as it is"


def test_tokens_of_the_bot_api_shape_and_url_passwords_are_redacted_even_when_unknown(lines: Any) -> None:
    other = "5550001112:AAOtherBotTokenNobodyConfigured_abcdef"
    structlog.get_logger("t").error("boom", error=f"Cannot connect to https://api.telegram.org/bot{other}/getMe",
                                    url="postgresql://tp:s3cr3t-pass@127.0.0.1:5432/tradingsystem")
    [line] = lines()
    assert other not in line and "s3cr3t-pass" not in line
    assert json.loads(line)["url"] == f"postgresql://tp:{REDACTED}@127.0.0.1:5432/tradingsystem"


def test_exception_text_and_standard_library_records_are_redacted(lines: Any) -> None:
    try:
        raise ConnectionError(f"Can not write request body for http://h/bot{BOT_TOKEN}/getUpdates")
    except ConnectionError:
        structlog.get_logger("t").exception("poll failed")
        logging.getLogger("aiohttp.client").exception("Unclosed connection to /bot%s/getUpdates", BOT_TOKEN)
    logging.getLogger("telethon.network").warning("hash %s, token %s", API_HASH, GATEWAY_TOKEN)
    out = lines()
    assert len(out) == 3
    assert not any(secret in line for line in out for secret in (BOT_TOKEN, GATEWAY_TOKEN, API_HASH))
    first, second, third = (json.loads(line) for line in out)
    assert "ConnectionError" in first["exception"] and REDACTED in first["exception"]
    assert second["logger"] == "aiohttp.client" and REDACTED in second["message"]
    assert "ConnectionError" in second["exception"] and REDACTED in second["exception"]
    assert third["message"] == f"hash {REDACTED}, token {REDACTED}"
