"""The level an update quotes, which tells two open trades of one asset apart; never a gain or a ticker's digits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradingsystem.tpcapital.parser import Update, parse_message, to_json_dict
from tradingsystem.tpcapital.service import parse_text


@pytest.mark.parametrize(("text", "price"), [
    ("Atenção: PETR4 atingiu o alvo 1 (28,00) ✅ +8,94%. Subam o stop para o preço de entrada.", "28.00"),
    ("PETR4 bateu o alvo 2 em 30.00", "30.00"),
    ("WINFUT1 stop atingido em 1.240,00", "1240.00"),
    ("VALE3 ALVO 1 ATINGIDO (63)", "63"),
    ("BBAS3 alvo 1 atingido a R$ 28", "28"),
    ("BOVAW32 ALVO 1 ATINGIDO ✅ +9,61%", None),
    ("KLBNK177 ALVO ATINGIDO ✅ +23,07% 🚀", None),
    ("WINFUT1 STOPADO ❌ -0,80%. Faz parte, seguimos o plano.", None),
    ("BOVAW32 ALVO 2 ATINGIDO", None),
])
def test_quoted_price(text: str, price: str | None) -> None:
    result = parse_message(text)
    assert isinstance(result, Update)
    assert result.price == (None if price is None else Decimal(price))


def test_the_price_is_stored_but_not_part_of_the_parse_contract() -> None:
    text = "PETR4 atingiu o alvo 1 (28,00) ✅ +8,94%"
    assert "price" not in to_json_dict(parse_message(text))  # `signals parse` prints the contract's fields only
    assert parse_text(text) == {"kind": "update", "asset": "PETR4", "event": "target_hit", "target": 1,
                                "gain_pct": "8.94", "price": "28.00"}
