"""Turn the text of one Telegram message into a trade signal, a follow-up update, or noise."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal

__all__ = [
    "EVENTS",
    "NOISE_REASONS",
    "SIGNAL_TYPES",
    "Noise",
    "ParseResult",
    "Signal",
    "Update",
    "dumps",
    "parse_message",
    "parse_price",
    "to_json_dict",
]

SIGNAL_TYPES = ("Swing Trade", "Day Trade", "Scalping", "Position")
EVENTS = ("target_hit", "stop_hit", "closed", "cancelled")
# empty: nothing to read; incomplete: some signal fields but not enough for a signal;
# no_asset: no ticker named anywhere; no_price: a ticker but neither prices nor an event.
NOISE_REASONS = ("empty", "incomplete", "no_asset", "no_price")
DEFAULT_SIGNAL_TYPE = "Swing Trade"


@dataclass(frozen=True, slots=True)
class Signal:
    """A trade signal: what to buy, where, and where to leave."""

    kind: ClassVar[Literal["signal"]] = "signal"
    signal_type: str
    asset: str
    buy_min: Decimal
    buy_max: Decimal
    targets: tuple[Decimal, ...]
    target_final: Decimal | None
    stop: Decimal | None

    @property
    def target_1(self) -> Decimal | None:
        return self.targets[0] if self.targets else None

    @property
    def target_2(self) -> Decimal | None:
        return self.targets[1] if len(self.targets) > 1 else None


@dataclass(frozen=True, slots=True)
class Update:
    """A follow-up on an earlier signal: a target or the stop was hit, or it was closed or cancelled."""

    kind: ClassVar[Literal["update"]] = "update"
    asset: str
    event: str
    target: int | None
    gain_pct: Decimal | None
    # The level the message quotes ("atingiu o alvo 1 (28,00)"): it tells which of two open trades is meant.
    price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Noise:
    """Anything that is neither a signal nor an update, with the reason it was not."""

    kind: ClassVar[Literal["noise"]] = "noise"
    reason: str


ParseResult = Signal | Update | Noise

# Every pattern runs on folded text (ASCII, lower case), so re.ASCII keeps \d, \w and \b
# from matching digits and letters of other scripts.
_A = re.ASCII

# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------

_NUMBER_TOKEN = re.compile(r"[0-9]+(?:[.,][0-9]+)*", _A)


def _thousands(groups: list[str]) -> str | None:
    """Join digit groups written with a thousands separator, or None if they are not such groups."""
    if not 1 <= len(groups[0]) <= 3:
        return None
    for group in groups[1:]:
        if len(group) != 3:
            return None
    return "".join(groups)


def parse_price(token: str) -> Decimal | None:
    """Read a price written the Brazilian or the English way; None if the token is not a number.

    `1,04` -> 1.04, `1.250,50` -> 1250.50, `25.50` -> 25.50, `0,250` -> 0.250, `0.250` -> 0.250,
    `128.450` -> 128450 (a lone dot followed by exactly three digits after a non-zero integer part of
    at most three digits is a thousands separator). The digits after the decimal separator are kept
    as written, so a price never loses its decimals.
    """
    s = token.strip()
    if not s or _NUMBER_TOKEN.fullmatch(s) is None:
        return None
    return _price(s)


def _price(s: str) -> Decimal | None:
    """`parse_price` for a token already known to be digits with `.`/`,` between them."""
    if "," in s:
        if "." in s:
            last = max(s.rfind("."), s.rfind(","))
            decimal_sep = s[last]
            if s.count(decimal_sep) != 1:
                return None
            whole = _thousands(s[:last].split("," if decimal_sep == "." else "."))
            return None if whole is None else Decimal(f"{whole}.{s[last + 1 :]}")
        if s.count(",") == 1:
            return Decimal(s.replace(",", "."))
        whole = _thousands(s.split(","))
        return None if whole is None else Decimal(whole)
    dots = s.count(".")
    if dots == 1:
        whole, frac = s.split(".")
        if len(frac) == 3 and len(whole) <= 3 and whole.strip("0"):
            return Decimal(whole + frac)
        return Decimal(s)
    if dots:
        whole = _thousands(s.split("."))
        return None if whole is None else Decimal(whole)
    return Decimal(s)


# ---------------------------------------------------------------------------------------------
# Text folding: accents off, emoji out, dashes unified, lower case
# ---------------------------------------------------------------------------------------------

_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")
_LINE_BREAKS = frozenset("\u0085\u2028\u2029")
# The channel marks a target reached with a check mark ("Alvo 2 ✅"); it reads as the word "ok".
_CHECK_MARKS = frozenset("\u2705\u2714\u2611\u2713")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_RUN_CACHE: dict[str, str] = {}
_RUN_CACHE_MAX = 4096


def _fold_run(match: re.Match[str]) -> str:
    """Replace a run of non-ASCII characters left after NFKD.

    Combining accents vanish (`ç` was split into `c` and a cedilla); dashes become `-`; check marks
    become the word `ok`; anything else
    (emoji, symbols, other scripts) becomes a space, so that `PETR4🚀ALVO` stays two words.
    """
    run = match.group()
    folded = _RUN_CACHE.get(run)
    if folded is None:
        parts = []
        for char in run:
            if unicodedata.combining(char):
                continue
            if char in _DASHES:
                parts.append("-")
            elif char in _LINE_BREAKS:
                parts.append("\n")
            elif char in _CHECK_MARKS:
                parts.append(" ok ")
            elif not parts or parts[-1] != " ":
                parts.append(" ")
        folded = "".join(parts)
        if len(_RUN_CACHE) < _RUN_CACHE_MAX:
            _RUN_CACHE[run] = folded
    return folded


def _fold(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = _NON_ASCII.sub(_fold_run, unicodedata.normalize("NFKD", text))
    return text.lower()


# Dates and clock times look like numbers (`28/10`, `07/10/2025 17:25:59`); they are blanked out
# before any price is read. A bare `10/11` counts as a date, never as a buy range.
_DATES = re.compile(
    r"""
    (?<![\w.,/])[0-9]{1,2}/[0-9]{1,2}(?:/[0-9]{2,4})?
        (?:[ \t]+(?:as[ \t]+|-[ \t]*)?[0-9]{1,2}(?::[0-9]{2}){1,2}(?:[ \t]*h)?)?(?![\w/]|[.,][0-9])
    | (?<![\w.,])[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[t ][0-9]{2}:[0-9]{2}(?::[0-9]{2})?z?)?(?![\w]|[.,][0-9])
    | (?<![\w.,:])[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?![\w:]|[.,][0-9])
    | \b(?:as|at)[ \t]+[0-9]{1,2}(?:[:h][0-9]{2}(?:[ \t]*h)?|[ \t]*h)(?![\w:]|[.,][0-9])
    | (?<![\w.,:])[0-9]{1,2}h[0-9]{2}(?![\w:]|[.,][0-9])
    """,
    _A | re.VERBOSE,
)


# A cheap test that spares most messages the full date scan.
_DATE_HINT = re.compile(r"[0-9](?:/|:[0-9]|h[0-9]|-[0-9]{2}-)", _A)


def _blank(match: re.Match[str]) -> str:
    return " " * (match.end() - match.start())


# ---------------------------------------------------------------------------------------------
# Signal fields
# ---------------------------------------------------------------------------------------------

_LABELS = re.compile(
    # The look-ahead on the first letter lets the engine skip most positions quickly.
    r"""
    (?=[abcefmpst])\b(?:
        (?P<asset>ativo|papel|ticker|asset|acao)
      | (?P<buy>compra|comprar|entrada|buy|entry)
      | (?P<final>(?:alvo|tp|target|meta)[ \t]*(?:final|geral|maximo|max|longo)|final[ \t]+target)
      | (?P<targets>alvos|targets|tps|metas)
      | (?P<target>alvo|tp|target|meta)
      | (?P<stop>stop[ \t-]*loss|stop|sl)
    )(?![a-z])
    """,
    _A | re.VERBOSE,
)

# A price never carries a sign and is never a percentage; the possessive quantifiers stop the
# engine from backing into the middle of `15,5%` to find `15`.
_PRICE = r"(?:r\$|us\$|\$)?[ \t]*(?P<{name}>[0-9]++(?:[.,][0-9]++)*+)(?![ \t]*%)"
# Between a label and its value: an optional linking word, a separator, and at most one line break.
_CONNECT = r"(?:de|em|no|na|entre|between|at|of|acima[ \t]+de|abaixo[ \t]+de|ate|zona|regiao|faixa|price|zone|range)"
_GAP = rf"(?:[ \t]+{_CONNECT}(?![a-z]))?[ \t]*[:=-]?[ \t]*(?:{_CONNECT}[ \t]+)?(?:\n[ \t]*)?"
_JOIN = r"[ \t]*(?:-|/|(?:a|ate|e|to|and)(?![a-z]))[ \t]*"

_ASSET_VALUE = re.compile(r"[ \t]*(?P<sep>[:=-])?[ \t]*(?:\n[ \t]*)?\$?(?P<tok>[a-z][a-z0-9]{1,11})(?![a-z0-9])", _A)
_BUY_VALUE = re.compile(_GAP + _PRICE.format(name="low") + rf"(?:{_JOIN}{_PRICE.format(name='high')})?", _A)
_VALUE = re.compile(_GAP + _PRICE.format(name="v"), _A)
_NUMBERED_VALUE = re.compile(
    r"[ \t]*(?P<n>[0-9]{1,2})(?:o|st|nd|rd|th)?(?![a-z0-9]|[.,][0-9])[ \t]*(?:\([^)\n]{0,40}\)[ \t]*)?"
    + _GAP
    + _PRICE.format(name="v"),
    _A,
)
_INDEX_ONLY = re.compile(r"[ \t]*(?P<n>[0-9]{1,2})(?![a-z0-9]|[.,][0-9])(?P<eol>[ \t]*(?:\n|$))?", _A)
_LIST_JOIN = re.compile(r"[ \t]*(?:[-/;|]|,[ \t]|(?:e|and)(?![a-z]))[ \t]*", _A)
_LIST_ITEM = re.compile(_PRICE.format(name="v"), _A)
_ORDINAL_BEFORE = re.compile(r"(?<![\w.,])(?P<n>[0-9]{1,2})(?:o|st|nd|rd|th)[ \t]+$", _A)

_TICKER = re.compile(r"\b(?P<tok>[a-z]{4}[a-z]{0,4}[0-9][a-z0-9]{0,5})(?![a-z0-9])", _A)
# Words that look like a ticker when a digit is glued to them (`alvo1`, `target2`).
_NOT_TICKERS = frozenset(
    {"alvo", "alvos", "target", "targets", "stop", "meta", "metas", "compra", "entrada", "entry", "parcial"}
)
_LABEL_WORDS = frozenset(
    {
        "ativo", "papel", "ticker", "asset", "acao", "compra", "comprar", "entrada", "buy", "entry",
        "alvo", "alvos", "tp", "target", "targets", "meta", "stop", "sl", "de", "em", "no", "na",
    }
)  # fmt: skip

_SIGNAL_TYPE = re.compile(
    r"""
    \b(?:
        (?P<swing>swing(?:[ \t-]*trade)?)
      | (?P<day>day[ \t-]*trade|daytrade)
      | (?P<scalp>scalp(?:ing|er)?)
      | (?P<position>position(?:[ \t-]*trade)?)
    )\b
    """,
    _A | re.VERBOSE,
)
_SIGNAL_TYPE_NAMES = {"swing": "Swing Trade", "day": "Day Trade", "scalp": "Scalping", "position": "Position"}

# ---------------------------------------------------------------------------------------------
# Update phrases
# ---------------------------------------------------------------------------------------------

_TGT = r"(?:alvo|tp|target|meta|objetivo)"
_HIT = (
    r"(?:atingid[oa]|alcancad[oa]|batid[oa]|conquistad[oa]|realizad[oa]|hit|reached|achieved|done|"
    r"smashed|touched|ok)(?![a-z])"
)
_ORD = r"(?:primeiro|segundo|terceiro|quarto|quinto|first|second|third|fourth|fifth)"
_ORDINAL_WORDS = {
    "primeiro": 1, "segundo": 2, "terceiro": 3, "quarto": 4, "quinto": 5,
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
}  # fmt: skip
_WAS = r"(?:(?:foi|was|has[ \t]+been|is|been|ja)[ \t]+)?"
# "o stop do PETR4 foi atingido", "alvo 1 de BBAS3 atingido"
_OF_ASSET = r"(?:[ \t]+(?:do|da|de|em|no|na|on|of|for)[ \t]+[a-z][a-z0-9]{1,11})?"
# A verb that closes a position counts only with its object: "zerar posição", "encerrar PETR4",
# never "encerrar o dia".
_POSITION = (
    r"(?:(?:a|o|de|da|do|em|na|no|sua|nossa|the)[ \t]+)?"
    r"(?:posicao|posicoes|operacao|operacoes|trade|position|[a-z]{4}[a-z0-9]{0,7}[0-9])(?![a-z0-9])"
)

_EVENT = re.compile(
    # The look-ahead lists the first characters of every phrase, so most positions are skipped fast.
    rf"""
    (?=[0-9abcdefhilmopqrstz])\b(?:
      # "ALVO 1 ATINGIDO", "alvo final atingido", "TP1 hit", "target 2 reached"
        (?P<t1>{_TGT}[ \t]*(?P<t1_n>[0-9]{{1,2}})?(?:o(?![a-z]))?[ \t]*(?P<t1_fin>final|geral)?[ \t]*
            (?:\([^)\n]{{0,30}}\)[ \t]*)?{_OF_ASSET}[ \t]*[:!-]?[ \t]*{_WAS}{_HIT})
      # "1o alvo atingido", "segundo alvo batido"
      | (?P<t2>(?:(?P<t2_n>[0-9])o|(?P<t2_ord>{_ORD}))[ \t]+{_TGT}[ \t]+{_WAS}{_HIT})
      # "bateu o alvo 2", "atingiu o primeiro alvo", "hit TP1", "reached target 2", "bateu o alvo final"
      | (?P<t3>(?:bateu|bate|batemos|bateram|atingiu|atingimos|atingiram|alcancou|alcancamos|alcancaram|
                 buscou|hit|hits|reached|reaches|touched)[ \t]+
            (?:(?:o|no|ao|a|the|our|its)[ \t]+)?
            (?:(?P<t3_n1>[0-9])o[ \t]+|(?P<t3_ord>{_ORD})[ \t]+)?
            {_TGT}(?:[ \t]*(?P<t3_n2>[0-9]{{1,2}})(?![0-9])|[ \t]+(?P<t3_fin>final|geral))?)
      # "STOP ATINGIDO", "stop loss acionado", "SL hit"
      | (?P<s1>(?:stop|sl)(?:[ \t-]*loss)?{_OF_ASSET}[ \t]+{_WAS}
            (?:atingid[oa]|acionad[oa]|executad[oa]|batid[oa]|hit|triggered|reached|taken)(?![a-z]))
      # "stopado", "stopou", "stopped out"
      | (?P<s2>stop(?:ad[oa]s?|ou|amos|aram|ei)|stopp?ed(?:[ \t]+out)?)(?![a-z])
      # "bateu no stop", "tomamos stop", "hit the stop"
      | (?P<s3>(?:bateu|bate|batemos|atingiu|acionou|acionado|tomou|tomamos|tomei|tomaram|levou|
                 pegou|hit|triggered)[ \t]+(?:(?:o|no|the|our|a|um)[ \t]+)?(?:stop|sl)(?![a-z])
            (?![ \t]*gain))
      # "Operação em BBDC4 encerrada", "posição zerada", "trade closed"
      | (?P<c1>(?:operacao|posicao|trade|position|sinal|signal)(?![a-z])[^\n.!?]{{0,40}}?
            (?:encerrad[oa]|finalizad[oa]|fechad[oa]|concluid[oa]|zerad[oa]|liquidad[oa]|closed|
               finished)(?![a-z]))
      # "zerar posição", "encerramos", "stop gain atingido", "realizar lucro", "take profit"
      | (?P<c2>(?:encerrad[oa]|finalizad[oa]|zerad[oa]|
                 (?:encerr(?:ar|amos|ando|emos|ei|ou|e)|finaliz(?:ar|amos|ando|ou|e)|
                    zer(?:ar|ando|amos|ou|em|e)|fech(?:ar|amos|ando|ou|e|em))[ \t]+{_POSITION}|
                 saida[ \t]+total|sair[ \t]+(?:da|de)[ \t]+(?:posicao|operacao)|
                 realiz(?:ar|amos|ando|ou|e)[ \t]+(?:o[ \t]+)?lucro|
                 close[ \t]+(?:the[ \t]+)?(?:position|trade)|closed|exit(?:ed)?[ \t]+(?:the[ \t]+)?
                 (?:position|trade)|take[ \t]+profit|
                 stop[ \t]+gain[ \t]+{_WAS}(?:atingid[oa]|acionad[oa]|executad[oa]|hit))(?![a-z]))
      # "sinal cancelado", "cancelamos", "desconsiderar"
      | (?P<x1>(?:cancelad[oa]s?|cancel(?:ar|amos|ando|ei|ou|e|ed|led|lado)|invalidad[oa]s?|
                 anulad[oa]s?|desconsider(?:ar|em|ado|ada|e))(?![a-z]))
    )
    """,
    _A | re.VERBOSE,
)
_EVENT_OF_GROUP = {
    "t1": "target_hit", "t2": "target_hit", "t3": "target_hit",
    "s1": "stop_hit", "s2": "stop_hit", "s3": "stop_hit",
    "c1": "closed", "c2": "closed",
    "x1": "cancelled",
}  # fmt: skip

_PERCENT = re.compile(r"(?P<sign>\+[ \t]*|(?<![\w.,+-])-)?(?<![\w.,])(?P<num>[0-9]++(?:[.,][0-9]++)*+)[ \t]*%", _A)
# A quoted level: a number with decimals, or any number in parentheses or after "R$", "@" or "preco". Never part
# of a word (a ticker's digits) and never a percentage.
_QUOTED_PRICE = re.compile(
    r"(?:(?<![a-z0-9.,])(?P<dec>[0-9]+(?:[.,][0-9]+)+)|(?:\([ \t]*|r\$[ \t]*|@[ \t]*|(?:preco|price)[ \t]*:?[ \t]*)"
    r"(?P<int>[0-9]+(?:[.,][0-9]+)*))(?![0-9a-z]|[.,][0-9]|[ \t]*%)",
    _A,
)
_LOSS_WORDS = re.compile(r"\b(?:prejuizo|perda|loss|negativ[oa])\b", _A)
_ALNUM = re.compile(r"[a-z0-9]", _A)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _number_of_target(t: str, start: int) -> int | None:
    """The index of a target written before its label, as in `1º Alvo: 1,15`."""
    m = _ORDINAL_BEFORE.search(t, max(0, start - 8), start)
    return int(m.group("n")) if m else None


def _read_list(t: str, pos: int) -> tuple[list[Decimal], bool]:
    """Read `Alvos: 1,15 / 1,30 / 1,50` from just after the label."""
    first = _VALUE.match(t, pos)
    if first is None:
        return [], False
    values: list[Decimal] = []
    price = _price(first.group("v"))
    if price is not None:
        values.append(price)
    pos = first.end()
    while True:
        join = _LIST_JOIN.match(t, pos)
        if join is None:
            break
        item = _LIST_ITEM.match(t, join.end())
        if item is None:
            break
        price = _price(item.group("v"))
        if price is not None:
            values.append(price)
        pos = item.end()
    return values, True


@dataclass(slots=True)
class _Fields:
    asset: str | None = None
    buy: tuple[Decimal, Decimal] | None = None
    numbered: list[tuple[int, int, Decimal]] | None = None
    unnumbered: list[Decimal] | None = None
    target_final: Decimal | None = None
    stop: Decimal | None = None

    def has_prices(self) -> bool:
        return bool(
            self.buy or self.numbered or self.unnumbered or self.target_final is not None or self.stop is not None
        )


def _read_fields(t: str) -> _Fields:
    f = _Fields()
    for label in _LABELS.finditer(t):
        kind = label.lastgroup
        end = label.end()
        if kind == "asset":
            if f.asset is None:
                m = _ASSET_VALUE.match(t, end)
                if m is not None:
                    tok = m.group("tok")
                    if _TICKER.fullmatch(tok) is not None:
                        f.asset = tok.upper()
                    elif m.group("sep") and tok not in _LABEL_WORDS:
                        # "Ativo: Petrobras (PETR4)": a ticker later on the line beats the name.
                        line_end = t.find("\n", m.end())
                        ticker = _first_ticker(t[m.end() : line_end if line_end >= 0 else len(t)])
                        f.asset = ticker or tok.upper()
        elif kind == "buy":
            if f.buy is None:
                m = _BUY_VALUE.match(t, end)
                if m is not None:
                    low = _price(m.group("low"))
                    high_token = m.group("high")
                    high = _price(high_token) if high_token else low
                    if low is not None and high is not None:
                        f.buy = (low, high) if low <= high else (high, low)
        elif kind == "target":
            m = _NUMBERED_VALUE.match(t, end)
            if m is not None:
                price = _price(m.group("v"))
                if price is not None:
                    if f.numbered is None:
                        f.numbered = []
                    f.numbered.append((int(m.group("n")), label.start(), price))
                continue
            index = _INDEX_ONLY.match(t, end)
            if index is not None and not index.group("eol"):
                # "Alvo 1 atingido": a number with no price after it is the target's index.
                continue
            m = _VALUE.match(t, end)
            if m is not None:
                price = _price(m.group("v"))
                if price is not None:
                    before = _number_of_target(t, label.start())
                    if before is not None:
                        if f.numbered is None:
                            f.numbered = []
                        f.numbered.append((before, label.start(), price))
                    else:
                        if f.unnumbered is None:
                            f.unnumbered = []
                        f.unnumbered.append(price)
        elif kind == "targets":
            values, _ = _read_list(t, end)
            if values:
                if f.unnumbered is None:
                    f.unnumbered = []
                f.unnumbered.extend(values)
        elif kind == "final":
            if f.target_final is None:
                m = _VALUE.match(t, end)
                if m is not None:
                    f.target_final = _price(m.group("v"))
        elif f.stop is None:  # stop
            m = _VALUE.match(t, end)
            if m is not None:
                f.stop = _price(m.group("v"))
    return f


def _targets(f: _Fields) -> tuple[Decimal, ...]:
    ordered: list[Decimal] = []
    if f.numbered:
        seen: set[int] = set()
        for n, _, price in sorted(f.numbered, key=lambda item: (item[0], item[1])):
            if n not in seen:
                seen.add(n)
                ordered.append(price)
    if f.unnumbered:
        ordered.extend(f.unnumbered)
    return tuple(ordered)


def _first_ticker(t: str) -> str | None:
    for m in _TICKER.finditer(t):
        tok = m.group("tok")
        letters = tok.rstrip("0123456789")
        if tok[:4] not in _NOT_TICKERS and letters not in _NOT_TICKERS:
            return tok.upper()
    return None


def _signal_type(t: str) -> str:
    if not ("swing" in t or "day" in t or "scalp" in t or "position" in t):
        return DEFAULT_SIGNAL_TYPE
    m = _SIGNAL_TYPE.search(t)
    if m is None or m.lastgroup is None:
        return DEFAULT_SIGNAL_TYPE
    return _SIGNAL_TYPE_NAMES[m.lastgroup]


def _gain_pct(t: str) -> Decimal | None:
    if "%" not in t:
        return None
    unsigned: re.Match[str] | None = None
    for m in _PERCENT.finditer(t):
        if m.group("sign"):
            value = _price(m.group("num"))
            if value is None:
                continue
            return -value if m.group("sign") == "-" else value
        if unsigned is None:
            unsigned = m
    if unsigned is None:
        return None
    value = _price(unsigned.group("num"))
    if value is None:
        return None
    if _LOSS_WORDS.search(t, max(0, unsigned.start() - 30), unsigned.start()):
        return -value
    return value


def _quoted_price(t: str) -> Decimal | None:
    for m in _QUOTED_PRICE.finditer(t):
        value = _price(m.group("dec") or m.group("int"))
        if value is not None:
            return value
    return None


def _event(t: str) -> tuple[str, int | None] | None:
    m = _EVENT.search(t)
    if m is None:
        return None
    group = next(name for name in _EVENT_OF_GROUP if m.group(name) is not None)
    event = _EVENT_OF_GROUP[group]
    target: int | None = None
    if event == "target_hit":
        digits = m.group("t1_n") or m.group("t2_n") or m.group("t3_n1") or m.group("t3_n2")
        word = m.group("t2_ord") or m.group("t3_ord")
        final = m.group("t1_fin") or m.group("t3_fin")
        if final:
            target = None
        elif digits:
            target = int(digits)
        elif word:
            target = _ORDINAL_WORDS[word]
    return event, target


def parse_message(text: str) -> ParseResult:
    """Classify one message; never raises, whatever the text."""
    t = _fold(text)
    if _ALNUM.search(t) is None:
        return Noise("empty")
    if _DATE_HINT.search(t) is not None or "as " in t or "at " in t:
        t = _DATES.sub(_blank, t)
    f = _read_fields(t)
    asset = f.asset or _first_ticker(t)
    targets = _targets(f)
    final = f.target_final if f.target_final is not None else (targets[-1] if targets else None)
    if asset is not None and f.buy is not None and (final is not None or f.stop is not None):
        return Signal(
            signal_type=_signal_type(t),
            asset=asset,
            buy_min=f.buy[0],
            buy_max=f.buy[1],
            targets=targets,
            target_final=final,
            stop=f.stop,
        )
    event = _event(t)
    if event is not None and asset is not None:
        return Update(asset=asset, event=event[0], target=event[1], gain_pct=_gain_pct(t), price=_quoted_price(t))
    if f.has_prices():
        return Noise("incomplete")
    if asset is None:
        return Noise("no_asset")
    return Noise("no_price")


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def to_json_dict(result: ParseResult) -> dict[str, Any]:
    """The contract's JSON shape of a result; prices stay Decimal (see `dumps`)."""
    if isinstance(result, Signal):
        return {
            "kind": "signal",
            "signal_type": result.signal_type,
            "asset": result.asset,
            "buy_min": result.buy_min,
            "buy_max": result.buy_max,
            "targets": list(result.targets),
            "target_1": result.target_1,
            "target_2": result.target_2,
            "target_final": result.target_final,
            "stop": result.stop,
        }
    if isinstance(result, Update):
        return {
            "kind": "update",
            "asset": result.asset,
            "event": result.event,
            "target": result.target,
            "gain_pct": result.gain_pct,
        }
    return {"kind": "noise", "reason": result.reason}


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -64 <= exponent <= 64:
        return format(value, "f")
    # Positional notation of 1E+100000 would be a hundred thousand digits; JSON accepts the exponent.
    return str(value)


def _write(obj: Any, out: list[str]) -> None:
    # Checked before int and float: bool is an int, and Decimal must not pass through float.
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, Decimal):
        out.append(_decimal_text(obj))
    elif isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=False))
    elif isinstance(obj, int | float):
        out.append(json.dumps(obj, allow_nan=False))
    elif isinstance(obj, Mapping):
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {type(key).__name__}")
            if i:
                out.append(", ")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(": ")
            _write(value, out)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(", ")
            _write(value, out)
        out.append("]")
    else:
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any) -> str:
    """JSON text in which a Decimal is a number written exactly as it is (`1.04`, `128450`)."""
    out: list[str] = []
    _write(obj, out)
    return "".join(out)
