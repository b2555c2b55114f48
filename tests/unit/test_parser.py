"""The signal parser against the project's table of messages, plus its number, JSON and CLI rules."""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tradingsystem.tpcapital.cli import signals_app
from tradingsystem.tpcapital.parser import (
    EVENTS,
    NOISE_REASONS,
    SIGNAL_TYPES,
    Noise,
    Signal,
    Update,
    dumps,
    parse_message,
    parse_price,
    to_json_dict,
)

CASES_FILE = Path(__file__).resolve().parents[1] / "data" / "signal_cases.jsonl"


def _load_cases() -> list[dict[str, Any]]:
    with CASES_FILE.open(encoding="utf-8") as fh:
        return [json.loads(line, parse_float=Decimal) for line in fh if line.strip()]


CASES = _load_cases()


def _case_id(index: int, case: dict[str, Any]) -> str:
    text = unicodedata.normalize("NFKD", case["text"]).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "blank"
    return f"{index:03d}-{case['expect']['kind']}-{slug}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(i, c) for i, c in enumerate(CASES)])
def test_case_table(case: dict[str, Any]) -> None:
    result = to_json_dict(parse_message(case["text"]))
    assert result == case["expect"]
    # The JSON text must carry the same numbers, not floats that only look alike.
    assert json.loads(dumps(result), parse_float=Decimal) == case["expect"]


def test_table_covers_every_kind_of_message() -> None:
    expects = [c["expect"] for c in CASES]
    assert len(CASES) >= 120
    assert {e["signal_type"] for e in expects if e["kind"] == "signal"} == set(SIGNAL_TYPES)
    assert {e["event"] for e in expects if e["kind"] == "update"} == set(EVENTS)
    assert {e["reason"] for e in expects if e["kind"] == "noise"} == set(NOISE_REASONS)
    updates = [e for e in expects if e["kind"] == "update"]
    assert any(e["gain_pct"] is None for e in updates)
    assert any(e["gain_pct"] is not None and e["gain_pct"] < 0 for e in updates)
    assert len({c["text"] for c in CASES}) == len(CASES), "duplicate texts in the table"


# ------------------------------------------------------------------------------------------
# Result objects
# ------------------------------------------------------------------------------------------


def test_signal_object_and_its_properties() -> None:
    result = parse_message("Ativo: BOVAW32\nCompra: 1,04 a 1,06\nAlvo 1: 1,15\nAlvo 2: 2,15\nStop: 0,70")
    assert isinstance(result, Signal)
    assert result.kind == "signal"
    assert result == Signal(
        signal_type="Swing Trade",
        asset="BOVAW32",
        buy_min=Decimal("1.04"),
        buy_max=Decimal("1.06"),
        targets=(Decimal("1.15"), Decimal("2.15")),
        target_final=Decimal("2.15"),
        stop=Decimal("0.70"),
    )
    assert result.target_1 == Decimal("1.15")
    assert result.target_2 == Decimal("2.15")


def test_signal_without_targets_has_no_target_properties() -> None:
    result = parse_message("Ativo: GGBR4\nCompra: 18,40\nStop: 17,70")
    assert isinstance(result, Signal)
    assert result.targets == ()
    assert result.target_1 is None
    assert result.target_2 is None
    assert result.target_final is None


def test_update_and_noise_objects() -> None:
    update = parse_message("PETR4 bateu o alvo 2! +8,5%")
    assert update == Update(asset="PETR4", event="target_hit", target=2, gain_pct=Decimal("8.5"))
    assert update.kind == "update"
    noise = parse_message("Bom dia!")
    assert noise == Noise(reason="no_asset")
    assert noise.kind == "noise"


def test_prices_keep_the_decimals_written() -> None:
    result = parse_message("Ativo: PETR4\nCompra: 38,50\nAlvo 1: 40,00\nStop: 37,0")
    assert isinstance(result, Signal)
    assert str(result.buy_min) == "38.50"
    assert str(result.target_1) == "40.00"
    assert str(result.stop) == "37.0"


def test_first_buy_and_first_stop_win() -> None:
    result = parse_message("Ativo: VALE3\nCompra: 61,20\nCompra: 60,00\nAlvo: 63,00\nStop: 59,00\nStop: 58,00")
    assert isinstance(result, Signal)
    assert (result.buy_min, result.buy_max, result.stop) == (Decimal("61.20"), Decimal("61.20"), Decimal("59.00"))


def test_label_asset_wins_over_an_earlier_ticker() -> None:
    result = parse_message("Depois de BOVA11, hoje:\nAtivo: PETR4\nCompra: 38,50\nStop: 37,00")
    assert isinstance(result, Signal)
    assert result.asset == "PETR4"


def test_json_dict_shapes() -> None:
    signal = to_json_dict(parse_message("Ativo: PETR4\nCompra: 38,50\nTP: 39,00\nSL: 38,00"))
    assert list(signal) == [
        "kind",
        "signal_type",
        "asset",
        "buy_min",
        "buy_max",
        "targets",
        "target_1",
        "target_2",
        "target_final",
        "stop",
    ]
    assert isinstance(signal["targets"], list)
    assert all(isinstance(signal[k], Decimal) for k in ("buy_min", "buy_max", "target_1", "stop"))
    update = to_json_dict(parse_message("MGLU3 stopado -4,1%"))
    assert list(update) == ["kind", "asset", "event", "target", "gain_pct"]
    assert to_json_dict(parse_message("")) == {"kind": "noise", "reason": "empty"}


# ------------------------------------------------------------------------------------------
# parse_price
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("1,04", "1.04"),
        ("1.250,50", "1250.50"),
        ("25.50", "25.50"),
        ("0,250", "0.250"),
        ("0.250", "0.250"),
        ("128.450", "128450"),
        ("1.250", "1250"),
        ("999.999", "999999"),
        ("1234.567", "1234.567"),
        ("00.250", "0.250"),
        ("12.5", "12.5"),
        ("12.3456", "12.3456"),
        ("1.234.567", "1234567"),
        ("1.234.567,89", "1234567.89"),
        ("1,234,567", "1234567"),
        ("1,250.50", "1250.50"),
        ("1,250", "1.250"),
        ("42", "42"),
        ("0", "0"),
        ("  38,50 ", "38.50"),
    ],
)
def test_parse_price_reads_both_conventions(token: str, expected: str) -> None:
    value = parse_price(token)
    assert value is not None
    assert value == Decimal(expected)
    assert str(value) == expected


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "abc",
        "1,2,3",
        "1.2.3",
        "1.25,50",
        "1,250.50.1",
        "1.250,50,1",
        "1..2",
        ",5",
        "5,",
        "-1,04",
        "+3",
        "12%",
        "R$ 1,04",
        "١٢",
        "1 000",
    ],
)
def test_parse_price_rejects_what_is_not_a_price(token: str) -> None:
    assert parse_price(token) is None


# ------------------------------------------------------------------------------------------
# dumps
# ------------------------------------------------------------------------------------------


def test_dumps_writes_decimals_exactly() -> None:
    obj = {
        "a": Decimal("1.04"),
        "b": Decimal("128450"),
        "c": Decimal("3.50"),
        "d": Decimal("-12.3"),
        "e": Decimal("1E+3"),
        "f": Decimal("0.00000001"),
    }
    text = dumps(obj)
    assert text == '{"a": 1.04, "b": 128450, "c": 3.50, "d": -12.3, "e": 1000, "f": 0.00000001}'
    assert json.loads(text, parse_float=Decimal) == obj


def test_dumps_other_json_values() -> None:
    obj: dict[str, Any] = {
        "s": 'Operação ✅ "x"\n',
        "n": None,
        "t": True,
        "f": False,
        "i": 7,
        "x": 1.5,
        "l": [1, (2, 3)],
        "o": {},
    }
    text = dumps(obj)
    assert json.loads(text) == {
        "s": 'Operação ✅ "x"\n',
        "n": None,
        "t": True,
        "f": False,
        "i": 7,
        "x": 1.5,
        "l": [1, [2, 3]],
        "o": {},
    }
    assert dumps([]) == "[]"
    assert dumps(True) == "true"


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), float("nan"), float("inf")])
def test_dumps_refuses_numbers_json_cannot_hold(bad: object) -> None:
    with pytest.raises(ValueError):
        dumps({"x": bad})


@pytest.mark.parametrize("bad", [{1: "x"}, {"x": object()}, {"x": {1, 2}}])
def test_dumps_refuses_what_is_not_json(bad: object) -> None:
    with pytest.raises(TypeError):
        dumps(bad)


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_parse_signal_from_stdin() -> None:
    result = runner.invoke(
        signals_app,
        ["parse"],
        input="Ativo: WINZ25\nCompra: 128.450 a 128.600\nAlvo 1: 129.300\nStop: 127.900\n",
    )
    assert result.exit_code == 0
    assert result.stdout == (
        '{"kind": "signal", "signal_type": "Swing Trade", "asset": "WINZ25", "buy_min": 128450, '
        '"buy_max": 128600, "targets": [129300], "target_1": 129300, "target_2": null, '
        '"target_final": 129300, "stop": 127900}\n'
    )


def test_cli_parse_signal_with_decimals() -> None:
    text = (
        "🟢Swing Trade\nAtivo: BOVAW32\nCompra: 1,04 a 1,06\nAlvo 1: 1,15\nAlvo 2: 2,15\nAlvo final: 3,50\nStop: 0,70"
    )
    result = runner.invoke(signals_app, ["parse"], input=text.encode("utf-8"))
    assert result.exit_code == 0
    assert result.stdout == (
        '{"kind": "signal", "signal_type": "Swing Trade", "asset": "BOVAW32", "buy_min": 1.04, '
        '"buy_max": 1.06, "targets": [1.15, 2.15], "target_1": 1.15, "target_2": 2.15, '
        '"target_final": 3.50, "stop": 0.70}\n'
    )


def test_cli_parse_update_and_noise() -> None:
    update = runner.invoke(signals_app, ["parse"], input="STOP ATINGIDO em VALEW591 -12,3%")
    assert update.exit_code == 0
    assert update.stdout == (
        '{"kind": "update", "asset": "VALEW591", "event": "stop_hit", "target": null, "gain_pct": -12.3}\n'
    )
    noise = runner.invoke(signals_app, ["parse"], input="Ativo: PETR4\nCompra: 38,50")
    assert noise.exit_code == 0
    assert noise.stdout == '{"kind": "noise", "reason": "incomplete"}\n'


def test_cli_parse_empty_and_undecodable_input() -> None:
    empty = runner.invoke(signals_app, ["parse"], input="")
    assert empty.exit_code == 0
    assert empty.stdout == '{"kind": "noise", "reason": "empty"}\n'
    broken = runner.invoke(signals_app, ["parse"], input=b"PETR4 \xff\xfe stopado -3%")
    assert broken.exit_code == 0
    assert json.loads(broken.stdout) == {
        "kind": "update",
        "asset": "PETR4",
        "event": "stop_hit",
        "target": None,
        "gain_pct": -3,
    }


def test_cli_parse_text_option() -> None:
    result = runner.invoke(signals_app, ["parse", "--text", "PETR4 bateu o alvo 2! +8,5%"])
    assert result.exit_code == 0
    assert result.stdout == (
        '{"kind": "update", "asset": "PETR4", "event": "target_hit", "target": 2, "gain_pct": 8.5}\n'
    )


def test_cli_help() -> None:
    group = runner.invoke(signals_app, ["--help"])
    assert group.exit_code == 0
    assert "parse" in group.stdout
    command = runner.invoke(signals_app, ["parse", "--help"])
    assert command.exit_code == 0
    for word in ("signal_type", "target_hit", "incomplete", "--text"):
        assert word in command.stdout
