"""``possim host``: the asyncio TCP server that runs the host core on the wall clock.

One :class:`~sim.core.host.Host` serves every connection. Each whole frame goes
through :func:`.exchange.core_answer` in the order it arrived (the core is
synchronous and fast; the event loop gives it one frame at a time), so several
requests can be in flight on one connection and their answers leave as soon as
each is ready, matched by the client on MTI class + DE41 + DE11. Frames are decoded and answers
encoded through one :class:`~sim.iso8583.layout.LayoutCodec`: pyiso8583 lays out each
shape of message once, and the rest of that shape are read and written in place.

Around the core, this module holds what a real host's front end does:

* **durability** -- with ``state``, every request the core answered is committed to
  the replay log (:mod:`.store`) *before* its answer is written; commits are grouped
  (all requests of one event-loop turn share one fsync in a writer thread), and the
  next group forms while one is being written. At start the log is replayed, so the
  ledger survives restarts and kill -9;
* **scripted misbehaviour** -- the rules overlay (:mod:`.rules`), reloaded when its
  file changes and editable through the admin endpoint (:mod:`.admin`);
* **bad input** -- a frame that does not decode is answered 30 when its MTI and key
  fields can be read, else its connection is closed (:mod:`.exchange`); a framing
  error (oversize, zero or non-numeric length) closes the connection; a partial frame
  left unfinished for ``frame_timeout`` seconds (slowloris) closes it; so do
  ``idle_timeout`` seconds of silence. Connections above ``max_connections`` are
  closed at once, and a connection with ``max_inflight`` requests waiting is not read
  until answers leave (nor while its peer does not read them). Nothing a peer sends
  stops the server or disturbs other connections;
* **journal and pcap** (:mod:`.journal`): PANs masked, no track, CVV or PIN data;
* **MACs** on a dialect that MACs (SEC-01): the core checks each request's MAC over the
  bytes received and signs its answers; answers this module builds or changes itself
  (format errors, the rules overlay's) are signed again with the terminal's key;
* **memory flat in the length of a run** (soak tests): the core runs with
  :data:`LIVE_CORE_DEFAULTS` under the operator's ``--config``, so it keeps the latest
  decisions and postings as a record, remembers what a later message may still name
  for ``retain_s`` (an hour), and prunes the rest every minute of message time;
* **graceful shutdown** (SIGTERM, SIGINT, admin ``shutdown``): stop accepting and
  reading, answer what is in flight (delayed answers included, up to
  ``drain_timeout``), commit, flush the journal, write the pcap, exit.

The core never sees the clock: this module reads it (UTC, naive, as DE7 is) and passes
``now`` in.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

from ..core.cards import load_cards
from ..core.host import Host
from ..gc_tuning import HeapKeeper, settle_heap
from ..iso8583.dialect import DEFAULT, Dialect
from ..iso8583.errors import WireError
from ..iso8583.framing import Frame, Framing, FramingError, reply_tpdu
from ..iso8583.layout import LayoutCodec
from ..iso8583.mac import MacResult, verify
from ..iso8583.message import Message
from ..iso8583.pretty import mask_pan
from .admin import AdminError, AdminServer
from .exchange import core_answer, decode_frame, encode_fields, format_error_fields, plain_answer, sign_fields
from .journal import MessageJournal, PcapRecorder, scrub
from .redact import capture_fields, redact_request
from .rules import Rule, RuleEngine, RuleError
from .store import Event, StateError, StateStore, identity, replay


LIVE_CORE_DEFAULTS: dict[str, dict[str, Any]] = {
    "issuer": {"retain_s": 3_600, "keep_decisions": 10_000, "keep_postings": 100_000, "keep_answers": 100_000},
    "acquirer": {"retain_s": 3_600, "keep_answers": 100_000},
    "settlement": {"retain_s": 3_600},
    "prune": {"every_s": 60, "unsettled": False},
}
"""What a long-running host keeps, unless its ``--config`` says otherwise.

An hour of ``retain_s``: a reversal, a repeated advice or a repeated 0500 up to an hour
after its original still finds it (set it above the terminals' store-and-forward
horizon). Entries of batches not yet settled stay until their 0500, as a batch upload
must find what is already counted; for load tools' terminals, which never settle,
``[prune] unsettled = true`` folds them into exact totals after ``retain_s`` too
(``possim load`` starts its host so). What the window holds grows with the traffic
rate: a few hundred bytes per original, so an hour at 1,000 authorizations/s is about
1.5 GB. The answers kept for duplicate requests (REV-03, 15 minutes) are capped at
``keep_answers`` each in the acquirer and the issuers (about 1.4 KB an answer: at 4,000
requests/s a 15-minute window would hold 3.6 million); past the cap a repeat of a
forgotten answer is answered 94 by the issuer's ledger, never booked twice. The admin
``booked`` command lists the latest ``keep_postings`` postings;
balances, holds and batch totals are exact whatever is pruned.
"""


def live_core_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with :data:`LIVE_CORE_DEFAULTS` under it, key by key (the operator's values win).

    >>> live_core_config({"issuer": {"retain_s": 3600}})["issuer"]
    {'retain_s': 3600, 'keep_decisions': 10000, 'keep_postings': 100000, 'keep_answers': 100000}
    """
    merged = {name: dict(section) for name, section in config.items()}
    for name, defaults in LIVE_CORE_DEFAULTS.items():
        section = merged.setdefault(name, {})
        for key, value in defaults.items():
            section.setdefault(key, value)
    return merged


_EPOCH = datetime(1970, 1, 1)


def utc_now() -> datetime:
    """The wall clock as the core takes it: UTC, without tzinfo (DE7 is GMT).

    Counted from the epoch: ``datetime.now(timezone.utc).replace(tzinfo=None)`` says the
    same at twice the cost (``replace`` alone is 0.8 us), and every request reads it.

    >>> from datetime import timezone
    >>> abs(utc_now() - datetime.now(timezone.utc).replace(tzinfo=None)) < timedelta(seconds=1)
    True
    """
    return _EPOCH + timedelta(0, 0, time.time_ns() // 1000)


@dataclass
class HostSettings:
    """Everything ``possim host`` can be told; plain data, defaults as the CLI's."""

    bind: str = "127.0.0.1"
    port: int = 8583
    admin_port: int | None = None
    dialect: Dialect = DEFAULT
    framing: Framing = field(default_factory=Framing)
    core_config: dict[str, Any] = field(default_factory=dict)
    cards: Path | None = None
    state: Path | None = None
    journal: Path | None = None
    journal_max_bytes: int | None = 256 * 1024 * 1024
    journal_keep: int = 4
    pcap: Path | None = None
    rules: Path | None = None
    idle_timeout: float = 300.0
    frame_timeout: float = 10.0
    max_connections: int = 1000
    max_inflight: int = 256
    drain_timeout: float = 10.0
    on_divergence: str = "fail"


@dataclass(slots=True)
class _Out:
    """One answer on its way out (after commit, after any delay)."""

    conn: "_Conn"
    tpdu: bytes | None
    raw: bytes | None
    fields: dict[str, str] | None
    action: str
    delay: float
    t0: float
    rule: str | None = None
    note: str | None = None


class _Conn(asyncio.Protocol):
    """One client connection: framing, timers, flow control; requests go to the server."""

    def __init__(self, server: "HostServer") -> None:
        self.server = server
        self.id = 0
        self.peer = "?"
        self.client_port = 0
        self.transport: asyncio.Transport | None = None
        self.decoder = server.settings.framing.decoder()
        self.last_activity = time.monotonic()
        self.partial_since: float | None = None
        self.inflight = 0
        self.paused_for_inflight = False
        self.paused_for_writes = False
        self.closing = False
        self.eof = False
        self.held: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        self.client_port = int(peer[1]) if len(peer) > 1 else 0
        self.server._opened(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        now = time.monotonic()
        self.last_activity = now
        try:
            frames = self.decoder.feed(data)
        except FramingError as exc:
            self.close(f"framing error: {exc}")
            return
        if self.decoder.buffered:
            if self.partial_since is None or frames:
                self.partial_since = now
        else:
            self.partial_since = None
        for frame in frames:
            if self.closing:
                break
            try:
                self.server._frame(self, frame)
            except Exception as exc:  # noqa: BLE001 - a bug here costs this connection, never the server
                self.server.counters["core_faults"] += 1
                self.close(f"internal error on this frame: {type(exc).__name__}: {exc}")

    def eof_received(self) -> bool:
        # half-closed by the peer: answers still in flight may go out, then we close
        self.eof = True
        if self.inflight == 0:
            self.close("peer closed its side", graceful=True)
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server._closed(self, exc)

    def pause_writing(self) -> None:
        self.paused_for_writes = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.paused_for_writes = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self.closing:
            return
        if self.paused_for_writes or self.paused_for_inflight or self.server.draining:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            if self.server._holding is not None:
                if not self.held:
                    self.server._holding.append(self)
                self.held.append(data)
            else:
                self.transport.write(data)

    def release(self) -> None:
        """Write the answers held back while a commit group was being answered, in one call."""
        held, self.held = self.held, []
        if held and self.transport is not None and not self.closing:
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self, reason: str, *, graceful: bool = False) -> None:
        """Close this connection; ``graceful`` lets answers already written go out first."""
        if self.closing:
            return
        self.release()
        self.closing = True
        self.server.journal.event(self.id, self.peer, "closed", reason)
        if self.transport is not None:
            if graceful:
                self.transport.close()
            else:
                self.transport.abort()


class HostServer:
    """The live host; see the module notes. Build, :meth:`start`, then :meth:`run_until_stopped`."""

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self.dialect = settings.dialect
        self.codec = LayoutCodec(settings.dialect)
        self.framing = settings.framing
        self.core_config = live_core_config(settings.core_config)
        self.host = Host(self.core_config, cards=load_cards(settings.cards) if settings.cards else None)
        self.journal = MessageJournal(settings.journal, max_bytes=settings.journal_max_bytes, keep=settings.journal_keep)
        self.pcap = PcapRecorder(settings.pcap)
        self.rules = RuleEngine.from_file(settings.rules) if settings.rules else RuleEngine()
        self.store: StateStore | None = None
        self.replayed = 0
        self._seq = 0
        self._writer: ThreadPoolExecutor | None = None
        self._batch: list[tuple[Event, _Out | None]] = []
        self._committing = False
        self._flush_scheduled = False
        self._holding: list[_Conn] | None = None
        self._conns: set[_Conn] = set()
        self._next_conn = 0
        self._server: asyncio.AbstractServer | None = None
        self._admin: AdminServer | None = None
        self._stop = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()
        self.inflight = 0
        self.draining = False
        self.port = 0
        self.admin_port = 0
        self.counters: dict[str, int] = {
            "connections": 0, "refused": 0, "requests": 0, "answered": 0, "format_errors": 0,
            "undecodable_closed": 0, "framing_closed": 0, "timeouts_closed": 0, "rules_applied": 0,
            "core_faults": 0, "commits": 0, "commit_failures": 0,
        }
        self.loop: asyncio.AbstractEventLoop | None = None
        self.heap: HeapKeeper | None = None
        """Set by :func:`serve` (a process of its own): survivors frozen by the sweep, once a second."""

    # start and stop -------------------------------------------------------------------

    def open_state(self, progress: Callable[[int], None] | None = None) -> None:
        """Open the state directory and replay it into the core (before :meth:`start`)."""
        if self.settings.state is None:
            return
        self.store = StateStore.open(self.settings.state, identity(self.core_config, self.host.cards))
        dialects = {self.dialect.name: self.dialect}
        report = replay(self.store.events(), self.host, dialects,
                        on_event=(lambda e: progress(e.seq)) if progress else None)
        if not report.ok:
            first = report.divergences[:3]
            text = "; ".join(f"event {d.seq}: stored {d.stored} / now {d.replayed}" for d in first)
            if self.settings.on_divergence == "fail":
                self.store.close()
                self.store = None
                raise StateError(
                    f"{self.settings.state}: replay gave {len(report.divergences)} different answer(s) "
                    f"({text}); the core or its configuration changed since they were stored. "
                    "Use a fresh --state directory, or --on-divergence warn to carry on"
                )
            print(f"possim host: warning: replay diverged: {text}", file=sys.stderr)
        self.replayed = report.events
        self._seq = self.store.last_seq
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="possim-state")

    async def start(self) -> None:
        """Listen on the service and admin ports."""
        self.loop = asyncio.get_running_loop()
        s = self.settings
        self._server = await self.loop.create_server(lambda: _Conn(self), s.bind, s.port, backlog=1024)
        self.port = int(self._server.sockets[0].getsockname()[1])
        admin_port = s.admin_port if s.admin_port is not None else (0 if s.port == 0 else s.port + 1)
        self._admin = AdminServer(self._commands())
        self.admin_port = await self._admin.start(s.bind if s.bind in ("127.0.0.1", "::1", "localhost") else "127.0.0.1", admin_port)
        self._sweeper = self.loop.create_task(self._sweep())
        self.journal.event(None, None, "listening", f"{s.bind}:{self.port} admin {self.admin_port} "
                           f"{self.dialect.name} {self.framing.describe()} replayed {self.replayed}")

    def request_stop(self) -> None:
        """Ask for a graceful shutdown (signal handlers and admin ``shutdown``)."""
        self._stop.set()

    async def run_until_stopped(self) -> None:
        """Serve until :meth:`request_stop`; then drain and close everything."""
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting and reading, answer what is in flight, then close everything."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn._update_reading()
        deadline = time.monotonic() + self.settings.drain_timeout
        while (self.inflight or self._batch or self._committing) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for handle in list(self._timers):
            handle.cancel()
        for conn in list(self._conns):
            if conn.transport is not None and not conn.closing:
                conn.closing = True
                self.journal.event(conn.id, conn.peer, "closed", "server shutting down")
                conn.transport.close()
        if self._admin is not None:
            await self._admin.close()
        self._sweeper.cancel()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        if self.store is not None:
            self.store.close()
        if self.pcap.enabled:
            self.pcap.write(self.port, self.dialect, self.framing)
        self.journal.event(None, None, "stopped", f"in flight at close: {self.inflight}")
        self.journal.close()

    # connections ----------------------------------------------------------------------

    def _opened(self, conn: _Conn) -> None:
        self._next_conn += 1
        conn.id = self._next_conn
        if len(self._conns) >= self.settings.max_connections or self.draining:
            self.counters["refused"] += 1
            conn.close(f"refused: {len(self._conns)} connections open (max {self.settings.max_connections})")
            return
        self._conns.add(conn)
        self.counters["connections"] += 1
        self.journal.event(conn.id, conn.peer, "opened")

    def _closed(self, conn: _Conn, exc: Exception | None) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
            if conn.decoder.buffered:
                self.journal.event(conn.id, conn.peer, "partial frame dropped", f"{conn.decoder.buffered} bytes")
            self.journal.event(conn.id, conn.peer, "disconnected", str(exc) if exc else None)

    async def _sweep(self) -> None:
        """Once a second: idle and partial-frame timeouts, journal flush, rules file reload, heap freeze."""
        s = self.settings
        while True:
            await asyncio.sleep(min(1.0, s.frame_timeout / 2, s.idle_timeout / 2))
            now = time.monotonic()
            for conn in list(self._conns):
                if conn.closing:
                    continue
                if conn.partial_since is not None and now - conn.partial_since > s.frame_timeout:
                    self.counters["timeouts_closed"] += 1
                    conn.close(f"partial frame unfinished for {s.frame_timeout:g} s")
                elif conn.inflight == 0 and now - conn.last_activity > s.idle_timeout:
                    self.counters["timeouts_closed"] += 1
                    conn.close(f"idle for {s.idle_timeout:g} s")
            self.journal.flush()
            try:
                if self.rules.check_file():
                    self.journal.event(None, None, "rules reloaded", f"{len(self.rules.rules)} rules")
            except RuleError as exc:
                self.journal.event(None, None, "rules not reloaded", str(exc))
                print(f"possim host: {exc} (the rules in force stay)", file=sys.stderr)
            if self.heap is not None:
                self.heap.tick(time.monotonic())

    # one frame ------------------------------------------------------------------------

    def _frame(self, conn: _Conn, frame: Frame) -> None:
        t0 = time.perf_counter()
        now = utc_now()
        journal = self.journal
        decoded = decode_frame(frame.payload, self.dialect, self.codec)
        fields = decoded.fields
        tpdu = reply_tpdu(frame.tpdu) if frame.tpdu is not None else None
        if fields is None:
            journal.message(conn.id, conn.peer, "in", decoded.partial, len(frame.payload), note=decoded.error)
            answer = format_error_fields(decoded.partial, now)
            if answer is not None:
                answer = sign_fields(answer, self.dialect, self.host.mac_keys)
            raw = encode_fields(answer, self.dialect) if answer is not None else None
            if raw is None or answer is None:
                self.counters["undecodable_closed"] += 1
                conn.close(f"undecodable frame without a readable key: {decoded.error}")
                return
            self.counters["format_errors"] += 1
            self._accept(conn)
            self._dispatch(_Out(conn, tpdu, raw, answer, "answer", 0.0, t0, note="format error"))
            return
        self.counters["requests"] += 1
        journal.message(conn.id, conn.peer, "in", fields, len(frame.payload))
        if self.pcap.enabled:
            self.pcap.record(conn.id, conn.client_port, capture_fields(fields), frame.tpdu, time.time())
        rule = self.rules.match(fields) if self.rules.rules else None
        self._accept(conn)
        if rule is not None:
            self.counters["rules_applied"] += 1
            if not rule.core and rule.action != "delay":
                self._dispatch(self._driver_only(conn, tpdu, fields, rule, now, t0))
                return
        result = core_answer(self.host, fields, now, self.dialect, raw=frame.payload, codec=self.codec)
        if result.fault:
            self.counters["core_faults"] += 1
        out = _Out(conn, tpdu, result.raw, result.fields, "answer", 0.0, t0, note=result.fault)
        if rule is not None:
            self._apply_rule(out, rule, now)
        if self.store is not None:
            self._seq += 1
            red = redact_request(fields, self.host.cards, mac=self._mac_verdict(fields, frame.payload, result),
                                 icc=result.icc)
            stored = frame.payload if not red.changed else self._redacted_bytes(red.fields)
            event = Event(self._seq, "message", now, self.dialect.name, stored, red.pin, result.raw, result.fault,
                          json.dumps(red.marks, sort_keys=True) if red.marks else None)
            self._enqueue(event, out)
        else:
            self._dispatch(out)

    def _mac_verdict(self, fields: dict[str, str], raw: bytes, result: Any) -> MacResult | None:
        """The core's verdict on the request's MAC, for the replay log (``None``: the dialect does not MAC).

        The core answers 63 to a MAC that does not verify and to nothing else, so any
        other answer of the core says the MAC was valid; only a 63 or a fault costs a
        second check here.
        """
        if self.dialect.mac_field is None:
            return None
        if result.fault is None and result.fields.get("39") != "63":
            return MacResult.VALID
        return verify(Message(fields), self.dialect, self.host.mac_keys.key_for(fields.get("41")), raw=raw)

    def _redacted_bytes(self, fields: Mapping[str, str]) -> bytes:
        """The redacted request as stored; a field the dialect will not take redacted is left out.

        (A field the dialect defines more narrowly than pyiso8583's default may refuse
        what the redaction put there.) Replay then checks that the core's answer did not
        depend on it.
        """
        data = {k: v for k, v in fields.items() if k not in ("p", "1")}
        try:
            return self.codec.encode(data)
        except WireError:
            for key in ("35", "45", "52"):
                data.pop(key, None)
            return self.codec.encode(data)

    def _accept(self, conn: _Conn) -> None:
        self.inflight += 1
        conn.inflight += 1
        if conn.inflight >= self.settings.max_inflight and not conn.paused_for_inflight:
            conn.paused_for_inflight = True
            conn._update_reading()

    def _driver_only(self, conn: _Conn, tpdu: bytes | None, fields: dict[str, str], rule: Rule, now: datetime, t0: float) -> _Out:
        """A rule with ``core = false``: the core never sees the request."""
        out = _Out(conn, tpdu, None, None, rule.action, rule.delay_ms / 1000, t0, rule=rule.name)
        if rule.action in ("respond", "malformed"):
            built = plain_answer(fields, rule.code or "96", now, self.dialect, self.host.mac_keys)
            if built is not None:
                out.raw, out.fields = built
                out.action = "answer"
            if rule.action == "malformed":
                out.action = "malformed"
        return out

    def _apply_rule(self, out: _Out, rule: Rule, now: datetime) -> None:
        out.rule = rule.name
        out.delay = rule.delay_ms / 1000
        if rule.action == "respond" and out.fields is not None:
            fields = dict(out.fields)
            fields["39"] = rule.code or fields.get("39", "96")
            if rule.code != "00":
                for key in ("38", "55"):  # no authorization code or ARPC on a refusal
                    fields.pop(key, None)
            fields = sign_fields(fields, self.dialect, self.host.mac_keys)  # its MAC covered the old DE39
            raw = encode_fields(fields, self.dialect)
            if raw is not None:
                out.raw, out.fields = raw, fields
        elif rule.action in ("drop", "close", "malformed"):
            out.action = rule.action

    # durability: group commit ---------------------------------------------------------

    def _enqueue(self, event: Event, out: _Out | None) -> None:
        self._batch.append((event, out))
        if not self._committing and not self._flush_scheduled:
            self._flush_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._committing or not self._batch or self.store is None or self.loop is None:
            return
        batch, self._batch = self._batch, []
        self._committing = True
        self.counters["commits"] += 1
        fut = self.loop.run_in_executor(self._writer, self.store.append, [e for e, _ in batch])
        fut.add_done_callback(lambda f: self._committed(f, batch))

    def _committed(self, fut: asyncio.Future[None], batch: list[tuple[Event, _Out | None]]) -> None:
        self._committing = False
        exc = fut.exception()
        # a connection's answers of this group leave in one socket write (several may be in flight on it)
        self._holding = holding = []
        try:
            for _, out in batch:
                if out is None:
                    continue
                if exc is not None:
                    self.counters["commit_failures"] += 1
                    self._finished(out)
                    out.conn.close(f"state store failed, request not answered: {exc}")
                else:
                    self._dispatch(out)
        finally:
            self._holding = None
            for conn in holding:
                conn.release()
        if exc is not None:
            print(f"possim host: state store commit failed: {exc}", file=sys.stderr)
        if self._batch:
            self._flush()

    # answers --------------------------------------------------------------------------

    def _dispatch(self, out: _Out) -> None:
        if out.delay > 0:
            assert self.loop is not None
            handle: asyncio.TimerHandle | None = None

            def fire() -> None:
                self._timers.discard(handle)  # type: ignore[arg-type]
                out.delay = 0.0
                self._dispatch(out)

            handle = self.loop.call_later(out.delay, fire)
            self._timers.add(handle)
            return
        conn = out.conn
        try:
            self._answer(conn, out)
        finally:
            self._finished(out)

    def _answer(self, conn: _Conn, out: _Out) -> None:
        if out.action == "close":
            conn.close(f"rule {out.rule}: close instead of answering")
            return
        if out.action == "drop" or out.raw is None:
            self.journal.event(conn.id, conn.peer, "answer dropped", f"rule {out.rule}" if out.rule else out.note)
            return
        raw = out.raw
        if out.action == "malformed":
            raw = bytes((b * 7 + 13) & 0xFF for b in raw)  # same length, not ISO 8583
        try:
            conn.write(self.framing.frame(raw, out.tpdu))
        except FramingError as exc:
            conn.close(f"answer does not frame: {exc}")
            return
        self.counters["answered"] += 1
        if self.journal.enabled and out.fields is not None:
            self.journal.message(conn.id, conn.peer, "out", out.fields, len(raw),
                                 latency_ms=(time.perf_counter() - out.t0) * 1000, rule=out.rule, note=out.note)
        if self.pcap.enabled and out.fields is not None and out.action != "malformed":
            self.pcap.record(conn.id, conn.client_port, out.fields, out.tpdu, time.time())

    def _finished(self, out: _Out) -> None:
        self.inflight -= 1
        conn = out.conn
        conn.inflight -= 1
        if conn.paused_for_inflight and conn.inflight < self.settings.max_inflight // 2 + 1:
            conn.paused_for_inflight = False
            conn._update_reading()
        if conn.inflight == 0 and conn.eof and not conn.closing:
            conn.close("peer closed its side", graceful=True)

    # admin ----------------------------------------------------------------------------

    def _commands(self) -> dict[str, Any]:
        def status(_req: dict[str, Any]) -> dict[str, Any]:
            return {"port": self.port, "connections_open": len(self._conns), "in_flight": self.inflight,
                    "events_stored": self._seq if self.store else None, "replayed": self.replayed,
                    "dialect": self.dialect.name, "framing": self.framing.describe(),
                    "journal_rotations": self.journal.rotations,
                    "heap_freezes": self.heap.freezes if self.heap else 0,
                    "heap_full_collections": self.heap.full_collections if self.heap else 0, **self.counters}

        def rules(_req: dict[str, Any]) -> dict[str, Any]:
            return {"rules": [r.to_dict() for r in self.rules.rules], "counts": self.rules.counts()}

        def add_rule(req: dict[str, Any]) -> dict[str, Any]:
            rule = self.rules.add(req.get("rule", {k: v for k, v in req.items() if k != "cmd"}))
            self.journal.event(None, None, "rule added", rule.name)
            return {"rule": rule.to_dict()}

        def clear_rules(_req: dict[str, Any]) -> dict[str, Any]:
            self.rules.clear()
            self.journal.event(None, None, "rules cleared")
            return {"rules": []}

        def reload(_req: dict[str, Any]) -> dict[str, Any]:
            self.rules.reload()
            self.journal.event(None, None, "rules reloaded", f"{len(self.rules.rules)} rules")
            return rules(_req)

        def issuer(req: dict[str, Any]) -> dict[str, Any]:
            issuer_id, up = req.get("issuer"), req.get("up")
            if issuer_id not in self.host.issuers:
                raise AdminError(f"issuer {issuer_id!r} unknown; known: {', '.join(self.host.issuers)}")
            if not isinstance(up, bool):
                raise AdminError(f"'up' is {up!r}; allowed: true or false")
            now = utc_now()
            self.host.set_issuer_available(issuer_id, up, now)
            if self.store is not None:
                self._seq += 1
                self._enqueue(Event(self._seq, "issuer", now, detail=json.dumps({"issuer": issuer_id, "up": up})), None)
            return {"issuer": issuer_id, "up": up}

        def balance(req: dict[str, Any]) -> dict[str, Any]:
            pan = req.get("pan")
            if not isinstance(pan, str):
                raise AdminError("'pan' is required: the card number as a string")
            try:
                return {"pan": mask_pan(pan), "balance": self.host.balance(pan), "available": self.host.available(pan)}
            except KeyError as exc:
                raise AdminError(scrub(str(exc))) from None

        def booked(_req: dict[str, Any]) -> dict[str, Any]:
            rows = []
            for e in self.host.booked_effects():
                rows.append({"terminal_id": e.terminal_id, "stan": e.stan, "transmitted": e.transmitted,
                             "pan": mask_pan(e.pan), "amount": e.amount, "currency": e.currency, "kind": e.kind})
            return {"booked": rows}

        def shutdown(_req: dict[str, Any]) -> dict[str, Any]:
            assert self.loop is not None
            self.loop.call_later(0.05, self.request_stop)
            return {"stopping": True}

        return {"status": status, "rules": rules, "add_rule": add_rule, "clear_rules": clear_rules,
                "reload": reload, "issuer": issuer, "balance": balance, "booked": booked, "shutdown": shutdown}


async def serve(settings: HostSettings, *, ready: Callable[[HostServer], None] | None = None) -> HostServer:
    """Open state, listen, call ``ready``, serve until SIGTERM/SIGINT/admin ``shutdown``, drain, close.

    Before serving, the heap built so far (the core, the card set, the replayed ledger)
    is taken out of the cyclic collector's sight and its youngest generation is let grow
    larger (:func:`sim.gc_tuning.settle_heap`): a request leaves a few dozen
    short-lived containers, nearly all freed by reference counting, and the collector
    otherwise walks the whole long-lived heap again and again. While serving, the sweep
    freezes each second's survivors the same way (:class:`sim.gc_tuning.HeapKeeper`),
    with a full collection once an hour.
    """
    server = HostServer(settings)
    server.open_state()
    await server.start()
    settle_heap()
    server.heap = HeapKeeper(time.monotonic())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, server.request_stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            pass
    if ready is not None:
        ready(server)
    await server.run_until_stopped()
    return server
