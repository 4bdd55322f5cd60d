"""The live terminal process: state directory, host link, terminal, ECR port, signals.

``possim terminal --serve`` runs :func:`serve`: it opens (or creates) the state
directory, recovers what a crash left there, connects to the host on demand, listens
for the cash register on 127.0.0.1, writes the ready file (``{"pid", "port", "ecr",
"kind": "terminal", "state"}``, atomically, see :mod:`sim.live.process`) and runs
until SIGTERM or SIGINT. Stopping closes the ECR port, lets a transaction in progress
finish, and leaves everything still owed in the store for the next start.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from ...core.cards import CardSet
from ...iso8583.dialect import DEFAULT, Dialect
from ...iso8583.framing import Framing
from ...iso8583.mac import TEST_MAC_KEY
from ...profiles import HardwareProfile
from .ecr import EcrServer
from .engine import Terminal, TerminalSettings
from .link import HostLink
from .store import StoreError, TerminalStore

__all__ = ["ServeOptions", "serve"]

STORE_FILE = "terminal.sqlite"
LOCK_FILE = "terminal.lock"


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``possim terminal --serve`` was told."""

    state: Path
    host: str
    port: int
    profile: HardwareProfile
    cards: CardSet
    ecr_host: str = "127.0.0.1"
    ecr_port: int = 0
    settings: TerminalSettings = TerminalSettings()
    dialect: Dialect = DEFAULT
    framing: Framing = Framing()
    mac_key: bytes | None = TEST_MAC_KEY
    """Signs requests and checks answers when the dialect MACs."""


async def serve(options: ServeOptions, *, ready: Callable[[Terminal, int], None] | None = None) -> None:
    """Run the live terminal until SIGTERM/SIGINT (see the module notes)."""
    options.state.mkdir(parents=True, exist_ok=True)
    lock = lock_state(options.state)
    store = TerminalStore(options.state / STORE_FILE)
    s = options.settings
    link = HostLink(
        options.host, options.port, dialect=options.dialect, framing=options.framing,
        response_timeout=s.response_timeout if s.response_timeout is not None else float(options.profile.timeouts.host_response_s),
        connect_timeout=s.connect_timeout if s.connect_timeout is not None else float(options.profile.timeouts.connect_s),
        backoff=s.backoff, backoff_max=s.backoff_max, mac_key=options.mac_key,
    )
    terminal = Terminal(s, options.profile, store, options.cards, link)
    await terminal.start()
    ecr = EcrServer(terminal)
    port = await ecr.start(options.ecr_host, options.ecr_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            pass
    if terminal.recovered:
        print(f"possim terminal: {len(terminal.recovered)} request(s) were in flight at the last stop; "
              "their reversals are owed", file=sys.stderr, flush=True)
    if ready is not None:
        ready(terminal, port)
    try:
        await stop.wait()
    finally:
        await ecr.close()
        await terminal.shutdown()
        store.close()
        lock.close()


def lock_state(state: Path) -> IO[str]:
    """Hold an exclusive lock on ``state`` for the life of the process (released by the OS on kill -9).

    Two terminals on one state directory would both forward what is owed and share
    STANs; the second is refused with the first one's PID.
    """
    handle = open(state / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise StoreError(f"state directory {state} is in use by another terminal process (pid {holder})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
