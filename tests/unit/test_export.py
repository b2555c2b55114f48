"""Telegram Desktop export reader: text shapes, skips, edits, photos, streaming and broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradingsystem.gateway.export import (
    ExportError,
    TelegramExport,
    bundled_sample_export,
    flatten_text,
)

EXPORTS = Path(__file__).resolve().parents[1] / "data" / "exports"
MIXED = EXPORTS / "tp_capital_mixed.json"
CHANNEL = "-1001649127710"


def test_mixed_export_payloads_and_skips() -> None:
    export = TelegramExport(MIXED)
    payloads = list(export.payloads())

    assert export.channel_id == CHANNEL
    assert export.name == "Operações | TP Capital"
    by_id: dict[tuple[int, str], dict[str, object]] = {(p["messageId"], p["kind"]): p for p in payloads}
    assert [(p["messageId"], p["kind"]) for p in payloads] == [
        (2, "new"), (3, "new"), (4, "new"), (5, "new"), (6, "new"), (6, "edit"), (9, "new"), (11, "new"),
        (11, "edit"),
    ]
    assert export.stats.messages == 12
    assert export.stats.payloads == 9
    # Two service messages, a sticker, a photo left out of the export without caption, a voice message.
    assert dict(export.stats.skipped) == {"service": 2, "sticker": 1, "empty": 2}

    signal = by_id[(2, "new")]
    assert signal == {
        "channelId": CHANNEL,
        "messageId": 2,
        # From date_unixtime, not from "date" (the exporting computer's local time).
        "timestamp": "2025-10-24T19:30:39Z",
        "text": "🟢Swing Trade \n \nAtivo: BOVAW32\nCompra: 1,04 a 1,06\nAlvo 1: 1,15\nAlvo 2: 2,15\n"
        "Alvo final: 3,50\n\nStop: 0,70",
        "kind": "new",
        "editDate": None,
        "photos": [],
        "source": "import",
        "chatTitle": "Operações | TP Capital",
        "forwardedFrom": None,
    }


def test_text_pieces_are_joined_in_order() -> None:
    payloads = {p["messageId"]: p for p in TelegramExport(MIXED).payloads() if p["kind"] == "new"}
    assert payloads[3]["text"] == (
        "BOVAW22 ALVO 1 ATINGIDO ✅ +17,02% 🚀\nDetalhes: resultado #bova11 @tpcapital"
    )
    assert payloads[11]["text"] == "PETR4 ALVO FINAL ATINGIDO ✅ +37,25%"


def test_photos_with_and_without_caption() -> None:
    payloads = {p["messageId"]: p for p in TelegramExport(MIXED).payloads() if p["kind"] == "new"}
    assert payloads[4]["photos"] == ["export:photos/photo_4@24-10-2025_16-55-40.jpg"]
    assert payloads[4]["text"] == "Gráfico do BOVA11 rompendo a resistência 📈"
    assert payloads[5]["photos"] == ["export:photos/photo_5@24-10-2025_17-02-11.jpg"]
    assert payloads[5]["text"] == ""
    # A photo that was not exported cannot be referenced; the caption still counts.
    assert payloads[11]["photos"] == []


def test_edited_message_gives_new_and_edit_with_final_text() -> None:
    payloads = [p for p in TelegramExport(MIXED).payloads() if p["messageId"] == 6]
    new, edit = payloads
    assert new["kind"] == "new" and new["editDate"] is None
    assert edit["kind"] == "edit"
    assert edit["editDate"] == "2025-10-24T20:14:30Z"
    assert edit["timestamp"] == new["timestamp"] == "2025-10-24T20:10:00Z"
    assert edit["text"] == new["text"]


def test_edits_can_be_left_out() -> None:
    export = TelegramExport(MIXED, include_edits=False)
    kinds = {p["kind"] for p in export.payloads()}
    assert kinds == {"new"}
    assert export.stats.payloads == 7


def test_source_replay() -> None:
    payloads = list(TelegramExport(MIXED, source="replay").payloads())
    assert {p["source"] for p in payloads} == {"replay"}


def test_flatten_text_shapes() -> None:
    assert flatten_text("abc") == "abc"
    assert flatten_text(["a", {"type": "bold", "text": "b"}, {"type": "weird"}, 5, "c"]) == "abc"
    assert flatten_text(None) == ""
    assert flatten_text({"text": "x"}) == ""


@settings(max_examples=25, deadline=None)
@given(chunk=st.integers(min_value=1, max_value=400))
def test_chunk_size_does_not_change_the_result(chunk: int) -> None:
    expected = list(TelegramExport(MIXED).payloads())
    assert list(TelegramExport(MIXED, chunk_size=chunk).payloads()) == expected


def test_header_after_messages_is_rejected() -> None:
    with pytest.raises(ExportError, match="channel id"):
        list(TelegramExport(EXPORTS / "header_after_messages.json").payloads())


def test_truncated_file_is_rejected() -> None:
    export = TelegramExport(EXPORTS / "truncated.json")
    with pytest.raises(ExportError):
        list(export.payloads())


def test_missing_file_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="cannot read"):
        list(TelegramExport(tmp_path / "nope.json").payloads())


def test_not_an_export(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text('{"about": "", "chats": {"list": []}}', encoding="utf-8")
    with pytest.raises(ExportError, match="no messages"):
        list(TelegramExport(path).payloads())


def test_empty_channel() -> None:
    export = TelegramExport(EXPORTS / "empty_channel.json")
    assert list(export.payloads()) == []
    assert export.channel_id == "-1001900000001"
    assert export.stats.messages == 0


def test_malformed_messages_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(
        json.dumps(
            {
                "name": "C",
                "type": "public_channel",
                "id": 42,
                "messages": [
                    "not an object",
                    {"id": "x", "type": "message", "date_unixtime": "1761334239", "text": "a"},
                    {"id": 3, "type": "message", "text": "no date"},
                    {"id": 4, "type": "message", "date": "2025-10-24T16:30:39", "text": "local date only"},
                ],
            }
        ),
        encoding="utf-8",
    )
    export = TelegramExport(path)
    payloads = list(export.payloads())
    assert [p["messageId"] for p in payloads] == [4]
    assert payloads[0]["timestamp"] == "2025-10-24T16:30:39Z"
    assert payloads[0]["channelId"] == "-10042"
    assert export.stats.skipped["malformed"] == 3


def test_large_export_streams(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    count = 100_000
    with path.open("w", encoding="utf-8") as out:
        out.write('{"name": "Operações | TP Capital", "type": "public_channel", "id": 1649127710, "messages": [')
        for n in range(1, count + 1):
            if n > 1:
                out.write(",")
            text = f"ATIVO: PETR4\nCOMPRA: {n % 50},50 A {n % 50 + 1},00\nALVO 1: 28,00\nSTOP: 24,00"
            out.write(
                json.dumps(
                    {"id": n, "type": "message", "date": "2025-10-24T16:30:39",
                     "date_unixtime": str(1761334239 + n), "text": text},
                    ensure_ascii=False,
                )
            )
        out.write("]}")
    export = TelegramExport(path)
    iterator = export.payloads()
    first = next(iterator)
    # The first payload comes before the file has been read whole.
    assert first["messageId"] == 1
    last_id = 1
    seen = 1
    for payload in iterator:
        assert payload["messageId"] == last_id + 1
        last_id = payload["messageId"]
        seen += 1
    assert seen == count
    assert export.stats.messages == count


def test_bundled_sample_export() -> None:
    export = TelegramExport(bundled_sample_export(), source="replay")
    payloads = list(export.payloads())
    assert export.channel_id == CHANNEL
    assert export.name == "Operações | TP Capital"
    assert 35 <= export.stats.messages <= 45
    texts = [p["text"] for p in payloads]
    assert any("ALVO 1 ATINGIDO ✅" in t for t in texts)
    assert any(p["photos"] and p["text"] for p in payloads)
    assert any(p["kind"] == "edit" for p in payloads)
    assert export.stats.skipped["service"] >= 1
    timestamps = [p["timestamp"] for p in payloads if p["kind"] == "new"]
    assert timestamps == sorted(timestamps)
