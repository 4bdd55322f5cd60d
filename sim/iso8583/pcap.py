"""Pcap files of ISO 8583 traffic: read them back into messages, write realistic ones.

:func:`read_messages` follows each TCP stream to or from the host port, puts its
segments back in sequence order (dropping retransmitted bytes), cuts frames with
:class:`~sim.iso8583.framing.StreamDecoder` (so a message split over several
segments, or several messages in one segment, come out whole) and decodes each
frame with a :class:`~sim.iso8583.dialect.Dialect`.

:func:`write_pcap` does the reverse: it plays a list of messages as one TCP
connection between a terminal (``127.0.0.1:<ephemeral>``) and a host
(``127.0.0.1:<port>``), with handshake, sequence and acknowledgement numbers,
ACKs and an orderly close, at deterministic times. Wireshark and tshark follow
the stream without complaint (see ``tests/test_tshark_oracle.py``).

No network traffic is involved: both functions work on files only.

Examples
--------
>>> import tempfile, pathlib
>>> from sim.iso8583.samples import sample_exchange
>>> path = pathlib.Path(tempfile.mkdtemp()) / "sample.pcap"
>>> write_pcap(path, sample_exchange(), max_segment=100)
24
>>> [(c.mti, c.direction) for c in read_messages(path)][:3]
[('0800', 'request'), ('0810', 'response'), ('0200', 'request')]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from os import PathLike
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from scapy.error import Scapy_Exception
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import PcapReader, PcapWriter

from .catalogue import MESSAGE_TYPES, validate
from .dialect import DEFAULT, Dialect
from .errors import FramingError, MessageError, WireError
from .framing import Frame, Framing, reply_tpdu
from .message import Message
from .pretty import summary

__all__ = [
    "CaptureError", "Captured", "DEFAULT_START", "DEFAULT_TPDU", "build_packets", "direction_of",
    "read_messages", "write_pcap",
]

DEFAULT_PORT = 8583
DEFAULT_START = Decimal("1764585000")
"""Default time of the first packet written: 2025-12-01 10:30:00 UTC (a fixed value, never the clock)."""
DEFAULT_TPDU = bytes.fromhex("6000010000")
"""TPDU of requests when the framing has one: ID 60, destination NII 0001, source 0000."""
LOOPBACK = "127.0.0.1"
TERMINAL_PORT = 50123
"""The terminal's (ephemeral) source port in written captures."""
LOOPBACK_MSS = 65495
"""Largest TCP payload on loopback: the most a 65535-byte IPv4 datagram can carry after 40 bytes of headers."""
_WINDOW_SCALE = 7
_WINDOW = 512  # 512 << 7 = 64 KiB, what Linux advertises on loopback once the handshake is done
_MAC = "00:00:00:00:00:00"  # what Linux loopback captures carry
_SEQ_MOD = 1 << 32


class CaptureError(WireError):
    """A file is not a pcap/pcapng capture scapy can read, or holds no usable TCP."""


@dataclass(frozen=True)
class Captured:
    """One ISO 8583 message found in a capture.

    Attributes
    ----------
    time : Decimal
        Capture time (seconds since the epoch) of the segment that completed the message.
    src, dst : str
        ``"ip:port"`` of sender and receiver.
    direction : str
        ``"request"`` or ``"response"`` (see :func:`direction_of`).
    fields : dict or None
        Decoded fields (``{"t": "0200", "2": ..., ...}``); None when undecodable. Read-only.
    error : str or None
        Why the frame did not decode or the stream could not be followed; None when fine.
    raw : bytes
        The frame's message bytes (length header and TPDU removed). Holds card data: never print it.
    tpdu : bytes or None
        The frame's TPDU when the framing has one.
    """

    time: Decimal
    src: str
    dst: str
    direction: str
    fields: dict[str, str] | None = field(repr=False)
    error: str | None = None
    raw: bytes = field(default=b"", repr=False)
    tpdu: bytes | None = None

    def __repr__(self) -> str:
        what = summary(self.fields) if self.fields is not None else f"error={self.error!r}"
        return f"<Captured {self.time} {self.direction} {self.src} -> {self.dst} {what}>"

    @property
    def mti(self) -> str | None:
        """The message type, or None when the frame did not decode."""
        return self.fields.get("t") if self.fields else None

    @property
    def message(self) -> Message | None:
        """The fields as a :class:`~sim.iso8583.message.Message` (not validated), or None."""
        return Message(dict(self.fields)) if self.fields is not None else None


def direction_of(mti: str | None, to_host: bool) -> str:
    """Whether a message is a ``"request"`` or a ``"response"``.

    The catalogue decides for the MTIs it knows (``MessageType.is_request``); for
    other MTIs, ISO 8583's message function digit (third digit even: request or
    advice; odd: a response to one); without an MTI, the TCP direction (towards
    the host port: request).

    >>> direction_of("0221", False), direction_of("0130", True), direction_of("0600", False)
    ('request', 'response', 'request')
    >>> direction_of(None, True)
    'request'
    """
    if mti in MESSAGE_TYPES:
        return "request" if MESSAGE_TYPES[mti].is_request else "response"
    if mti is not None and len(mti) == 4 and mti.isdigit():
        return "request" if int(mti[2]) % 2 == 0 else "response"
    return "request" if to_host else "response"


# Reading -------------------------------------------------------------------------------------


@dataclass
class _Segment:
    order: int
    time: Decimal
    offset: int  # bytes since the stream's first data byte (ISN + 1)
    payload: bytes


@dataclass
class _Flow:
    src: str
    dst: str
    to_host: bool
    isn: int | None = None
    segments: list[_Segment] = field(default_factory=list)


def _open_capture(path: Path) -> PcapReader:
    try:
        return PcapReader(str(path))
    except OSError as exc:
        raise type(exc)(exc.errno, f"{path}: cannot read capture: {exc.strerror}") from None
    except Scapy_Exception:
        raise CaptureError(f"{path}: not a pcap or pcapng capture file") from None


def _tcp_payload(pkt: Packet) -> tuple[str, str, TCP, bytes] | None:
    """(src ip, dst ip, TCP layer, payload without link padding), or None for non-TCP packets."""
    if IP in pkt:
        ip = pkt[IP]
        tcp = ip.payload
        if type(tcp) is not TCP or ip.frag or ip.flags.MF:  # not TCP, an ICMP quote, or a fragment
            return None
        size = ip.len - ip.ihl * 4 if ip.len else len(tcp.original)
        src, dst = ip.src, ip.dst
    elif IPv6 in pkt:
        ip6 = pkt[IPv6]
        tcp = ip6.getlayer(TCP)
        if type(tcp) is not TCP:
            return None
        size = len(tcp.original)
        src, dst = f"[{ip6.src}]", f"[{ip6.dst}]"
    else:
        return None
    original = tcp.original or bytes(tcp)
    return src, dst, tcp, original[tcp.dataofs * 4 : max(size, tcp.dataofs * 4)]


def _collect(path: Path, port: int) -> list[_Flow]:
    """Read the capture and sort its TCP segments into flows (one per direction of a connection)."""
    flows: dict[tuple[str, int, str, int, int], _Flow] = {}
    generation: dict[tuple[str, int, str, int], int] = {}
    reader = _open_capture(path)
    try:
        for order, pkt in enumerate(_packets(reader, path)):
            found = _tcp_payload(pkt)
            if found is None:
                continue
            src, dst, tcp, payload = found
            if port not in (tcp.sport, tcp.dport):
                continue
            conn = (src, tcp.sport, dst, tcp.dport)
            syn = bool(tcp.flags.S)
            flow = flows.get((*conn, generation.get(conn, 0)))
            if syn and flow is not None and flow.isn is not None and flow.isn != tcp.seq:
                generation[conn] = generation.get(conn, 0) + 1  # the 4-tuple is reused by a new connection
                flow = None
            if flow is None:
                flow = _Flow(f"{src}:{tcp.sport}", f"{dst}:{tcp.dport}", tcp.dport == port)
                flows[(*conn, generation.get(conn, 0))] = flow
            if syn:
                flow.isn = tcp.seq
            elif flow.isn is None:
                flow.isn = (tcp.seq - 1) % _SEQ_MOD  # capture began mid-stream
            if payload:
                offset = (tcp.seq - flow.isn - 1) % _SEQ_MOD
                flow.segments.append(_Segment(order, Decimal(pkt.time), offset, payload))
    finally:
        reader.close()
    return list(flows.values())


def _packets(reader: PcapReader, path: Path) -> Iterator[Packet]:
    try:
        yield from reader
    except Scapy_Exception as exc:
        raise CaptureError(f"{path}: damaged capture: {exc}") from None
    except EOFError:
        raise CaptureError(f"{path}: capture is truncated") from None


def _in_order(flow: _Flow) -> Iterator[tuple[_Segment, bytes, int]]:
    """(segment, its bytes not seen before, bytes missing before it) in stream order."""
    expected = 0
    for seg in sorted(flow.segments, key=lambda s: (s.offset, s.order)):
        end = seg.offset + len(seg.payload)
        if end <= expected:
            continue  # retransmission of bytes already delivered
        gap = max(seg.offset - expected, 0)
        new = seg.payload[max(expected - seg.offset, 0) :]
        expected = end
        yield seg, new, gap


def _frames(flow: _Flow, framing: Framing) -> Iterator[tuple[Decimal, Frame | str]]:
    """(time, frame) for each whole frame of a flow, or (time, error text) where it cannot be followed."""
    decoder = framing.decoder()
    last = Decimal(0)
    for seg, data, gap in _in_order(flow):
        last = max(last, seg.time)  # a frame is whole only once every earlier byte has arrived
        if gap:
            yield last, f"{gap} bytes of the stream were not captured; frames resume at the next segment"
            decoder = framing.decoder()
        try:
            for frame in decoder.feed(data):
                yield last, frame
        except FramingError as exc:
            yield last, f"stream cannot be followed: {exc}"
            return
    if decoder.buffered:
        yield last, f"stream ends inside a frame ({decoder.buffered} bytes of an incomplete frame)"


def _record(flow: _Flow, time: Decimal, item: Frame | str, dialect: Dialect) -> Captured:
    if isinstance(item, str):
        return Captured(time, flow.src, flow.dst, direction_of(None, flow.to_host), None, item)
    try:
        fields = dialect.decode(item.payload)
    except WireError as exc:
        return Captured(time, flow.src, flow.dst, direction_of(None, flow.to_host), None, str(exc), item.payload, item.tpdu)
    return Captured(time, flow.src, flow.dst, direction_of(fields.get("t"), flow.to_host), fields, None, item.payload, item.tpdu)


def read_messages(
    path: str | PathLike[str],
    port: int = DEFAULT_PORT,
    dialect: Dialect = DEFAULT,
    framing: Framing = Framing(),
) -> list[Captured]:
    """Every ISO 8583 message carried over TCP to or from ``port`` in a capture.

    Parameters
    ----------
    path : str or path
        A pcap or pcapng file (Ethernet, Linux cooked, raw IP or loopback link types).
    port : int
        The host's TCP port; both directions of every connection to it are read.
    dialect : Dialect
        Decodes each message.
    framing : Framing
        How messages are delimited on the stream.

    Returns
    -------
    list of Captured
        In time order (messages of one stream keep their stream order). A frame
        that does not decode, a stream that cannot be followed (garbage length,
        missing segments) or ends mid-frame gives a record with ``fields=None``
        and ``error`` saying why.

    Raises
    ------
    FileNotFoundError, OSError
        The file cannot be opened (the message names it).
    CaptureError
        The file is not a capture scapy can read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sim.iso8583.samples import sample_exchange
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.pcap"
    >>> _ = write_pcap(path, sample_exchange()[:2])
    >>> [(c.src, c.dst, c.mti) for c in read_messages(path)]
    [('127.0.0.1:50123', '127.0.0.1:8583', '0800'), ('127.0.0.1:8583', '127.0.0.1:50123', '0810')]
    """
    path = Path(path)
    records: list[tuple[Decimal, int, int, Captured]] = []
    for flow_no, flow in enumerate(_collect(path, port)):
        for seq_no, (time, item) in enumerate(_frames(flow, framing)):
            records.append((time, flow_no, seq_no, _record(flow, time, item, dialect)))
    records.sort(key=lambda r: (r[0], r[1], r[2]))  # frame times never decrease within a stream
    return [r[3] for r in records]


# Writing -------------------------------------------------------------------------------------


@dataclass
class _Side:
    """One end of the connection: address and next sequence number to send."""

    port: int
    seq: int
    ip_id: int = 1

    def next_id(self) -> int:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.ip_id


class _Conversation:
    """Builds the packets of one TCP connection, advancing sequence numbers and time."""

    def __init__(self, client: _Side, server: _Side, start: Decimal, step: Decimal) -> None:
        self.client, self.server = client, server
        self.now = start
        self.step = step
        self.packets: list[Packet] = []

    def send(self, sender: _Side, receiver: _Side, flags: str, payload: bytes = b"", **options: Any) -> None:
        ip = IP(src=LOOPBACK, dst=LOOPBACK, id=sender.next_id(), flags="DF", ttl=64)
        ack = receiver.seq if "A" in flags else 0
        window = LOOPBACK_MSS if "S" in flags else _WINDOW  # the SYN's window is never scaled
        tcp = TCP(sport=sender.port, dport=receiver.port, flags=flags, seq=sender.seq, ack=ack, window=window, **options)
        pkt = Ether(src=_MAC, dst=_MAC) / ip / tcp
        if payload:
            pkt = pkt / payload
        pkt.time = self.now
        self.packets.append(pkt)
        self.now += self.step
        advance = len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        sender.seq = (sender.seq + advance) % _SEQ_MOD

    def handshake(self) -> None:
        mss = [("MSS", LOOPBACK_MSS), ("SAckOK", b""), ("WScale", _WINDOW_SCALE)]
        self.send(self.client, self.server, "S", options=mss)
        self.send(self.server, self.client, "SA", options=mss)
        self.send(self.client, self.server, "A")

    def data(self, sender: _Side, receiver: _Side, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.send(sender, receiver, "PA", chunk)
        self.send(receiver, sender, "A")

    def close(self) -> None:
        self.send(self.client, self.server, "FA")
        self.send(self.server, self.client, "FA")
        self.send(self.client, self.server, "A")

    def wait(self, seconds: Decimal) -> None:
        self.now += seconds


def _segments(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        size = next(sizes)
        yield data[pos : pos + size]
        pos += size


def _sizes(max_segment: int | Sequence[int] | None) -> Iterator[int]:
    if max_segment is None:
        return itertools.repeat(LOOPBACK_MSS)
    sizes = [max_segment] if isinstance(max_segment, int) else list(max_segment)
    if not sizes:
        raise ValueError("max_segment: an empty list of segment sizes")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= LOOPBACK_MSS:
            raise ValueError(f"max_segment: segment size {size!r} out of range; allowed: 1..{LOOPBACK_MSS}")
    return itertools.cycle(sizes)


def _fields_of(message: Message | Mapping[str, str], index: int) -> dict[str, str]:
    if isinstance(message, Message):
        return dict(message.fields)
    if isinstance(message, Mapping):
        return dict(message)
    raise MessageError(f"message [{index}]: expected a Message or a field dict, got {type(message).__name__}")


def _prepare(
    messages: Iterable[Message | Mapping[str, str]], dialect: Dialect, check: bool
) -> list[tuple[bool, bytes]]:
    """(is request, encoded bytes) per message; errors name the message's index (from 0)."""
    out = []
    for index, message in enumerate(messages):
        fields = _fields_of(message, index)
        fields.pop("p", None)
        fields.pop("1", None)
        mti = fields.get("t")
        try:
            if check:
                validate(fields, mac_field=dialect.mac_field)
            raw = dialect.encode(fields)
        except MessageError as exc:
            raise MessageError(f"message [{index}] ({mti}): {exc}", field=exc.field) from None
        out.append((direction_of(mti, True) == "request", raw))
    return out


def build_packets(
    messages: Iterable[Message | Mapping[str, str]],
    *,
    port: int = DEFAULT_PORT,
    dialect: Dialect = DEFAULT,
    framing: Framing = Framing(),
    start: Decimal | float | int = DEFAULT_START,
    client_port: int = TERMINAL_PORT,
    max_segment: int | Sequence[int] | None = None,
    batch: bool = False,
    think: Decimal | float = Decimal("0.250"),
    latency: Decimal | float = Decimal("0.040"),
    tpdu: bytes = DEFAULT_TPDU,
    validate_messages: bool = True,
) -> list[Packet]:
    """The packets of one terminal-to-host TCP connection carrying ``messages``.

    Parameters are those of :func:`write_pcap`, which writes the result.

    Raises
    ------
    MessageError
        A message breaks the catalogue or cannot be encoded (names its index and field).
    FramingError
        A message is too long for the framing, or ``tpdu`` is not 5 bytes.
    ValueError
        A port, segment size or time step out of range.
    """
    for name, value in (("port", port), ("client_port", client_port)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFF:
            raise ValueError(f"{name} {value!r} out of range; allowed: 1..65535")
    if port == client_port:
        raise ValueError(f"port and client_port are both {port}; a connection needs two ports")
    sizes = _sizes(max_segment)
    think_s, latency_s = Decimal(str(think)), Decimal(str(latency))
    if think_s < 0 or latency_s < 0:
        raise ValueError(f"think {think} and latency {latency} must not be negative")
    prepared = _prepare(messages, dialect, validate_messages)
    # Deterministic initial sequence numbers derived from the ports (no randomness, no clock).
    client = _Side(client_port, (client_port * 7919 + 1) % _SEQ_MOD)
    server = _Side(port, (port * 104729 + 3) % _SEQ_MOD)
    conv = _Conversation(client, server, Decimal(str(start)), Decimal("0.000050"))
    conv.handshake()
    pending: list[bytes] = []
    pending_request: bool | None = None

    def flush() -> None:
        if not pending:
            return
        sender, receiver = (client, server) if pending_request else (server, client)
        conv.wait(think_s if pending_request else latency_s)
        conv.data(sender, receiver, _segments(b"".join(pending), sizes))
        pending.clear()

    for is_request, raw in prepared:
        tp = None
        if framing.tpdu:
            tp = tpdu if is_request else reply_tpdu(tpdu)
        frame = framing.frame(raw, tp)
        if pending and (is_request != pending_request or not batch):
            flush()
        pending_request = is_request
        pending.append(frame)
    flush()
    conv.wait(think_s)
    conv.close()
    return conv.packets


def write_pcap(
    path: str | PathLike[str],
    messages: Iterable[Message | Mapping[str, str]],
    port: int = DEFAULT_PORT,
    dialect: Dialect = DEFAULT,
    framing: Framing = Framing(),
    *,
    start: Decimal | float | int = DEFAULT_START,
    client_port: int = TERMINAL_PORT,
    max_segment: int | Sequence[int] | None = None,
    batch: bool = False,
    think: Decimal | float = Decimal("0.250"),
    latency: Decimal | float = Decimal("0.040"),
    tpdu: bytes = DEFAULT_TPDU,
    validate_messages: bool = True,
) -> int:
    """Write ``messages`` as one TCP connection between a terminal and a host, on loopback.

    Requests (MTIs the catalogue says expect an answer) go from
    ``127.0.0.1:<client_port>`` to ``127.0.0.1:<port>``; responses come back.
    The connection opens with a three-way handshake, each burst of data is
    ACKed by its receiver, and the terminal closes with FIN.

    Parameters
    ----------
    path : str or path
        The pcap file to write (Ethernet link type, microsecond times).
    messages : iterable of Message or dict
        In the order they cross the wire; dicts are pyiso8583 field dicts.
    port : int
        The host's TCP port.
    dialect : Dialect
        Encodes the messages.
    framing : Framing
        Length header (and TPDU) in front of each message.
    start : Decimal, float or int
        Time of the first packet, seconds since the epoch. Every later time is
        derived from it: the same arguments always give the same bytes.
    client_port : int
        The terminal's ephemeral port.
    max_segment : int or sequence of int, optional
        Largest TCP payload; a sequence is cycled through segment by segment
        (irregular splits, for testing reassembly). Default: one segment per send.
    batch : bool
        Send consecutive messages going the same way in one write, so that
        several share a segment.
    think, latency : Decimal or float
        Seconds before each request burst and before each response burst.
    tpdu : bytes
        The requests' TPDU when ``framing`` has one; responses swap its addresses.
    validate_messages : bool
        Check each message against the catalogue first (the default).

    Returns
    -------
    int
        Number of packets written.

    Raises
    ------
    MessageError, FramingError
        A message is invalid or cannot be framed (index and field named).
    OSError
        The file cannot be written (the message names it).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sim.iso8583.samples import sample_exchange
    >>> write_pcap(pathlib.Path(tempfile.mkdtemp()) / "s.pcap", sample_exchange())
    18
    """
    packets = build_packets(
        messages, port=port, dialect=dialect, framing=framing, start=start, client_port=client_port,
        max_segment=max_segment, batch=batch, think=think, latency=latency, tpdu=tpdu,
        validate_messages=validate_messages,
    )
    path = Path(path)
    try:
        with PcapWriter(str(path), linktype=1, sync=False) as writer:
            writer.write(packets)
    except OSError as exc:
        raise type(exc)(exc.errno, f"{path}: cannot write capture: {exc.strerror}") from None
    return len(packets)
