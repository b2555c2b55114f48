"""Properties of the signal parser: no text makes it raise, and every result keeps its invariants."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradingsystem.tpcapital.parser import (
    EVENTS,
    NOISE_REASONS,
    SIGNAL_TYPES,
    Noise,
    ParseResult,
    Signal,
    Update,
    dumps,
    parse_message,
    parse_price,
    to_json_dict,
)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces of the channel's messages: labels, separators, numbers in both conventions, tickers,
# update phrases, dates, percentages, emoji and noise, glued together in any order.
LABELS = [
    "Ativo", "ATIVO", "Papel", "Ticker", "Asset", "Compra", "COMPRA DE", "Entrada", "Buy", "Entry",
    "Alvo", "Alvo 1", "ALVO 2", "Alvo final", "Alvo geral", "Alvos", "TP", "TP1", "TP 2", "TP final",
    "Target 1", "Meta 1", "1º Alvo", "Stop", "STOP LOSS", "SL", "Stop gain", "DATA", "CANAL", "TIPO",
]  # fmt: skip
SEPARATORS = [":", ": ", " ", " = ", " - ", "\n", "\r\n", "", "\t"]
JOINERS = [" a ", " à ", " até ", "-", " – ", "/", " e ", " to ", " A "]
WORDS = [
    "PETR4", "BOVAW32", "WINZ25", "WINFUT1", "bova11", "KLBNK177", "alvo1", "Swing Trade", "Day Trade",
    "Scalping", "POSITION", "ATINGIDO", "bateu o alvo", "stopado", "STOP ATINGIDO", "operação encerrada",
    "zerar posição", "sinal cancelado", "cancelled", "hit", "reached", "✅", "🎯", "🟢", "⚡️", "R$",
    "28/10", "07/10/2025 17:25:59", "às 10:30", "https://t.me/x", "Bom dia", "%", "+", "-", "(", ")",
    "primeiro", "segundo alvo", "prejuízo", "lucro de",
]  # fmt: skip

numbers = st.one_of(
    st.from_regex(r"[0-9]{1,6}", fullmatch=True),
    st.from_regex(r"[0-9]{1,3}[.,][0-9]{1,4}", fullmatch=True),
    st.from_regex(r"[0-9]{1,3}(\.[0-9]{3}){1,3},[0-9]{1,2}", fullmatch=True),
    st.from_regex(r"[0-9]{1,3}(,[0-9]{3}){1,3}\.[0-9]{1,2}", fullmatch=True),
    st.from_regex(r"[+-]?[0-9]{1,3},[0-9]{1,2}%", fullmatch=True),
)
fragments = st.one_of(
    st.sampled_from(LABELS),
    st.sampled_from(SEPARATORS),
    st.sampled_from(JOINERS),
    st.sampled_from(WORDS),
    numbers,
    st.text(max_size=6),
)
signal_like = st.lists(fragments, max_size=40).map("".join)


def check_invariants(result: ParseResult) -> None:
    assert result.kind in ("signal", "update", "noise")
    if isinstance(result, Signal):
        assert result.signal_type in SIGNAL_TYPES
        assert result.asset
        assert result.asset == result.asset.upper()
        assert result.asset.isascii() and result.asset.isalnum()
        assert result.buy_min <= result.buy_max
        assert result.buy_min >= 0
        assert result.target_final is not None or result.stop is not None
        assert result.target_1 == (result.targets[0] if result.targets else None)
        for price in (*result.targets, result.target_final, result.stop):
            assert price is None or (isinstance(price, Decimal) and price.is_finite() and price >= 0)
    elif isinstance(result, Update):
        assert result.event in EVENTS
        assert result.asset
        assert result.asset == result.asset.upper()
        assert result.asset.isascii() and result.asset.isalnum()
        if result.event != "target_hit":
            assert result.target is None
        assert result.target is None or result.target >= 0
        assert result.gain_pct is None or result.gain_pct.is_finite()
    else:
        assert isinstance(result, Noise)
        assert result.reason in NOISE_REASONS
    data = to_json_dict(result)
    assert data["kind"] == result.kind
    text = dumps(data)
    assert json.loads(text, parse_float=Decimal) == data


@SETTINGS
@given(st.text())
def test_arbitrary_unicode_never_raises(text: str) -> None:
    check_invariants(parse_message(text))


@SETTINGS
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
    | st.binary().map(lambda b: b.decode("utf-8", errors="surrogateescape"))
)
def test_unusual_code_points_never_raise(text: str) -> None:
    check_invariants(parse_message(text))


@SETTINGS
@given(signal_like)
def test_signal_like_text_never_raises(text: str) -> None:
    check_invariants(parse_message(text))


@SETTINGS
@given(
    asset=st.from_regex(r"[A-Z]{4}[0-9]{1,2}", fullmatch=True),
    low=st.decimals(min_value=0, max_value=999, places=2),
    high=st.decimals(min_value=0, max_value=999, places=2),
    target=st.decimals(min_value=0, max_value=999, places=2),
    stop=st.decimals(min_value=0, max_value=999, places=2),
    joiner=st.sampled_from(JOINERS),
    noise=st.sampled_from(["", "🟢 ", "Swing Trade\n", "DATA 07/10/2025 17:25:59\n"]),
)
def test_well_formed_signal_reads_back(
    asset: str, low: Decimal, high: Decimal, target: Decimal, stop: Decimal, joiner: str, noise: str
) -> None:
    def br(value: Decimal) -> str:
        return f"{value:.2f}".replace(".", ",")

    text = f"{noise}Ativo: {asset}\nCompra: {br(low)}{joiner}{br(high)}\nAlvo 1: {br(target)}\nStop: {br(stop)}"
    result = parse_message(text)
    assert isinstance(result, Signal), text
    assert result.asset == asset
    assert (result.buy_min, result.buy_max) == (min(low, high), max(low, high))
    assert result.targets == (target,)
    assert result.target_final == target
    assert result.stop == stop
    check_invariants(result)


@SETTINGS
@given(st.text(max_size=30))
def test_parse_price_never_raises(token: str) -> None:
    value = parse_price(token)
    assert value is None or (value.is_finite() and value >= 0)


@SETTINGS
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_dumps_round_trips_any_finite_decimal(value: Decimal) -> None:
    assert json.loads(dumps({"v": value}), parse_float=Decimal, parse_int=Decimal) == {"v": value}
