"""Case 8: no log line of any service in the suite's runs holds a secret; a token off by one character is refused.

Runs last (the files run in their order): it reads the log of every service process the cases 1-6 started,
and starts a gateway with a bot of its own first, so that a gateway and a bot are in the logs whatever ran."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fault.harness import (
    BOT_TOKEN,
    DB_PASSWORD,
    GATEWAY_TOKEN,
    NEXT_TOKEN,
    SESSION_STRING,
    Ledger,
    Services,
    channel_id,
    health,
    note_row,
    payloads,
    wait_stored,
)
from tests.fault.test_6_soak import BotApiThread, bot_api  # noqa: F401 (fixture)
from tests.support.servers import ProcessServer, wait_until

pytestmark = pytest.mark.fault

UNAUTHORIZED = {"error": "Invalid or missing authentication token"}


def variants(token: str) -> dict[str, str]:
    last = "x" if token[-1] != "x" else "y"
    return {"last character changed": token[:-1] + last, "one character longer": token + token[-1],
            "one character shorter": token[:-1], "first character changed": ("x" if token[0] != "x" else "y")
            + token[1:], "empty": ""}


def test_a_token_that_differs_in_its_last_character_or_its_length_is_refused(
        shared_api: ProcessServer, ledger: Ledger) -> None:
    message = payloads(1980000001, range(1, 2))[0]
    sent = 0
    with httpx.Client(base_url=shared_api.url, timeout=10, trust_env=False) as client:
        for token in (GATEWAY_TOKEN, NEXT_TOKEN):  # both tokens of the rotation list
            for name, variant in variants(token).items():
                for path, body in (("/ingest", message), ("/ingest/batch", {"messages": [message]})):
                    resp = client.post(path, json=body, headers={"X-Gateway-Token": variant})
                    sent += 1
                    assert (resp.status_code, resp.json()) == (401, UNAUTHORIZED), (name, path)
            assert client.post("/ingest", json=message, headers={"X-Gateway-Token": token}).status_code == 200
        assert client.post("/ingest", json=message).status_code == 401  # no header at all
    note_row(ledger, "8. token variants", sent + 1, "requests",
             "each accepted token with its last character changed, one longer, one shorter, its first character "
             "changed, empty, and no header: 401 from /ingest and /ingest/batch every time")


def test_no_log_line_of_any_service_holds_a_secret(bot_api: BotApiThread, services: Services,  # noqa: F811
                                                   shared_api: ProcessServer, fault_db: str,
                                                   fault_dir: Path, ledger: Ledger) -> None:
    number = 1980000002
    gateway = services.gateway(fault_dir / "case8", shared_api.url, name="gateway-secrets",
                               TELEGRAM_INGESTION_BOT_TOKEN=BOT_TOKEN, TELEGRAM_BOT_API_URL=bot_api.api.base_url)
    try:
        gateway.wait_healthy(90)
        wait_until(lambda: health(gateway).get("telegram") == "connected", 90, message="the bot connected")
        bot_api.post(int(channel_id(number)), 1, 200)
        wait_stored(fault_db, channel_id(number), 200, 60, "the bot's messages stored")
    finally:
        gateway.stop()
    secrets = {"gateway token": GATEWAY_TOKEN, "second gateway token": NEXT_TOKEN, "bot token": BOT_TOKEN,
               "bot token secret part": BOT_TOKEN.split(":", 1)[1], "database password": DB_PASSWORD,
               "session string": SESSION_STRING}
    logs = sorted(services.log_dir.glob("*.log"))
    kinds = {log.name.split("-")[0] for log in logs}
    assert {"gateway", "shared"} <= kinds, kinds  # at least this test's gateway and the shared API
    lines = 0
    found: list[str] = []
    for log in logs:
        text = log.read_text(errors="replace")
        lines += text.count("\n")
        found += [f"{name} in {log.name}" for name, value in secrets.items() if value in text]
    note_row(ledger, "8. secrets in logs", lines, "log lines",
             f"{len(logs)} log files of the suite's service processes ({lines:,} lines) searched for "
             f"{len(secrets)} secrets: {len(found)} found")
    assert not found, found
    # the secrets were in use: the gateway authenticated to the API and its bot polled the stand-in
    assert '"Telegram bot connected"' in gateway.output() and bot_api.api.calls["getupdates"] > 0
