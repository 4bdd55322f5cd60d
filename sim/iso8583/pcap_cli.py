"""``possim pcap``: dissect captures of ISO 8583 traffic, and write realistic ones.

Examples
--------
Write the built-in sample exchange, then read it back::

    possim pcap write sample.pcap
    possim pcap dissect sample.pcap
    possim pcap dissect sample.pcap --json | jq '.[].mti'

Card data is always masked: PANs show their first 6 and last 4 digits, track
data, PIN blocks and security fields are hidden, DE55 tags carrying a PAN or a
track are masked too.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .catalogue import MESSAGE_TYPES
from .dialect import FIELD_KEYS, Dialect, resolve_dialect
from .errors import WireError
from .framing import Framing, parse_framing
from .pcap import DEFAULT_PORT, DEFAULT_START, CaptureError, Captured, read_messages, write_pcap
from .pretty import field_rows, icc_tags
from .samples import sample_exchange

pcap_app = typer.Typer(
    help="Dissect pcap captures of ISO 8583 traffic, or write realistic ones (masked, loopback only).",
    no_args_is_help=True,
)

_EXIT_BAD_INPUT = 2
_FRAMING_HELP = "Length header: be2 (default), le2 or ascii4, with +tpdu for a 5-byte TPDU (e.g. be2+tpdu)."
_DIALECT_HELP = "A built-in dialect name or a .json/.toml pyiso8583 spec file (default: iso8583-1987-ascii)."

PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="The host's TCP port.")]
FramingOption = Annotated[str, typer.Option("--framing", help=_FRAMING_HELP)]
DialectOption = Annotated[Optional[str], typer.Option("--dialect", help=_DIALECT_HELP)]


@contextmanager
def _one_line_errors(command: str) -> Iterator[None]:
    """Turn the documented input errors into one line on stderr and exit status 2."""
    try:
        yield
    except (WireError, OSError, ValueError) as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(Text(f"possim pcap {command}: {exc}", style="red"))
        raise typer.Exit(_EXIT_BAD_INPUT) from None


def _options(dialect: str | None, framing: str) -> tuple[Dialect, Framing]:
    return resolve_dialect(dialect), parse_framing(framing)


# dissect -------------------------------------------------------------------------------------


def _when(time: Decimal) -> str:
    return datetime.fromtimestamp(float(time), tz=timezone.utc).isoformat(timespec="microseconds")


def _mti_label(mti: str) -> str:
    mtype = MESSAGE_TYPES.get(mti)
    return f"{mti} {mtype.name}" if mtype else f"{mti} (not in the catalogue)"


def record_json(index: int, record: Captured, dialect: Dialect) -> dict[str, Any]:
    """A captured message as a JSON-ready dict, card data masked.

    Keys: ``index``, ``time`` (epoch seconds), ``utc``, ``direction``, ``src``,
    ``dst``, ``mti``, ``name``, ``fields`` (list of ``{field, name, value}``),
    ``icc`` (DE55 as ``{tag, name, value}``), ``error`` (null when it decoded).
    """
    out: dict[str, Any] = {
        "index": index,
        "time": float(record.time),
        "utc": _when(record.time),
        "direction": record.direction,
        "src": record.src,
        "dst": record.dst,
        "mti": record.mti,
        "name": None,
        "fields": [],
        "icc": [],
        "error": record.error,
    }
    if record.fields is not None:
        mtype = MESSAGE_TYPES.get(record.mti or "")
        out["name"] = mtype.name if mtype else None
        out["fields"] = [
            {"field": key, "name": desc, "value": value} for key, desc, value in field_rows(record.fields, dialect)
        ]
        out["icc"] = [{"tag": tag, "name": name, "value": value} for tag, name, value in icc_tags(record.fields)]
    else:
        out["length"] = len(record.raw)
    return out


def _panel(index: int, record: Captured, dialect: Dialect) -> Panel:
    title = Text(f"#{index} {record.direction} {record.src} → {record.dst}")
    frame = {"title": title, "title_align": "left", "subtitle": Text(_when(record.time)), "subtitle_align": "left"}
    if record.fields is None:
        size = f" ({len(record.raw)} bytes)" if record.raw else ""
        body = Text(f"undecodable{size}: {record.error}", style="red")
        return Panel(body, border_style="red", **frame)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("DE", justify="right", no_wrap=True)
    table.add_column("name")
    table.add_column("value", overflow="fold")
    for key, desc, value in field_rows(record.fields, dialect):
        if key == "t":
            value = _mti_label(value)
        table.add_row(Text(key), Text(desc), Text(value))
    parts: list[Any] = [table]
    tags = icc_tags(record.fields)
    if tags:
        icc = Table(title="DE55 ICC data", title_justify="left", show_header=True, header_style="bold", box=None)
        icc.add_column("tag", no_wrap=True)
        icc.add_column("name")
        icc.add_column("value", overflow="fold")
        for tag, name, value in tags:
            icc.add_row(Text(tag), Text(name), Text(value))
        parts.append(icc)
    return Panel(Group(*parts), **frame)


@pcap_app.command("dissect")
def dissect(
    file: Annotated[Path, typer.Argument(help="A pcap or pcapng capture.")],
    port: PortOption = DEFAULT_PORT,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of tables.")] = False,
    dialect: DialectOption = None,
    framing: FramingOption = "be2",
) -> None:
    """Print every ISO 8583 message of a capture: time, direction, addresses, fields and DE55 tags, masked."""
    with _one_line_errors("dissect"):
        spec, frames = _options(dialect, framing)
        records = read_messages(file, port=port, dialect=spec, framing=frames)
    if as_json:
        typer.echo(json.dumps([record_json(i, r, spec) for i, r in enumerate(records, 1)], indent=2))
        return
    console = Console(highlight=False)
    if not records:
        console.print(f"{file}: no ISO 8583 messages on TCP port {port}")
        return
    for index, record in enumerate(records, 1):
        console.print(_panel(index, record, spec))
    failed = sum(1 for r in records if r.fields is None)
    console.print(f"{len(records)} messages, {failed} undecodable ({spec.name}, {frames.describe()}, port {port})")


# write ---------------------------------------------------------------------------------------


def load_messages(path: Path) -> list[dict[str, str]]:
    """Read a JSON list of field dicts (``[{"t": "0800", "7": "1122103000", ...}, ...]``).

    Raises
    ------
    OSError
        The file cannot be read.
    CaptureError
        The file is not JSON, not a list of objects, or holds a key or value
        that is not an ISO 8583 field; the message names the file, the index
        (from 0) and the key.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise type(exc)(exc.errno, f"{path}: cannot read messages: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise CaptureError(f"{path}: expected a JSON list of messages ({{\"t\": MTI, \"2\": ...}}), got {type(data).__name__}")
    allowed = set(FIELD_KEYS) - {"h"}
    messages = []
    for index, item in enumerate(data):
        where = f"{path}: message [{index}]"
        if not isinstance(item, dict):
            raise CaptureError(f"{where}: expected an object of fields, got {type(item).__name__}")
        if "t" not in item:
            raise CaptureError(f"{where}: no \"t\" (MTI) key")
        for key, value in item.items():
            if key not in allowed:
                raise CaptureError(f"{where}: key {key!r} is not a field; allowed: t, 2..128")
            if not isinstance(value, str):
                raise CaptureError(f"{where} field {key!r}: value {value!r} must be a JSON string (ISO 8583 fields are text)")
        messages.append({k: v for k, v in item.items() if k not in ("p", "1")})
    return messages


def _tshark_hint(out: Path, port: int, framing: Framing) -> str:
    if framing.tpdu or framing.kind == "ascii4":
        return f"Wireshark's iso8583 dissector does not read {framing.describe()} framing."
    endian = "bigendian" if framing.kind == "be2" else "littleendian"
    return f"tshark -r {out} -d tcp.port=={port},iso8583 -o iso8583.len_endian:{endian} -V"


@pcap_app.command("write")
def write(
    out: Annotated[Path, typer.Argument(help="The pcap file to write.")],
    messages: Annotated[
        Optional[Path], typer.Option("--messages", help="A JSON file: a list of field objects, e.g. [{\"t\": \"0800\", ...}].")
    ] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Write the built-in sample exchange (the default).")] = False,
    port: PortOption = DEFAULT_PORT,
    framing: FramingOption = "be2",
    dialect: DialectOption = None,
    max_segment: Annotated[
        Optional[int], typer.Option("--max-segment", min=1, max=65495, help="Split TCP payloads at this many bytes.")
    ] = None,
    batch: Annotated[bool, typer.Option("--batch", help="Send consecutive same-direction messages together.")] = False,
    start: Annotated[float, typer.Option("--start", help="Time of the first packet, epoch seconds.")] = float(
        DEFAULT_START
    ),
) -> None:
    """Write messages as one loopback TCP connection, terminal to host, with handshake, ACKs and FIN."""
    with _one_line_errors("write"):
        if messages is not None and sample:
            raise CaptureError("give either --messages FILE or --sample, not both")
        spec, frames = _options(dialect, framing)
        items: list[Any] = sample_exchange() if messages is None else load_messages(messages)
        try:
            count = write_pcap(
                out, items, port=port, dialect=spec, framing=frames, start=Decimal(repr(start)),
                max_segment=max_segment, batch=batch,
            )
        except WireError as exc:
            if messages is None:
                raise
            raise type(exc)(f"{messages}: {exc}") from None
    console = Console(highlight=False)
    console.print(f"wrote {len(items)} messages in {count} packets to {out}")
    console.print(_tshark_hint(out, port, frames))
