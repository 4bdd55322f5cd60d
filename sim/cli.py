"""The ``possim`` command line (typer + rich).

Each command group lives beside the code it drives; this module only wires them
together and turns the layer's documented errors into one clear line and exit 2.
"""

from __future__ import annotations

import sys
import warnings

import typer
from rich.console import Console

from .iso8583.errors import WireError

app = typer.Typer(
    name="possim",
    help="Hardware simulator and conformance test harness for card-present payments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _register() -> None:
    from .iso8583.pcap_cli import pcap_app
    from .bench.cli import bench_app
    from .demo import demo_command
    from .emv.cards_cli import cards_command
    from .terminal.cli import terminal_command
    from .des.cli import simulate_command
    from .live.cli import admin_command, host_command, proxy_command

    app.add_typer(pcap_app, name="pcap")
    app.add_typer(bench_app, name="bench")
    app.command("demo")(demo_command)
    app.command("cards")(cards_command)
    app.command("terminal")(terminal_command)
    app.command("simulate")(simulate_command)
    app.command("host")(host_command)
    app.command("proxy")(proxy_command)
    app.command("admin")(admin_command)
    from .live.terminal.cli import ecr_app; app.add_typer(ecr_app, name="ecr")  # noqa: E702
    from .load.cli import load_command; app.command("load")(load_command)  # noqa: E702


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    # pyemv and psec use two-key Triple DES, as card schemes still do; the warning is noise here.
    warnings.filterwarnings("ignore", message=".*TripleDES")
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except (WireError, OSError) as exc:
        err_console.print(f"[red]possim: {exc}[/red]")
        sys.exit(2)


if __name__ == "__main__":
    main()
