"""`tradingsystem signals …`: the signal parser on the command line."""

from __future__ import annotations

import sys

import typer

from tradingsystem.tpcapital.parser import dumps, parse_message, to_json_dict

signals_app = typer.Typer(
    help=(
        "Read TP Capital messages the way the API does: trade signals, follow-up updates "
        "(target or stop hit, closed, cancelled) and noise."
    ),
    no_args_is_help=True,
    add_completion=False,
)


@signals_app.callback()
def signals() -> None:
    """Read TP Capital messages the way the API does."""


def _read_stdin() -> str:
    # Bytes, not the text stream: the message is UTF-8 whatever the terminal's locale says.
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data.decode("utf-8", errors="replace")
    return sys.stdin.read()


@signals_app.command(
    "parse",
    epilog=(
        "Examples:\n\n"
        "  printf 'Ativo: PETR4\\nCompra: 38,50\\nAlvo 1: 40,00\\nStop: 37,00' | tradingsystem signals parse\n\n"
        "  tradingsystem signals parse --text 'PETR4 bateu o alvo 2! +8,5%'"
    ),
)
def parse(
    text: str | None = typer.Option(
        None,
        "--text",
        "-t",
        help="The message to parse. Without it the message is read from standard input (UTF-8).",
    ),
) -> None:
    """Parse one message and print one JSON object on standard output.

    Signal: kind, signal_type, asset, buy_min, buy_max, targets, target_1, target_2, target_final, stop.

    Update: kind, asset, event (target_hit, stop_hit, closed, cancelled), target, gain_pct.

    Noise: kind, reason (empty, incomplete, no_asset, no_price).

    Prices are JSON numbers with the message's own decimals (1,04 is 1.04; 128.450 is 128450).
    The exit status is 0 whatever the message says.
    """
    message = text if text is not None else _read_stdin()
    typer.echo(dumps(to_json_dict(parse_message(message))))
