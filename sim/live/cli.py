"""The typer commands of the live driver: ``possim host``, ``possim proxy``, ``possim admin``.

Option errors name the option, the value and what is allowed, and exit 2; a server
that cannot start (port taken, state directory locked or diverged, bad rules file)
says why in one line and exits 2.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any, Optional

import typer

from .loop import loop_name, run



def _fail(message: str) -> typer.Exit:
    """Print one plain line on stderr (no wrapping: scripts grep it) and give exit 2."""
    print(message, file=sys.stderr, flush=True)
    return typer.Exit(2)


def _bad(param: str, message: str) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=param)


def _core_config(path: Optional[Path]) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _bad("--config", f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _bad("--config", f"{path}: not valid TOML: {exc}") from None
    from ..core.host import Host

    try:
        Host(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise _bad("--config", f"{path}: {exc}") from None
    return data


def _cards(path: Optional[Path]) -> Optional[Path]:
    if path is None:
        return None
    from ..core.cards import CardSetError, load_cards

    try:
        load_cards(path)
    except CardSetError as exc:
        raise _bad("--cards", str(exc)) from None
    return path


def host_command(
    port: int = typer.Option(8583, "--port", min=0, max=65535, help="TCP port (0: any free port, see --ready-file)."),
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address to listen on (loopback unless told otherwise)."),
    admin_port: Optional[int] = typer.Option(None, "--admin-port", min=0, max=65535,
                                             help="Local admin endpoint port; default --port + 1 (0 when --port is 0)."),
    dialect: Optional[str] = typer.Option(None, "--dialect", help="Built-in dialect name or a .json/.toml spec file."),
    framing: str = typer.Option("be2", "--framing", help="be2, le2 or ascii4, optionally +tpdu."),
    tpdu: bool = typer.Option(False, "--tpdu", help="A 5-byte TPDU follows the length header (same as +tpdu)."),
    max_frame: int = typer.Option(8192, "--max-frame", min=16, max=65535, help="Largest frame accepted, bytes."),
    state: Optional[Path] = typer.Option(None, "--state", help="State directory: the ledger survives restarts (SQLite)."),
    journal: Optional[Path] = typer.Option(None, "--journal", help="JSON-lines message journal (PANs masked)."),
    journal_max_mb: float = typer.Option(256.0, "--journal-max-mb", min=0.0,
                                         help="Rotate the journal at this size, MB (0: never)."),
    journal_keep: int = typer.Option(4, "--journal-keep", min=0, help="Rotated journal files kept (FILE.1 ...)."),
    pcap: Optional[Path] = typer.Option(None, "--pcap", help="Write the session's messages to this pcap at shutdown."),
    rules: Optional[Path] = typer.Option(None, "--rules", help="Rules overlay TOML (reloaded when it changes)."),
    cards: Optional[Path] = typer.Option(None, "--cards", help="Card set TOML (default: the shipped test card set)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Host core configuration TOML (acquirer, standin, settlement, issuer)."),
    idle_timeout: float = typer.Option(300.0, "--idle-timeout", min=0.1, help="Close a connection silent this long, s."),
    frame_timeout: float = typer.Option(10.0, "--frame-timeout", min=0.1, help="Close a connection whose partial frame stays unfinished this long, s."),
    max_connections: int = typer.Option(1000, "--max-connections", min=1, help="Connections beyond this are closed at once."),
    max_inflight: int = typer.Option(256, "--max-inflight", min=1, help="Requests waiting per connection before it is not read."),
    drain_timeout: float = typer.Option(10.0, "--drain-timeout", min=0.0, help="At shutdown, wait this long for in-flight answers, s."),
    on_divergence: str = typer.Option("fail", "--on-divergence", help="Replay gave another answer than stored: fail or warn."),
    ready_file: Optional[Path] = typer.Option(None, "--ready-file", help="Write {pid, port, admin_port} as JSON here once listening."),
    uvloop: bool = typer.Option(True, "--uvloop/--no-uvloop", help="Use uvloop when installed."),
    profile: Optional[Path] = typer.Option(None, "--profile", help="Write cProfile statistics of the run here at shutdown."),
) -> None:
    """Run the host simulator: the host core behind an ISO 8583 TCP server."""
    from ..iso8583.dialect import resolve_dialect
    from ..iso8583.errors import WireError
    from ..iso8583.framing import parse_framing
    from .host_server import HostSettings, serve
    from .process import write_ready_file
    from .rules import RuleError
    from .store import StateError

    if on_divergence not in ("fail", "warn"):
        raise _bad("--on-divergence", f"{on_divergence!r}; allowed: fail, warn")
    try:
        chosen_dialect = resolve_dialect(dialect)
    except WireError as exc:
        raise _bad("--dialect", str(exc)) from None
    label = framing + ("+tpdu" if tpdu and "+tpdu" not in framing else "")
    try:
        chosen_framing = parse_framing(label, max_frame if not label.startswith("ascii4") else min(max_frame, 9999))
    except WireError as exc:
        raise _bad("--framing", str(exc)) from None
    settings = HostSettings(
        bind=bind, port=port, admin_port=admin_port, dialect=chosen_dialect, framing=chosen_framing,
        core_config=_core_config(config), cards=_cards(cards), state=state, journal=journal, pcap=pcap, rules=rules,
        journal_max_bytes=int(journal_max_mb * 1024 * 1024) or None, journal_keep=journal_keep,
        idle_timeout=idle_timeout, frame_timeout=frame_timeout, max_connections=max_connections,
        max_inflight=max_inflight, drain_timeout=drain_timeout, on_divergence=on_divergence,
    )

    def ready(server: Any) -> None:
        where = f"{bind}:{server.port}"
        print(
            f"possim host listening on {where} ({chosen_dialect.name}, {chosen_framing.describe()}, {loop_name() if uvloop else 'asyncio'}); "
            f"admin on 127.0.0.1:{server.admin_port}; "
            + (f"state {state} ({server.replayed} events replayed)" if state else "ledger in memory (use --state DIR to keep it)"),
            file=sys.stderr, flush=True,
        )
        if ready_file is not None:
            write_ready_file(ready_file, kind="host", port=server.port, admin_port=server.admin_port, bind=bind)

    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        run(serve(settings, ready=ready), use_uvloop=uvloop)
    except (RuleError, StateError) as exc:
        raise _fail(f"possim host: {exc}") from None
    except OSError as exc:
        raise _fail(f"possim host: cannot listen on {bind}:{port}: {exc.strerror or exc}") from None
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))


def proxy_command(
    upstream: str = typer.Option(..., "--upstream", help="HOST:PORT of the host behind the proxy."),
    port: int = typer.Option(8483, "--port", min=0, max=65535, help="Port terminals connect to (0: any free port)."),
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address to listen on."),
    admin_port: Optional[int] = typer.Option(None, "--admin-port", min=0, max=65535,
                                             help="Local admin endpoint port; default --port + 1 (0 when --port is 0)."),
    toxics: Optional[Path] = typer.Option(None, "--toxics", help="TOML file of [[toxics]] in force at start."),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-connection toxicity draws, jitter and slice sizes."),
    ready_file: Optional[Path] = typer.Option(None, "--ready-file", help="Write {pid, port, admin_port} as JSON here once listening."),
    uvloop: bool = typer.Option(True, "--uvloop/--no-uvloop", help="Use uvloop when installed."),
) -> None:
    """Run the chaos proxy: latency, bandwidth, timeout, reset_peer, slicer, limit_data, down; changed live with possim admin."""
    from .process import write_ready_file
    from .proxy import ProxySettings, parse_address, serve
    from .toxics import ToxicError, load_toxics

    try:
        address = parse_address(upstream)
    except ValueError as exc:
        raise _bad("--upstream", str(exc)) from None
    try:
        initial = load_toxics(toxics) if toxics is not None else ()
    except ToxicError as exc:
        raise _bad("--toxics", str(exc)) from None
    settings = ProxySettings(upstream=address, bind=bind, port=port, admin_port=admin_port, toxics=initial, seed=seed)

    def ready(proxy: Any) -> None:
        print(f"possim proxy listening on {bind}:{proxy.port} -> {upstream}; admin on 127.0.0.1:{proxy.admin_port}; "
              f"{len(initial)} toxics; seed {seed}", file=sys.stderr, flush=True)
        if ready_file is not None:
            write_ready_file(ready_file, kind="proxy", port=proxy.port, admin_port=proxy.admin_port, bind=bind)

    try:
        run(serve(settings, ready=ready), use_uvloop=uvloop)
    except OSError as exc:
        raise _fail(f"possim proxy: cannot listen on {bind}:{port}: {exc.strerror or exc}") from None


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def admin_command(
    port: int = typer.Argument(..., min=1, max=65535, help="Admin port of a possim host or proxy."),
    cmd: str = typer.Argument("help", help="Command (help lists them), e.g. status, rules, add_rule, toxic."),
    params: list[str] = typer.Argument(None, help="KEY=VALUE parameters; VALUE is JSON when it parses, else a string."),
    address: str = typer.Option("127.0.0.1", "--address", help="Admin endpoint address."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds to wait for the answer."),
) -> None:
    """Send one command to the local admin endpoint of a running host or proxy; print the JSON answer.

    Examples: ``possim admin 8584 add_rule rule='{"mti": "0200", "action": "drop"}'``,
    ``possim admin 8584 issuer issuer=ISS-VISA up=false``, ``possim admin 8475 toxic ...``.
    """
    from .admin import admin_call_sync

    request: dict[str, Any] = {"cmd": cmd}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _bad("PARAMS", f"{item!r} is not KEY=VALUE")
        request[key] = _value(value)
    try:
        answer = admin_call_sync(port, request, host=address, timeout=timeout)
    except (OSError, ValueError) as exc:
        raise _fail(f"possim admin: {address}:{port}: {exc}") from None
    sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    if not answer.get("ok"):
        raise typer.Exit(1)
