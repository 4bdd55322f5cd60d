"""The message journal (JSON lines, PANs masked) and the session pcap.

Journal
-------
One JSON object per line, one line per message or connection event::

    {"time": "2026-11-22T10:30:00.123456+00:00", "conn": 3, "peer": "127.0.0.1:50412",
     "dir": "in", "mti": "0200", "fields": {"2": "476173******0010", ...}, "de39": null,
     "bytes": 187}
    {"time": ..., "conn": 3, "peer": ..., "dir": "out", "mti": "0210", "fields": {...},
     "de39": "00", "latency_ms": 0.912, "bytes": 121}
    {"time": ..., "conn": 3, "peer": ..., "event": "closed", "detail": "idle timeout"}

Fields go through :func:`sim.iso8583.pretty.masked`: PAN first 6 / last 4, track data
masked to the PAN part, track 1 / PIN block / security data shown only as a length,
DE55 left out (it may carry track-equivalent tags). Error texts are scrubbed of any
12-19 digit run. ``latency_ms`` is from the arrival of the request's last byte to the
answer's write. Lines are buffered and flushed at least every second and at shutdown:
the journal is for people; the replay log (:mod:`.store`) is what must not be lost.

A soak test at thousands of authorizations a second writes gigabytes an hour, so the
journal rotates as log files do: once the file reaches ``max_bytes`` it becomes
``FILE.1`` (``FILE.1`` becomes ``FILE.2``, and so on), the oldest beyond ``keep`` is
deleted, and a new ``FILE`` starts; a line is never split across two files.

Pcap
----
The session's messages, per connection, written at shutdown with
:func:`sim.iso8583.pcap.build_packets` (one synthetic TCP conversation per real
connection, starting at its real time, each message in the order it crossed the wire,
client port as the real one). It holds test PANs in clear, like any capture of the
wire, but no track discretionary data, track 1 or PIN blocks: messages are redacted
like the replay log before they are kept. Frames that did not decode are not in it.
At most ``limit`` messages are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import orjson

from ..iso8583.dialect import Dialect
from ..iso8583.framing import Framing
from ..iso8583.pretty import mask_pan, masked

_PAN_LIKE = re.compile(r"(?<!\d)\d{12,19}(?!\d)")
_DROPPED = ("p", "1", "55")
_LINE = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
"""orjson writes each record as one line (two lines per request: about 0.3 us each,
where the standard library's encoder takes ten times that)."""


def line(record: Mapping[str, Any]) -> bytes:
    """One journal line: ``record`` as compact JSON (UTF-8), then a newline.

    >>> line({"conn": 1, "dir": "in", "latency_ms": 0.5, "fields": {"39": "00"}})
    b'{"conn":1,"dir":"in","latency_ms":0.5,"fields":{"39":"00"}}\\n'
    """
    return orjson.dumps(record, option=_LINE)


def scrub(text: str) -> str:
    """Mask every 12-19 digit run of free text (error messages may quote field data)."""
    return _PAN_LIKE.sub(lambda m: mask_pan(m.group(0)), text)


def safe_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """Fields fit for a human-readable journal: masked, bitmaps and DE55 left out."""
    out = masked(fields)
    for key in _DROPPED:
        out.pop(key, None)
    return out


class MessageJournal:
    """JSON-lines journal of one server's traffic; see the module notes.

    Parameters
    ----------
    path : Path or None
        The file (appended to). ``None`` makes every method a no-op.
    max_bytes : int or None
        Rotate once the file holds this many bytes (``None``: never).
    keep : int
        Rotated files kept (``FILE.1`` .. ``FILE.keep``); 0 keeps none.
    """

    def __init__(self, path: Path | None, *, max_bytes: int | None = None, keep: int = 4) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"journal max_bytes is {max_bytes!r}; allowed: a positive number of bytes, or None")
        if keep < 0:
            raise ValueError(f"journal keep is {keep!r}; allowed: 0 or more rotated files")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0
        self._file: BinaryIO | None = None
        self._size = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        self._file = open(self.path, "ab", buffering=1 << 16)  # noqa: SIM115 - closed in close()
        self._size = self._file.tell()

    def _line(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._size += len(data)
        if self.max_bytes is not None and self._size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        assert self._file is not None and self.path is not None
        self._file.close()
        path = self.path
        if self.keep == 0:
            path.unlink(missing_ok=True)
        else:
            path.with_name(f"{path.name}.{self.keep}").unlink(missing_ok=True)
            for n in range(self.keep - 1, 0, -1):
                older = path.with_name(f"{path.name}.{n}")
                if older.exists():
                    older.replace(path.with_name(f"{path.name}.{n + 1}"))
            path.replace(path.with_name(f"{path.name}.1"))
        self.rotations += 1
        self._open()

    @property
    def enabled(self) -> bool:
        """True when lines are written somewhere."""
        return self._file is not None

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            record["time"] = datetime.now(timezone.utc)
            self._line(line(record))

    def message(
        self,
        conn: int,
        peer: str,
        direction: str,
        fields: Mapping[str, str],
        size: int,
        *,
        latency_ms: float | None = None,
        rule: str | None = None,
        note: str | None = None,
    ) -> None:
        """One message in (``"in"``) or out (``"out"``), fields masked."""
        if self._file is None:
            return
        shown = safe_fields(fields)
        record: dict[str, Any] = {
            "conn": conn, "peer": peer, "dir": direction, "mti": fields.get("t"),
            "fields": shown, "de39": fields.get("39"), "bytes": size,
        }
        if latency_ms is not None:
            record["latency_ms"] = round(latency_ms, 3)
        if rule is not None:
            record["rule"] = rule
        if note is not None:
            record["note"] = scrub(note)
        record["time"] = datetime.now(timezone.utc)  # written as isoformat() writes it
        self._line(line(record))

    def event(self, conn: int | None, peer: str | None, event: str, detail: str | None = None) -> None:
        """A connection or server event (opened, closed and why, refused, rules reloaded...)."""
        if self._file is None:
            return
        record: dict[str, Any] = {"conn": conn, "peer": peer, "event": event}
        if detail is not None:
            record["detail"] = scrub(detail)
        self._write(record)

    def flush(self) -> None:
        """Push buffered lines to the file."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and close."""
        if self._file is not None:
            self._file.flush()
            self._file.close()
            self._file = None


@dataclass
class _Conversation:
    client_port: int
    start: float
    tpdu: bytes | None = None
    messages: list[dict[str, str]] = field(default_factory=list)


class PcapRecorder:
    """Keeps the session's (redacted) messages per connection and writes them as a pcap at the end.

    Parameters
    ----------
    path : Path or None
        Where :meth:`write` puts the capture; ``None`` disables recording.
    limit : int
        Most messages kept (the rest are counted in :attr:`dropped`).
    """

    def __init__(self, path: Path | None, limit: int = 100_000) -> None:
        self.path = path
        self.limit = limit
        self.kept = 0
        self.dropped = 0
        self._conversations: dict[int, _Conversation] = {}

    @property
    def enabled(self) -> bool:
        """True when messages are being kept."""
        return self.path is not None

    def record(self, conn: int, client_port: int, fields: Mapping[str, str], tpdu: bytes | None, when: float) -> None:
        """Keep one message of connection ``conn`` (fields already redacted by the caller)."""
        if self.path is None:
            return
        if self.kept >= self.limit:
            self.dropped += 1
            return
        conv = self._conversations.get(conn)
        if conv is None:
            conv = self._conversations[conn] = _Conversation(client_port or 50000, when, tpdu)
        conv.messages.append({k: v for k, v in fields.items() if k not in ("p", "1")})
        self.kept += 1

    def write(self, port: int, dialect: Dialect, framing: Framing) -> int:
        """Write every kept conversation to :attr:`path`; returns the number of packets."""
        if self.path is None:
            return 0
        from scapy.utils import PcapWriter

        from ..iso8583.pcap import DEFAULT_TPDU, build_packets

        packets = []
        for conv in self._conversations.values():
            if not conv.messages:
                continue
            client_port = conv.client_port if conv.client_port != port else conv.client_port + 1
            packets.extend(
                build_packets(
                    conv.messages, port=port, dialect=dialect, framing=framing, start=Decimal(f"{conv.start:.6f}"),
                    client_port=client_port, tpdu=conv.tpdu or DEFAULT_TPDU, validate_messages=False,
                    think=Decimal("0.001"), latency=Decimal("0.001"),
                )
            )
        packets.sort(key=lambda p: p.time)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with PcapWriter(str(self.path), linktype=1, sync=False) as writer:
            if packets:
                writer.write(packets)
        return len(packets)
