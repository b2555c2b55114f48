"""Signal lifecycle on a labelled sample: links, states, events, channel performance, gauges, report, reparse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import TOKEN
from tests.support.servers import ThreadServer, wait_until
from tradingsystem.gateway.export import bundled_sample_export, read_export

SAMPLE = json.loads((Path(__file__).resolve().parents[1] / "data" / "lifecycle_sample.json").read_text("utf-8"))
MESSAGES: list[dict[str, Any]] = SAMPLE["messages"]
STATE_KEYS = ("status", "highest_target_hit", "closed_at", "gain_pct", "gain_source", "events_count")


def payload(m: dict[str, Any], channel: str | None = None) -> dict[str, Any]:
    body = {k: v for k, v in m.items() if k not in ("expect", "why")}
    if channel is not None:
        body["channelId"] = channel
    return body


@pytest.fixture
def lifecycle_api(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    from tradingsystem.tpcapital.app import build_app

    monkeypatch.setenv("GATEWAY_SECRET_TOKEN", TOKEN)
    monkeypatch.setenv("SIGNAL_EXPIRY_DAYS", "3650")  # the sample's swing trades stay open until 2035
    monkeypatch.setenv("PERFORMANCE_METRICS_INTERVAL_S", "0.2")
    server = ThreadServer(build_app(database_url)).start()
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-Gateway-Token": TOKEN}) as client:
        yield client
    server.stop()


def replay(api: httpx.Client, messages: list[dict[str, Any]], channel: str | None = None) -> None:
    for m in messages:
        response = api.post("/ingest", json=payload(m, channel))
        assert response.status_code == 200, response.text


def get(api: httpx.Client, path: str, **params: Any) -> Any:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def snapshot(api: httpx.Client, channel: str | None = None) -> tuple[dict[int, Any], dict[int, Any]]:
    """(update message id -> its signal's message id, signal message id -> state) as the API serves them."""
    params: dict[str, Any] = {"include_deleted": "true", "limit": 1000}
    if channel:
        params["channel"] = channel
    signals = get(api, "/signals", **params)["data"]
    by_id = {s["id"]: s["message_id"] for s in signals}
    event_params: dict[str, Any] = {"limit": 1000}
    if channel:
        event_params["channel"] = channel
    events = get(api, "/signal-events", **event_params)["data"]
    links = {e["message_id"]: by_id.get(e["signal_id"]) if e["signal_id"] else None for e in events}
    states = {s["message_id"]: {k: s[k] for k in (*STATE_KEYS, "deleted")} for s in signals}
    return links, states


def test_labelled_sample_links_states_and_events(lifecycle_api: httpx.Client) -> None:
    api = lifecycle_api
    replay(api, MESSAGES)
    links, states = snapshot(api)

    expected_links = {m["messageId"]: m["expect"]["signal"] for m in MESSAGES if "signal" in m.get("expect", {})}
    assert links == expected_links  # the deleted VALE3 stop (116) is no event at all
    for m in MESSAGES:
        expect = m.get("expect", {})
        if "status" in expect:
            assert {k: states[m["messageId"]][k] for k in STATE_KEYS} == expect, m["messageId"]
            assert states[m["messageId"]]["deleted"] is False
    assert states[117]["deleted"] is True

    # A signal's own events, newest first; an unknown signal is 404.
    bbas3 = get(api, "/signals", asset="BBAS3")["data"]
    newer = next(s for s in bbas3 if s["message_id"] == 109)
    own = get(api, f"/signals/{newer['id']}/events")
    assert own["count"] == 2 and [e["message_id"] for e in own["data"]] == [113, 112]
    assert own["data"][1]["reply_to_message_id"] == 109 and own["data"][1]["gain_pct"] == 5
    assert set(own["data"][0]) == {"id", "ts", "channel", "message_id", "signal_id", "linked", "asset", "event",
                                   "target", "gain_pct", "price", "reply_to_message_id", "raw_message", "edited",
                                   "created_at", "updated_at"}
    missing = api.get("/signals/999999/events")
    assert missing.status_code == 404 and missing.json() == {"error": "Signal 999999 not found"}

    # Filters, in SQL, newest first.
    ids = lambda **p: [e["message_id"] for e in get(api, "/signal-events", **p)["data"]]  # noqa: E731
    assert ids(linked="false") == [123, 119, 118, 205]
    assert ids(linked="false", channel="-1001000000002") == [205]
    assert ids(asset="petr4") == [205, 104, 103]
    assert ids(event="stop_hit") == [204, 110]  # same date: the later stored first
    assert ids(event="cancelled") == [121]
    assert ids(**{"from": "2025-11-13", "to": "2025-11-14"}) == [121, 119, 118]
    page = get(api, "/signal-events", limit=2, offset=1)
    assert page["count"] == 14 and [e["message_id"] for e in page["data"]] == [121, 119]
    assert api.get("/signal-events", params={"event": "exploded"}).status_code == 400
    assert api.get("/signal-events", params={"linked": "maybe"}).status_code == 400

    # The status filter on /signals.
    assert [s["message_id"] for s in get(api, "/signals", status="stopped")["data"]] == [203, 107]
    assert [s["message_id"] for s in get(api, "/signals", status="expired")["data"]] == [124]
    assert get(api, "/signals", status="target_hit")["count"] == 5
    assert api.get("/signals", params={"status": "sleeping"}).status_code == 400

    # The price an update quotes is served as a number.
    petr4 = {e["message_id"]: e for e in get(api, "/signal-events", asset="PETR4")["data"]}
    assert petr4[103]["price"] == 28 and petr4[104]["price"] is None and petr4[103]["linked"] is True


def test_labelled_sample_performance_matches_the_hand_count(lifecycle_api: httpx.Client) -> None:
    api = lifecycle_api
    replay(api, MESSAGES)
    assert get(api, "/channels/performance")["data"] == SAMPLE["performance"]["expect"]

    # The window and the signal type filter the signals the figures are computed from.
    day = get(api, "/channels/performance", signal_type="day trade")["data"]
    assert [(r["channel"], r["signals"], r["closed"], r["final_target_hits"]) for r in day] == [
        ("-1001000000001", 2, 2, 1)]
    early = get(api, "/channels/performance", **{"from": "2025-11-03", "to": "2025-11-04"})["data"]
    assert [(r["signals"], r["target_1_hits"], r["mean_seconds_to_first_target"]) for r in early] == [(3, 3, 33600)]
    assert get(api, "/channels/performance", **{"from": "2030-01-01"})["data"] == []
    bad = api.get("/channels/performance", params={"signal_type": "Long Hold"})
    assert bad.status_code == 400 and bad.json()["details"] == [
        "signal_type must be one of: Swing Trade, Day Trade, Scalping, Position"]

    # The same figures as gauges, one series per channel.
    def gauges() -> str:
        return api.get("/metrics").text

    # A refresh may have run part-way through the replay: wait for one that saw all of it.
    expected = [
        'tpcapital_channel_signals{channel="-1001000000002"} 2.0',
        'tpcapital_channel_signals{channel="-1001000000001"} 8.0',
        'tpcapital_channel_target1_hit_ratio{channel="-1001000000001"} 0.7143',
        'tpcapital_channel_stop_ratio{channel="-1001000000002"} 0.5',
        'tpcapital_channel_gain_median_percent{channel="-1001000000001"} 4.0',
        'tpcapital_channel_first_target_mean_seconds{channel="-1001000000001"} 54720.0',
    ]
    last = {"text": ""}

    def complete() -> bool:
        last["text"] = gauges()
        return all(line in last["text"] for line in expected)

    try:
        wait_until(complete, 20, message="the performance gauges")
    except AssertionError:
        missing = [line for line in expected if line not in last["text"]]
        raise AssertionError(f"performance gauges never showed: {missing}") from None


def test_deleting_a_signal_through_the_api_unlinks_its_updates(lifecycle_api: httpx.Client) -> None:
    api = lifecycle_api
    replay(api, MESSAGES)
    swing = next(s for s in get(api, "/signals", asset="PETR4")["data"] if s["message_id"] == 101)
    assert api.delete(f"/signals/{swing['id']}").status_code == 204
    links, _ = snapshot(api)
    # 103 quotes the swing trade's target 1 (28,00), a level the day trade does not have: it stays unlinked.
    # 104 quotes nothing and now finds the day trade's target still ahead.
    assert links[103] is None and links[104] == 102


def test_default_horizon_expires_swing_trades(api: httpx.Client) -> None:
    replay(api, MESSAGES)
    _, states = snapshot(api)
    # 30 days after its last update, the PETR4 swing trade expired with target 1 reached.
    assert {k: states[101][k] for k in STATE_KEYS} == {
        "status": "expired", "highest_target_hit": 1, "closed_at": "2025-12-03T14:00:00.000Z", "gain_pct": 8.94,
        "gain_source": "stated", "events_count": 1}
    assert states[107]["status"] == "stopped"


def test_batch_delivery_and_reparse_give_the_same_links(lifecycle_api: httpx.Client, database_url: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from tradingsystem.tpcapital.reparse import reparse_command
    from tradingsystem.tpcapital.report import report_command

    api = lifecycle_api
    one_by_one = "-1001000000009"
    replay(api, [m for m in MESSAGES if m["channelId"] == "-1001000000001"], channel=one_by_one)
    expected = snapshot(api, one_by_one)
    response = api.post("/ingest/batch", json={"messages": [payload(m) for m in MESSAGES if
                                                            m["channelId"] == "-1001000000001"]})
    assert response.status_code == 200
    assert snapshot(api, "-1001000000001") == expected

    assert reparse_command(database_url) == 0
    assert snapshot(api, one_by_one) == expected
    assert snapshot(api, "-1001000000001") == expected

    capsys.readouterr()
    assert report_command("-1001000000001", "2025-11-01", "2025-11-30", None, dsn=database_url) == 0
    table = capsys.readouterr().out
    for figure in ("Channel performance, 2025-11-01 to 2025-11-30", "-1001000000001", "71.4%", "28.6%", "14.3%",
                   "+4.32%", "+4.00%", "15h 12m"):
        assert figure in table
    assert report_command(None, "yesterday", None, None, dsn=database_url) == 2


def test_updates_no_trade_matches_fully_go_to_the_best_partial_match(lifecycle_api: httpx.Client) -> None:
    # The linker stops at the newest trade that matches an update as well as the update allows; when none does,
    # the best partial match wins. Each update below has no full match, so only that second step can link it.
    api = lifecycle_api
    channel = "-1001000000020"

    def msg(message_id: int, hour: int, text: str) -> dict[str, Any]:
        return {"channelId": channel, "messageId": message_id, "timestamp": f"2025-11-10T{hour:02d}:00:00Z",
                "text": text}

    replay(api, [
        msg(1, 10, "Ativo: ITUB4\nCompra: 30,00\nAlvo 1: 31,00\nAlvo 2: 33,00\nStop: 29,00"),
        msg(2, 11, "Ativo: ITUB4\nCompra: 31,50\nAlvo 1: 32,00\nAlvo 2: 34,00\nStop: 30,00"),
        # Within 1 % of target 2 of the older trade (33,00) and of no level of the newer one, equal to none.
        msg(3, 12, "Atenção: ITUB4 atingiu o alvo 2 (33,10) ✅"),
        msg(4, 13, "Ativo: BBDC4\nCompra: 15,00\nAlvo 1: 16,00\nAlvo 2: 17,00\nStop: 14,00"),
        msg(5, 14, "BBDC4 ALVO 1 ATINGIDO ✅"),
        # Target 1 again: no open BBDC4 trade still has target 1 ahead, so the trade that reached it takes it.
        msg(6, 15, "BBDC4 ALVO 1 ATINGIDO ✅"),
    ])
    links, _ = snapshot(api, channel)
    assert links == {3: 1, 5: 4, 6: 4}


def test_older_messages_after_newer_ones_give_the_in_order_links(lifecycle_api: httpx.Client) -> None:
    # A gateway's failure queue re-driven after newer messages went straight through: the older half arrives
    # last, one by one or in a batch, or the whole history newest first. The links and states are the same.
    api = lifecycle_api
    history = [m for m in MESSAGES if m["channelId"] == "-1001000000001"]
    half = len(history) // 2
    replay(api, history, channel="-1001000000010")
    expected = snapshot(api, "-1001000000010")
    assert any(expected[0].values()) and any(link is None for link in expected[0].values())

    replay(api, history[half:] + history[:half], channel="-1001000000011")
    replay(api, history[::-1], channel="-1001000000012")
    for channel, parts in (("-1001000000013", (history[half:], history[:half])),
                           ("-1001000000014", (history[::-1],))):
        for part in parts:
            response = api.post("/ingest/batch", json={"messages": [payload(m, channel) for m in part]})
            assert response.status_code == 200, response.text
    for channel in ("-1001000000011", "-1001000000012", "-1001000000013", "-1001000000014"):
        assert snapshot(api, channel) == expected, channel


ORDERED = [m for m in MESSAGES if m["channelId"] == "-1001000000001" and m["messageId"] in
           (101, 102, 103, 104, 107, 109, 110, 112, 113, 114, 115, 116, 117, 118)]


@pytest.fixture(scope="module")
def shared_api(pg_cluster: Any) -> Iterator[httpx.Client]:
    from tradingsystem.tpcapital.app import build_app

    name = pg_cluster.create_database()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GATEWAY_SECRET_TOKEN", TOKEN)
        mp.setenv("SIGNAL_EXPIRY_DAYS", "3650")
        server = ThreadServer(build_app(pg_cluster.url(name))).start()
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-Gateway-Token": TOKEN}) as client:
        replay(client, ORDERED, channel="-1001000000000")
        yield client
    server.stop()
    pg_cluster.drop_database(name)


_channels = iter(range(1_000_000, 10_000_000))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(ORDERED))
def test_any_arrival_order_gives_the_same_final_state(shared_api: httpx.Client, order: list[dict[str, Any]]) -> None:
    # A backfill can deliver an update before its signal, an edit before its original, a delete before both.
    channel = f"-100{next(_channels)}"
    replay(shared_api, order, channel=channel)
    assert snapshot(shared_api, channel) == snapshot(shared_api, "-1001000000000")


# The bundled sample channel, as `tradingsystem up` replays it for a new user.
SAMPLE_LINKS = {  # update -> the signal its content names (None: no BOVAW22 signal was ever sent)
    444208: None, 444211: 444207, 444219: 444204, 444223: 444203, 444225: 444224, 444229: 444228,
    444231: 444210, 444234: 444233, 444237: 444203, 444238: 444217, 444239: 444227,
}
FIRST_TARGETS = [(444203, 444223), (444204, 444219), (444207, 444211), (444210, 444231), (444228, 444229),
                 (444233, 444234), (444227, 444239)]


def test_bundled_sample_replay_is_served_linked_and_counted(api: httpx.Client) -> None:
    payloads = list(read_export(bundled_sample_export(), source="replay"))
    assert api.post("/ingest/batch", json={"messages": payloads}).status_code == 200
    links, states = snapshot(api)
    assert links == SAMPLE_LINKS
    assert all(s["status"] for s in states.values())
    assert states[444204]["highest_target_hit"] == 1 and states[444205]["events_count"] == 0  # the PETR4 case

    # Hand count (every trade is past its horizon now): 13 signals, all ended. Target 1 reached by BOVAW32,
    # PETR4 swing, KLBNK177, ITUB4, BBAS3, PETRK390, MGLUW45 (7); the final target by the single-target trades
    # KLBNK177, ITUB4, BBAS3, PETRK390 (4); stopped: WINFUT1, VALE3 (2). Stated gains 104.80, 8.94, 23.07,
    # 6.41, -0.80, -2.16, 2.16, 27.90, 33.33: mean 203.65 / 9 = 22.63, median 8.94.
    dates = {m["id"]: int(m["date_unixtime"]) for m in json.loads(bundled_sample_export().read_text())["messages"]}
    to_first = round(sum(dates[u] - dates[s] for s, u in FIRST_TARGETS) / len(FIRST_TARGETS))
    assert get(api, "/channels/performance")["data"] == [{
        "channel": "-1001649127710", "channel_title": "Operações | TP Capital", "signals": 13, "closed": 13,
        "cancelled": 0, "target_1_hits": 7, "final_target_hits": 4, "stops": 2, "target_1_hit_rate": 0.5385,
        "final_target_hit_rate": 0.3077, "stop_rate": 0.1538, "mean_gain_pct": 22.63, "median_gain_pct": 8.94,
        "mean_seconds_to_first_target": to_first,
    }]
