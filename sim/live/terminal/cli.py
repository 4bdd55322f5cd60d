"""Command line of the live terminal: ``possim terminal --serve ...`` and ``possim ecr ...``.

``possim terminal --serve`` starts the process (see :mod:`.service`); ``possim ecr``
is a small cash register for a shell, talking to it over the ECR port::

    possim terminal --serve --host 127.0.0.1:8583 --state st/term1 --ready-file st/term1.json &
    possim ecr sale --ready-file st/term1.json --card healthy --amount 12.34
    possim ecr settle --ready-file st/term1.json

Option errors name the option and what is allowed, and exit 2; an answer with
``"ok": false`` exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

err = Console(stderr=True)
ecr_app = typer.Typer(help="A cash register for a live terminal: send one ECR command, print the JSON answer.",
                      no_args_is_help=True, add_completion=False)


def _bad(param: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param)


def serve_command(*, host: Optional[str], host_down: bool, ecr: str, state: Optional[Path], profile: str,
                  terminal_id: str, framing: str, timeout: Optional[float], seed: Optional[int], reader: Optional[str],
                  ready_file: Optional[Path], echo_interval: float, backoff_max: float, dialect: Optional[str],
                  one_shot: dict[str, Any], mac_key: bytes | None) -> None:
    """Validate the ``--serve`` options and run the live terminal until SIGTERM/SIGINT."""
    from ...core.cards import load_cards
    from ...iso8583.dialect import resolve_dialect
    from ...iso8583.errors import WireError
    from ...iso8583.framing import parse_framing
    from ...profiles import ProfileError, list_profiles, load_profile
    from ...terminal.links import parse_address
    from ..loop import run
    from ..process import write_ready_file
    from .engine import TerminalSettings
    from .service import ServeOptions, serve
    from .store import StoreError

    given = [name for name, value in one_shot.items() if value is not None]
    if given:
        raise _bad(given[0], "is for one transaction; with --serve, transactions come over the ECR port "
                             "(`possim ecr sale --card ... --amount ...`)")
    if host_down:
        raise _bad("--host-down", "not with --serve: give --host; the live terminal copes with the host going down by itself")
    if host is None:
        raise _bad("--host", "--serve needs the host's address, e.g. --host 127.0.0.1:8583 (`possim host`)")
    if state is None:
        raise _bad("--state", "--serve needs a state directory for the store-and-forward queue, e.g. --state st/term1")
    try:
        host_name, host_port = parse_address(host)
    except ValueError as exc:
        raise _bad("--host", str(exc)) from None
    ecr_host, _, ecr_port = ecr.rpartition(":")
    if not ecr_host or not ecr_port.isdigit() or not 0 <= int(ecr_port) < 65536:
        raise _bad("--ecr", f"{ecr!r}; expected HOST:PORT, e.g. 127.0.0.1:0 (0: any free port)")
    try:
        prof = load_profile(profile)
    except (ProfileError, FileNotFoundError, ValueError) as exc:
        raise _bad("--profile", f"{exc} (shipped: {', '.join(list_profiles())})") from None
    try:
        chosen_framing = parse_framing(framing)
        chosen_dialect = resolve_dialect(dialect)
    except WireError as exc:
        raise _bad("--framing/--dialect", str(exc)) from None
    if state.exists() and not state.is_dir():
        raise _bad("--state", f"{state} exists and is not a directory")
    settings = TerminalSettings(terminal_id=terminal_id, response_timeout=timeout, echo_interval=echo_interval,
                                backoff_max=backoff_max, seed=seed, reader=reader)
    options = ServeOptions(state=state, host=host_name, port=host_port, profile=prof, cards=load_cards(),
                           ecr_host=ecr_host, ecr_port=int(ecr_port), settings=settings, dialect=chosen_dialect,
                           framing=chosen_framing, mac_key=mac_key)

    def ready(terminal: Any, port: int) -> None:
        err.print(f"possim terminal {terminal_id} ({prof.name}) serving ECR on {ecr_host}:{port}; host {host}; "
                  f"state {state} ({terminal.store.owed_count()} owed)", highlight=False)
        if ready_file is not None:
            write_ready_file(ready_file, kind="terminal", port=port, ecr=f"{ecr_host}:{port}", state=str(state),
                             terminal_id=terminal_id)

    try:
        run(serve(options, ready=ready))
    except StoreError as exc:
        err.print(f"[red]possim terminal: {exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(f"[red]possim terminal: cannot listen on {ecr}: {exc.strerror or exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None


# possim ecr ---------------------------------------------------------------------------------------


def _port(port: Optional[int], ready_file: Optional[Path]) -> int:
    if port is not None:
        return port
    if ready_file is None:
        raise _bad("--port", "give the terminal's ECR port (--port) or its ready file (--ready-file)")
    try:
        return int(json.loads(ready_file.read_text(encoding="utf-8"))["port"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _bad("--ready-file", f"{ready_file}: no ECR port in it ({exc})") from None


def _send(port: Optional[int], ready_file: Optional[Path], address: str, timeout: float, request: dict[str, Any]) -> None:
    from .client import EcrClient, EcrError

    try:
        with EcrClient(_port(port, ready_file), address, timeout) as client:
            answer = client.call(request)
    except EcrError as exc:
        err.print(f"[red]possim ecr: {exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    if not answer.get("ok"):
        raise typer.Exit(1)


PORT = typer.Option(None, "--port", min=1, max=65535, help="The terminal's ECR port.")
READY = typer.Option(None, "--ready-file", help="The terminal's ready file (instead of --port).")
ADDRESS = typer.Option("127.0.0.1", "--address", help="The terminal's ECR address.")
TIMEOUT = typer.Option(120.0, "--timeout", min=0.1, help="Seconds to wait for the answer.")


def _transaction(kind: str):  # noqa: ANN202 - a typer command factory
    def command(
        card: Optional[str] = typer.Option(None, "--card", help="Test card label (see `possim cards`)."),
        amount: Optional[str] = typer.Option(None, "--amount", help="Amount in major units, e.g. 12.34."),
        amount_minor: Optional[int] = typer.Option(None, "--amount-minor", min=0, help="Amount in minor units."),
        currency: Optional[str] = typer.Option(None, "--currency", help="ISO 4217 code; default the card's."),
        pin: Optional[str] = typer.Option(None, "--pin", help="PIN typed at the PIN pad; default the card's own."),
        port: Optional[int] = PORT, ready_file: Optional[Path] = READY, address: str = ADDRESS, timeout: float = TIMEOUT,
    ) -> None:
        request: dict[str, Any] = {"cmd": kind}
        for key, value in (("card", card), ("amount", amount), ("amount_minor", amount_minor), ("currency", currency),
                           ("pin", pin)):
            if value is not None:
                request[key] = value
        _send(port, ready_file, address, timeout, request)

    command.__doc__ = KIND_DOCS[kind]
    return command


KIND_DOCS = {"sale": "A purchase on the live terminal.", "refund": "A refund (always online).",
             "cash": "A cash withdrawal.", "cashback": "A purchase with cashback."}
for _kind in KIND_DOCS:
    ecr_app.command(_kind)(_transaction(_kind))


@ecr_app.command("void")
def void_command(
    stan: str = typer.Option(..., "--stan", help="DE11 of the approved transaction to reverse."),
    port: Optional[int] = PORT, ready_file: Optional[Path] = READY, address: str = ADDRESS, timeout: float = TIMEOUT,
) -> None:
    """Void (reverse) an approved transaction of the open batch."""
    _send(port, ready_file, address, timeout, {"cmd": "void", "stan": stan})


@ecr_app.command("settle")
def settle_command(
    drain_timeout: float = typer.Option(30.0, "--drain-timeout", min=0.0, help="Seconds to deliver what is owed first."),
    port: Optional[int] = PORT, ready_file: Optional[Path] = READY, address: str = ADDRESS, timeout: float = TIMEOUT,
) -> None:
    """End of day: deliver what is owed, then 0500 per currency."""
    _send(port, ready_file, address, timeout, {"cmd": "settle", "drain_timeout": drain_timeout})


@ecr_app.command("drain")
def drain_command(
    wait: float = typer.Option(30.0, "--wait", min=0.0, help="Seconds to wait for the queue to empty."),
    port: Optional[int] = PORT, ready_file: Optional[Path] = READY, address: str = ADDRESS, timeout: float = TIMEOUT,
) -> None:
    """Wait until every advice and reversal is acknowledged by the host."""
    _send(port, ready_file, address, timeout, {"cmd": "drain", "timeout": wait})


def _simple(name: str, doc: str):  # noqa: ANN202 - a typer command factory
    def command(port: Optional[int] = PORT, ready_file: Optional[Path] = READY, address: str = ADDRESS,
                timeout: float = TIMEOUT) -> None:
        _send(port, ready_file, address, timeout, {"cmd": name})

    command.__doc__ = doc
    return command


ecr_app.command("status")(_simple("status", "The terminal's state: link, owed messages, batch, STAN."))
ecr_app.command("echo")(_simple("echo", "An 0800 echo test from the terminal to its host."))


@ecr_app.command("verdict")
def verdict_command(
    state: Path = typer.Option(..., "--state", help="The terminal's state directory."),
    host_admin: int = typer.Option(..., "--host-admin", min=1, max=65535, help="Admin port of the possim host."),
    terminal_id: Optional[str] = typer.Option(None, "--terminal-id", help="Only this terminal's bookings (DE41)."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Judge the terminal's history (its state directory) against what the host booked: lost, doubled, unexpected."""
    from ..admin import admin_call_sync
    from .service import STORE_FILE
    from .verdict import judge

    if not (state / STORE_FILE).exists():
        raise _bad("--state", f"{state} holds no terminal store ({STORE_FILE})")
    try:
        answer = admin_call_sync(host_admin, {"cmd": "booked"})
    except (OSError, ValueError) as exc:
        err.print(f"[red]possim ecr verdict: host admin 127.0.0.1:{host_admin}: {exc}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    if not answer.get("ok"):
        err.print(f"[red]possim ecr verdict: host admin answered {answer}[/red]", soft_wrap=True)
        raise typer.Exit(2)
    verdict = judge(state, answer["booked"], terminal_id)
    sys.stdout.write((json.dumps(verdict.to_dict(), indent=2) if as_json else verdict.pretty()) + "\n")
    if not verdict.ok:
        raise typer.Exit(1)
