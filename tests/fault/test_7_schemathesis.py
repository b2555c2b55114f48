"""Case 7: schemathesis against both APIs, every operation, at least 1,000 generated cases each: never a 5xx,
never an answer outside the document (status, content type, body schema, headers)."""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis

from tests.fault.harness import Ledger, note_row
from tests.integration.conftest import TOKEN
from tests.integration.test_dashboard_compat import Gateway, stack, world  # noqa: F401 (fixtures)
from tests.support.fuzz import FuzzReport, documented_operations, fuzz_service
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.fault

MIN_CASES = 1000


def summary(report: FuzzReport, seconds: float) -> str:
    statuses = sorted({s for codes in report.statuses.values() for s in codes})
    return (f"{len(report.operations)} operations (all documented), statuses seen {statuses}, no 5xx, "
            f"every answer within the document, {seconds:.0f} s")


@pytest.fixture
def unthrottled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_MAX", "1000000")


def test_tp_capital_every_answer_matches_the_document(unthrottled: None, ledger: Ledger,
                                                      stack: tuple[httpx.Client, Gateway]) -> None:  # noqa: F811
    # The API with a real gateway beside it (its control surface answers the old API's routes) and the
    # database up: every answer must be a declared one, and none a 5xx.
    client, _ = stack
    url = str(client.base_url).rstrip("/")

    def with_token(case: schemathesis.Case) -> None:
        case.headers = {**(case.headers or {}), "X-Gateway-Token": TOKEN}

    started = time.monotonic()
    report = fuzz_service(url, examples_per_operation=80, prepare=with_token)
    note_row(ledger, "7. schemathesis: TP Capital API", report.sent, "requests", summary(report, time.monotonic() - started))
    assert report.sent >= MIN_CASES
    assert report.operations == documented_operations(url)


def test_workspace_every_answer_matches_the_document(database_url: str, monkeypatch: pytest.MonkeyPatch,
                                                     ledger: Ledger) -> None:
    from tradingsystem.workspace.app import build_app

    monkeypatch.setenv("RATE_LIMIT_MAX", "1000000")
    server = ThreadServer(build_app(database_url)).start()
    try:
        started = time.monotonic()
        report = fuzz_service(server.url, examples_per_operation=100)
        note_row(ledger, "7. schemathesis: Workspace API", report.sent, "requests", summary(report, time.monotonic() - started))
        assert report.sent >= MIN_CASES
        assert report.operations == documented_operations(server.url)
    finally:
        server.stop()
