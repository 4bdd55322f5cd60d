"""``possim terminal``: one transaction through the real kernel, card and host.

The kernel and card are sans-IO; this driver supplies the wall clock, a fresh
unpredictable number (or a seeded one), the PIN typed on the command line, and a host
link: the in-process host core (default), ``--host HOST:PORT`` (ISO 8583 over TCP),
or ``--host-down``. Messages the kernel still owes (an 0220 advice for an offline
approval, an 0400 reversal) are listed under ``pending``; with a reachable host they
are forwarded at once and listed under ``forwarded`` with the host's answer.

With ``--serve`` the same command runs the *live* terminal instead: a long-running
process with a durable store, driven by a cash register over its ECR port
(:mod:`sim.live.terminal`); ``possim ecr ...`` is a small cash register for a shell.
"""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..core.cards import CardSetError, load_cards
from ..core.host import Host
from ..core.money import CurrencyError, currency, format_amount, parse_amount
from ..emv.card import VirtualCard
from ..emv.kernel import (
    PAYMENT_METHODS,
    HostTimeout,
    HostUnreachable,
    TerminalConfig,
    Transaction,
    TransactionResult,
    run_transaction,
)
from ..iso8583.framing import parse_framing
from ..iso8583.mac import TEST_MAC_KEY, MacKeys
from ..profiles import ProfileError, list_profiles
from .links import TcpLink, in_process, unreachable

console = Console()
TYPES = {"sale": "00", "cash": "01", "cashback": "09", "refund": "20"}


def result_dict(result: TransactionResult, forwarded: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``--json`` document: the keys the conformance tooling reads, PAN masked."""
    return {
        "outcome": result.outcome.value,
        "arc": result.arc,
        "reason": result.reason,
        "tvr": result.tvr,
        "tsi": result.tsi,
        "tvr_bits": list(result.tvr_bits),
        "cvm": result.cvm,
        "cvm_label": result.cvm_label,
        "entry_mode": result.entry_mode,
        "cryptogram": result.cryptogram,
        "amount_minor": result.amount_minor,
        "currency": result.currency,
        "masked_pan": result.masked_pan,
        "receipt": result.receipt,
        "messages": list(result.messages),
        "pending": [m.mti for m in result.pending],
        "forwarded": forwarded,
    }


def _bad(param: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param)


def _fail(message: str) -> typer.Exit:
    """One plain line on stderr, exit 1: the command was right, the world was not."""
    typer.echo(message, err=True)
    return typer.Exit(1)


def _wait_for_card(transport: Any, reader: str, seconds: float) -> bool:
    """Ask for a card, as a terminal's display does, and wait up to ``seconds`` for one."""
    if seconds <= 0:
        return False
    typer.echo(f"present a card to {reader} (waiting up to {seconds:g} s)", err=True)
    return bool(transport.wait_for_card(seconds))


def terminal_command(
    card: Optional[str] = typer.Option(
        None, "--card", help="Card label from the test card set (see `possim cards`); with --reader, the card's currency and record."
    ),
    amount: Optional[str] = typer.Option(None, "--amount", help="Amount in major units, e.g. 12.34 (JPY: 1000; KWD: 1.234)."),
    currency_code: Optional[str] = typer.Option(None, "--currency", help="ISO 4217 code; default the card's currency."),
    profile: str = typer.Option("countertop-ethernet", "--profile", help="Hardware profile name or TOML path."),
    host: Optional[str] = typer.Option(None, "--host", help="HOST:PORT of an ISO 8583 host; default the in-process host core."),
    host_down: bool = typer.Option(False, "--host-down", help="The host is unreachable."),
    pin: Optional[str] = typer.Option(None, "--pin", help="PIN typed at the PIN pad; default the card's own PIN."),
    reader: Optional[str] = typer.Option(None, "--reader", help="PC/SC reader name: use the card in that reader."),
    wait_card: float = typer.Option(
        30.0, "--wait-card", min=0.0, help="With --reader: seconds to wait for a card to be presented (0: it must be there)."
    ),
    kind: str = typer.Option("sale", "--type", help=f"Transaction type: {', '.join(TYPES)}."),
    method: str = typer.Option(
        "card", "--method", help=f"How the cardholder pays: {'; '.join(f'{k}: {v}' for k, v in PAYMENT_METHODS.items())}."
    ),
    paper: Optional[int] = typer.Option(
        None, "--paper", min=0, help="Receipts' worth of paper left in the printer (0: out of paper); default plenty."
    ),
    framing: str = typer.Option("be2", "--framing", help="Framing for --host: be2, le2, ascii4, optionally +tpdu."),
    dialect: Optional[str] = typer.Option(None, "--dialect", help="Dialect for --host: built-in name or .json/.toml spec."),
    mac_key: Optional[str] = typer.Option(
        None, "--mac-key", help="On a MAC-ing dialect: the terminal's MAC key, 32 hex digits; default the TEST ONLY key."
    ),
    terminal_id: str = typer.Option("TERM0001", "--terminal-id", help="DE41."),
    stan: int = typer.Option(1, "--stan", min=1, max=999_999, help="DE11 of the request."),
    timeout: Optional[float] = typer.Option(
        None, "--timeout", min=0.1, help="Seconds to wait for the host's answer (one-shot: 30; --serve: the profile's)."
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed the unpredictable number and random selection."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    serve: bool = typer.Option(False, "--serve", help="Run the live terminal: a process driven over its ECR port."),
    ecr: str = typer.Option("127.0.0.1:0", "--ecr", help="--serve: HOST:PORT of the ECR port (0: any free port)."),
    state: Optional[Path] = typer.Option(None, "--state", help="--serve: state directory (SQLite store; kept across restarts)."),
    ready_file: Optional[Path] = typer.Option(None, "--ready-file", help="--serve: write {pid, port, ecr} as JSON here once listening."),
    echo_interval: float = typer.Option(30.0, "--echo-interval", min=0.0, help="--serve: 0800 echo after this many quiet seconds (0: never)."),
    backoff_max: float = typer.Option(5.0, "--backoff-max", min=0.05, help="--serve: longest pause between reconnects/resends, s."),
) -> None:
    """Run one transaction: virtual (or PC/SC) card, terminal kernel, host. With --serve: the live terminal."""
    try:
        key = MacKeys(default=mac_key).key_for(terminal_id) if mac_key is not None else TEST_MAC_KEY
    except ValueError as exc:
        raise _bad("--mac-key", f"{exc}; expected 32 hex digits (a double-length DES key)") from None
    if serve:
        from ..live.terminal.cli import serve_command

        serve_command(host=host, host_down=host_down, ecr=ecr, state=state, profile=profile, terminal_id=terminal_id,
                      framing=framing, timeout=timeout, seed=seed, reader=reader, ready_file=ready_file,
                      echo_interval=echo_interval, backoff_max=backoff_max, dialect=dialect, mac_key=key, one_shot={"--card": card, "--amount": amount,
                      "--currency": currency_code, "--pin": pin, "--json": as_json or None,
                      "--type": None if kind == "sale" else kind,
                      "--method": None if method == "card" else method, "--paper": paper, "--stan": None if stan == 1 else stan})
        return
    if amount is None:
        raise _bad("--amount", "give the amount in major units, e.g. --amount 12.34 (or run the live terminal with --serve)")
    if timeout is None:
        timeout = 30.0
    if card is None:
        raise _bad("--card", "name the card: a label from `possim cards` (with --reader, the label of the card in the reader)")
    try:
        cards = load_cards()
        chosen = cards.card(card)
    except KeyError:
        raise _bad("--card", f"no card {card!r}; labels: {', '.join(load_cards().labels)}") from None
    except CardSetError as exc:
        raise _bad("--card", str(exc)) from None
    try:
        cur = currency(currency_code or chosen.currency)
        minor = parse_amount(amount, cur)
    except CurrencyError as exc:
        raise _bad("--amount/--currency", str(exc)) from None
    if kind not in TYPES:
        raise _bad("--type", f"{kind!r}; allowed: {', '.join(TYPES)}")
    if method not in PAYMENT_METHODS:
        raise _bad("--method", f"{method!r}; allowed: {', '.join(PAYMENT_METHODS)}")
    if host and host_down:
        raise _bad("--host-down", "give --host or --host-down, not both")
    try:
        config = TerminalConfig.from_profile(profile, terminal_id=terminal_id, paper_left=paper)
    except (ProfileError, FileNotFoundError, ValueError) as exc:
        raise _bad("--profile", f"{exc} (shipped: {', '.join(list_profiles())})") from None

    rng = random.Random(seed)
    now = datetime.now()
    core = None
    if host_down:
        link = unreachable
    elif host:
        from ..iso8583.dialect import resolve_dialect

        try:
            chosen_dialect = resolve_dialect(dialect)
        except ValueError as exc:
            raise _bad("--dialect", str(exc)) from None
        try:
            link = TcpLink(host, framing=parse_framing(framing), dialect=chosen_dialect, timeout_s=timeout, mac_key=key)
        except ValueError as exc:
            raise _bad("--host", str(exc)) from None
    else:
        core = Host(cards=cards)
        link = in_process(core, lambda: now)

    if reader is not None:
        from ..pcsc.transport import PcscError, PcscTransport, choose_reader, list_readers

        try:
            choose_reader(list_readers(), reader)
        except PcscError as exc:
            raise _bad("--reader", str(exc)) from None
        the_card: Any = PcscTransport(reader)
        try:
            present = the_card.card_present() or _wait_for_card(the_card, reader, wait_card)
        except PcscError as exc:
            the_card.close()
            raise _fail(f"possim terminal: reader {reader}: {exc}") from None
        if not present:
            the_card.close()
            raise _fail(f"possim terminal: no card was presented to {reader} in {wait_card:g} s (--wait-card)")
    else:
        the_card = VirtualCard.from_label(card, cards)
    txn = Transaction(
        config, amount=minor, currency=cur, when=now, unpredictable_number=rng.randbytes(4), stan=stan,
        transaction_type=TYPES[kind], rng=rng, payment_method=method,
    )
    try:
        result = run_transaction(txn, the_card, link, pins=[pin] if pin is not None else (chosen.pin,) * 3)
    finally:
        if reader is not None:
            the_card.close()
    forwarded = []
    if not host_down:
        for owed in result.pending:
            try:
                answer = link(owed)
            except (HostUnreachable, HostTimeout) as exc:
                forwarded.append({"mti": owed.mti, "answer": None, "error": str(exc)})
                break
            forwarded.append({"mti": owed.mti, "answer": answer.mti, "code": answer.response_code})
    if isinstance(link, TcpLink):
        link.close()

    if as_json:
        typer.echo(json.dumps(result_dict(result, forwarded), indent=2))
        return
    table = Table(title=f"{chosen.label} {result.masked_pan} on {config.terminal_id}", show_header=False)
    rows = [
        ("outcome", f"{result.outcome.value}: {result.reason}"),
        ("amount", format_amount(result.amount_minor, cur)),
        ("8A / DE39", str(result.arc)),
        ("entry mode (DE22)", result.entry_mode),
        ("cryptogram", str(result.cryptogram)),
        ("CVM", f"{result.cvm_label} ({result.cvm})"),
        ("TVR", f"{result.tvr} {', '.join(result.tvr_bits) or '-'}"),
        ("TSI", result.tsi),
        ("receipt", result.receipt),
        ("messages sent", " ".join(result.messages) or "-"),
        ("owed to the host", " ".join(m.mti for m in result.pending) or "-"),
        ("forwarded", " ".join(f"{f['mti']}->{f.get('answer')} {f.get('code', '')}" for f in forwarded) or "-"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    if core is not None:
        console.print(f"balance after: {format_amount(core.balance(chosen.pan), cur)}")
