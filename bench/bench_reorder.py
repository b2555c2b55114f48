"""Out-of-order ingest benchmark: older messages of a channel ingested after newer ones, against in order.

Run from the repository root: ``python -m bench.bench_reorder [--n 2000]`` (about three minutes). Writes
``bench/results/reorder.json``.

An embedded PostgreSQL (stock settings, fsync on) and ``tradingsystem serve api`` pinned to one core; one
client. Each case takes a fresh channel: ``n`` messages (ids n+1..2n, one second apart) in order, then the
``n`` older ones (ids 1..n) in order, one ``POST /ingest`` each or ``POST /ingest/batch`` of 500, and gives
msg/s of both halves and their ratio. Two mixes: the fault suite's (``tests/fault/harness.py`` TEXTS, whose
updates name an asset it never signals) and one with signals and updates of the same assets (at ``n / 2``,
since it is the slow one). Every case runs twice in the same run: with the current ``tp_capital.relink``,
then with migration 0008's, installed over it from the migration file, as the "before" figure.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import ROOT, Service, embedded_postgres, log, machine_info, psql, service_env, write_result
from tradingsystem.core.embedded import free_port

FAULT_TEXTS = (
    "Ativo: PETR4\nCompra: 38,50 a 38,70\nAlvo 1: 40,00\nStop: 37,00",
    "Bom dia, pessoal! Mercado abrindo.",
    "VALE3 ALVO 1 ATINGIDO ✅ +3,9%",
    "Fiquem atentos às entradas de hoje.",
)
LINKED_TEXTS = (*FAULT_TEXTS,
                "Ativo: VALE3\nCompra: 60,50 a 60,70\nAlvo 1: 62,00\nAlvo 2: 63,00\nStop: 58,00",
                "PETR4 ALVO 1 ATINGIDO ✅ +3,9%")
BATCH = 500
MIGRATION_0008 = ROOT / "src" / "tradingsystem" / "migrations" / "tp_capital" / "0008_relink_recent_signals.sql"


def messages(channel: str, texts: tuple[str, ...], ids: range) -> list[dict[str, Any]]:
    return [{"channelId": channel, "messageId": i,
             "timestamp": datetime.fromtimestamp(1_760_000_000 + i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "text": f"{texts[i % len(texts)]} #{i}", "source": "bot", "chatTitle": "Bench"} for i in ids]


def ingest(client: httpx.Client, items: list[dict[str, Any]], batch: bool) -> float:
    """Messages per second for storing `items`, each one new."""
    started = time.perf_counter()
    if batch:
        for k in range(0, len(items), BATCH):
            answer = client.post("/ingest/batch", json={"messages": items[k:k + BATCH]})
            answer.raise_for_status()
            if not all(r["stored"] for r in answer.json()["results"]):
                raise RuntimeError("a batch message was not stored")
    else:
        for item in items:
            answer = client.post("/ingest", json=item)
            answer.raise_for_status()
            if answer.json()["stored"] is not True:
                raise RuntimeError("a message was not stored")
    return len(items) / (time.perf_counter() - started)


def case(client: httpx.Client, channel: str, texts: tuple[str, ...], n: int, batch: bool) -> dict[str, Any]:
    in_order = ingest(client, messages(channel, texts, range(n + 1, 2 * n + 1)), batch)
    out_of_order = ingest(client, messages(channel, texts, range(1, n + 1)), batch)
    figures = {"n": n, "batch": batch, "in_order_per_s": round(in_order), "out_of_order_per_s": round(out_of_order),
               "ratio": round(in_order / out_of_order, 2)}
    log(f"{channel} {figures}")
    return figures


def relink_of_0008() -> str:
    text = MIGRATION_0008.read_text("utf-8")
    start = text.index("CREATE OR REPLACE FUNCTION tp_capital.relink")
    return text[start:text.index("-- The links of this deployment")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args(argv)
    info = machine_info()
    token = "bench-gateway-token-" + os.urandom(8).hex()
    results: dict[str, Any] = {}
    with embedded_postgres() as pg:
        port = free_port()
        env = service_env(pg, API_PORT=str(port), GATEWAY_SECRET_TOKEN=token, LOG_LEVEL="WARNING")
        with Service("api", env, port), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                                     headers={"X-Gateway-Token": token}) as client:
            channel = 1_000_000
            for label in ("current", "migration_0008"):
                if label == "migration_0008":
                    psql(pg, relink_of_0008())
                for mix, texts, n in (("fault_mix", FAULT_TEXTS, args.n), ("linked_mix", LINKED_TEXTS, args.n // 2)):
                    for batch in (False, True):
                        channel += 1
                        key = f"{mix}_{'batch' if batch else 'single'}"
                        results.setdefault(key, {})[label] = case(client, f"-100{channel}", texts, n, batch)
    path = write_result("reorder", {"machine": info, "reorder": results})
    log(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
