"""A private pcscd in its own mount and network namespaces, for tests, demos and CI.

pcscd insists on ``/run/pcscd`` (its socket and pid file) and vpcd on TCP port 35963;
a machine may already run its own pcscd, or another test run may be using the port.
So every run gets its own namespaces:

* a **mount namespace** with a tmpfs on ``/run/pcscd`` (or, where that directory does
  not exist on the host, on ``/run``), so pcscd's socket and pid file live and die
  with the run and the host's ``/run`` is never written;
* a **network namespace** with only the loopback interface (brought up), where vpcd
  listens on port 35963 and the card bridge connects to ``127.0.0.1``.

How it is put together::

    host process (pytest, CLI)            namespaces (unshare --mount --net)
    ─────────────────────────────         ──────────────────────────────────────────
    PrivatePcscd.start()  ── unshare ──▶  python -m sim.pcsc.pcscd run-in-namespace
                                            tmpfs on /run/pcscd, lo up
                                            pcscd -f  (child, dies with the helper)
                          ◀── stdout ───    {"event": "ready", ...}
    PrivatePcscd.python(...) ─ nsenter ─▶  python -m sim.pcsc.vpcd --card healthy
    PrivatePcscd.python(...) ─ nsenter ─▶  python -m sim.pcsc.transport session
    PrivatePcscd.stop()   ── close stdin ▶  helper stops pcscd by PID, exits

Every process is started here and stopped here by PID, with timeouts; pcscd also gets
``PR_SET_PDEATHSIG`` so it cannot outlive a helper that was killed. Nothing is ever
stopped by name. For a one-shot run (CI, a demo) the helper can run a command itself::

    unshare --mount --net python -m sim.pcsc.pcscd run-in-namespace --card healthy -- \\
        python -m sim.pcsc.transport send 00A404000E325041592E5359532E444446303100

Creating namespaces needs ``CAP_SYS_ADMIN``: root, or (where the kernel allows
unprivileged user namespaces) a user namespace, which :class:`PrivatePcscd` adds on
its own when not run as root. :func:`support_problem` says what is missing.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Sequence

__all__ = [
    "NamespaceError",
    "PrivatePcscd",
    "RUN_DIR",
    "SOCKET_PATH",
    "VPCD_CONFIG",
    "VPCD_DRIVER",
    "child_env",
    "main",
    "namespace_argv",
    "read_line",
    "stop_process",
    "support_problem",
]

RUN_DIR = "/run/pcscd"
SOCKET_PATH = f"{RUN_DIR}/pcscd.comm"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
VPCD_CONFIG = "/etc/reader.conf.d/vpcd"
DEBIAN_PACKAGES = ("pcscd", "vsmartcard-vpcd", "libpcsclite-dev", "swig")

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000
_PR_SET_PDEATHSIG = 1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH22x"
_SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
"""Kept from pcscd so it never mistakes our start for systemd socket activation."""


class NamespaceError(RuntimeError):
    """The private pcscd could not be set up (or would have touched the host)."""


# -- what the machine offers ---------------------------------------------------------------


def _package_root() -> str:
    """The directory holding the ``sim`` package, for child processes' ``PYTHONPATH``."""
    return str(Path(__file__).resolve().parents[2])


def _use_user_namespace() -> bool:
    """Root creates namespaces directly; anyone else needs a user namespace for it."""
    return os.geteuid() != 0


def support_problem() -> str | None:
    """Why a private pcscd cannot run here, or ``None`` when it can.

    Checks the binaries (pcscd, unshare, nsenter), the vpcd driver and its reader
    configuration, and that namespaces can actually be created (root, or unprivileged
    user namespaces).
    """
    if not sys.platform.startswith("linux"):
        return "a private pcscd needs Linux namespaces"
    missing = [tool for tool in ("pcscd", "unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}: install the Debian packages pcscd and util-linux"
    if not os.path.exists(VPCD_DRIVER):
        return f"vpcd driver {VPCD_DRIVER} not found: install the Debian package vsmartcard-vpcd"
    if not os.path.exists(VPCD_CONFIG):
        return f"vpcd reader configuration {VPCD_CONFIG} not found: reinstall vsmartcard-vpcd"
    argv = namespace_argv([sys.executable, "-c", "import sim.pcsc.vpcd"])
    try:
        probe = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=child_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {' '.join(argv)}: {exc}"
    if probe.returncode != 0:
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()} (not root: needs unprivileged user namespaces)"
        detail = probe.stderr.strip().splitlines()[-1:] or ["no message"]
        return f"cannot run Python in new mount and network namespaces as {who}: {detail[0]}"
    return None


def namespace_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` run by ``unshare`` in new mount and network namespaces (plus a user
    namespace when not root), mounts private to it."""
    flags = ["--mount", "--net", "--propagation", "private"]
    if _use_user_namespace():
        flags = ["--user", "--map-root-user", *flags]
    return ["unshare", *flags, "--", *argv]


# -- host side -------------------------------------------------------------------------------


class PrivatePcscd:
    """A pcscd of our own, in namespaces of our own; a context manager.

    Parameters
    ----------
    debug : bool
        Run pcscd with ``-d`` (driver and APDU-level logs in :attr:`log_path`).
    log_path : str, optional
        Where pcscd's and the helper's output goes. Default: a temporary file, removed
        by :meth:`stop` unless ``keep_log`` (a failed start quotes its end anyway).
    keep_log : bool
        Keep the temporary log after :meth:`stop` (a given ``log_path`` is always kept).
    start_timeout : float
        Seconds to wait for pcscd's socket.
    max_seconds : float
        The helper stops pcscd and exits on its own after this long, whatever happens
        to the process that started it.

    Attributes
    ----------
    pid : int
        The helper process: it holds the namespaces (``nsenter --target pid``).
    pcscd_pid : int
        pcscd, as seen from the host.
    socket_path : str
        pcscd's socket reached from the host through ``/proc/<pid>/root``; a client
        outside the namespace can use it with ``PCSCLITE_CSOCK_NAME`` (:meth:`client_env`).
    """

    def __init__(
        self,
        *,
        debug: bool = False,
        log_path: str | None = None,
        keep_log: bool = False,
        start_timeout: float = 10.0,
        max_seconds: float = 600.0,
    ) -> None:
        self.debug = debug
        self.start_timeout = start_timeout
        self.max_seconds = max_seconds
        self._remove_log = log_path is None and not keep_log
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="possim-pcscd-", suffix=".log")
            os.close(fd)
        self.log_path = log_path
        self.pid = 0
        self.pcscd_pid = 0
        self.socket_path = ""
        self._helper: subprocess.Popen[bytes] | None = None
        self._children: list[subprocess.Popen[Any]] = []
        self._log: IO[bytes] | None = None

    def __enter__(self) -> "PrivatePcscd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "PrivatePcscd":
        """Create the namespaces, start pcscd in them, return once its socket is up.

        Raises
        ------
        NamespaceError
            The helper or pcscd failed; the message carries the end of the log.
        """
        if self._helper is not None:
            raise NamespaceError("this private pcscd is already started")
        argv = namespace_argv([
            sys.executable, "-m", "sim.pcsc.pcscd", "run-in-namespace",
            "--log", self.log_path, "--max-seconds", str(self.max_seconds),
            "--start-timeout", str(self.start_timeout),
        ])
        if self.debug:
            argv.append("--debug")
        self._log = open(self.log_path, "ab")
        self._helper = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=child_env()
        )
        self.pid = self._helper.pid
        assert self._helper.stdout is not None
        line = read_line(self._helper.stdout, self.start_timeout + 5.0)
        try:
            event = json.loads(line) if line else {}
        except ValueError:
            event = {"event": "error", "message": f"unexpected output {line!r}"}
        if event.get("event") != "ready":
            message = event.get("message") or "no answer from the namespace helper"
            remove, self._remove_log = self._remove_log, False
            self.stop()
            problem = f"private pcscd did not start: {message}\n{self.log_tail()}"
            self._remove_log = remove
            self._discard_log()
            raise NamespaceError(problem)
        self.pcscd_pid = int(event.get("pcscd_pid") or 0)  # no PID namespace: the host sees the same PID
        self.socket_path = f"/proc/{self.pid}/root{SOCKET_PATH}"
        return self

    def nsenter_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run in this pcscd's mount and network namespaces."""
        if not self.pid:
            raise NamespaceError("start the private pcscd first")
        flags = ["--user", "--preserve-credentials"] if _use_user_namespace() else []
        return ["nsenter", f"--target={self.pid}", *flags, "--mount", "--net", f"--wd={os.getcwd()}", "--", *argv]

    def spawn(self, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the namespaces; :meth:`stop` ends it by PID if still running."""
        popen.setdefault("env", child_env())
        process = subprocess.Popen(self.nsenter_argv(argv), **popen)
        self._children.append(process)
        return process

    def python(self, module: str, *args: str, **popen: Any) -> subprocess.Popen[Any]:
        """Run ``python -m module args...`` (this interpreter) inside the namespaces."""
        return self.spawn([sys.executable, "-m", module, *args], **popen)

    def client_env(self) -> dict[str, str]:
        """Environment for a PC/SC client *outside* the namespace to reach this pcscd.

        libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once per process, so use it for a
        fresh subprocess rather than for the calling process.
        """
        return {**child_env(), "PCSCLITE_CSOCK_NAME": self.socket_path}

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every process started here (children first, then the helper) by PID."""
        for process in reversed(self._children):
            stop_process(process, timeout)
        self._children.clear()
        helper, self._helper = self._helper, None
        if helper is not None:
            if helper.stdin is not None:
                try:
                    helper.stdin.close()  # the helper's cue to stop pcscd and exit
                except OSError:
                    pass
            try:
                helper.wait(timeout)
            except subprocess.TimeoutExpired:
                stop_process(helper, timeout)
            if helper.stdout is not None:
                helper.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.pid:
            self._discard_log()

    def _discard_log(self) -> None:
        if self._remove_log:
            try:
                os.unlink(self.log_path)
            except FileNotFoundError:
                pass
            self._remove_log = False

    def log_tail(self, lines: int = 40) -> str:
        """The end of pcscd's and the helper's log, for error messages."""
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def child_env() -> dict[str, str]:
    """This environment, with the ``sim`` package importable and no socket activation."""
    env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARIABLES}
    paths = [_package_root(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL: one process, by its PID."""
    if process.poll() is None:
        try:
            process.terminate()
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        except ProcessLookupError:
            pass
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    return process.returncode


def read_line(stream: IO[bytes], timeout: float) -> str:
    """One line from a child's pipe, or ``""`` after ``timeout`` seconds or at EOF.

    Reads byte by byte from the file descriptor so nothing past the newline is held in a
    Python buffer that a later :func:`select` would not see.
    """
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    data = bytearray()
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


# -- inside the namespaces ------------------------------------------------------------------------


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, options: str | None = None) -> None:
    result = _libc().mount(
        source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
        options.encode() if options else None,
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise NamespaceError(f"mount {source} on {target} failed: {os.strerror(errno)}")


def _ns(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def check_private_namespaces() -> None:
    """Refuse to go on unless this process has its own mount and network namespaces.

    Mounting on ``/run`` in the host's mount namespace would hide the host's pcscd;
    this is the guard that makes it impossible.
    """
    for kind in ("mnt", "net"):
        mine = _ns("self", kind)
        for other in (1, os.getppid()):
            theirs = _ns(other, kind)
            if mine is None or mine == theirs:
                raise NamespaceError(
                    f"run-in-namespace must run in a new {kind} namespace "
                    f"(unshare --mount --net); this one is shared with PID {other}"
                )


def setup_run_dir() -> str:
    """A fresh tmpfs for ``/run/pcscd``; returns the mount point used.

    Mount events stay in this namespace (made private first). If ``/run/pcscd`` does
    not exist, the tmpfs goes on ``/run`` instead (creating a directory would write
    to the host's file system).
    """
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE)
    options = "mode=0755,size=4m"
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if os.path.isdir(RUN_DIR):
        _mount("tmpfs", RUN_DIR, "tmpfs", flags, options)
        return RUN_DIR
    _mount("tmpfs", "/run", "tmpfs", flags, options)
    os.mkdir(RUN_DIR, 0o755)
    return "/run"


def loopback_up() -> None:
    """Bring ``lo`` up: a new network namespace starts with it down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the helper dies, however it dies."""
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _Stop(Exception):
    """Raised by the SIGTERM handler to leave the helper's wait."""


def run_in_namespace(args: argparse.Namespace) -> int:
    """The helper: set up, start pcscd (and maybe a card), wait, tear down by PID."""

    def emit(event: str, **fields: object) -> None:
        print(json.dumps({"event": event, **fields}), flush=True)

    def on_term(signum: int, frame: object) -> None:
        raise _Stop()

    signal.signal(signal.SIGTERM, on_term)
    log = open(args.log, "ab") if args.log else subprocess.DEVNULL
    started: list[subprocess.Popen[Any]] = []
    try:
        check_private_namespaces()
        mounted = setup_run_dir()
        loopback_up()
        pcscd_argv = [args.pcscd, "--foreground"] + (["--debug", "--apdu"] if args.debug else [])
        pcscd = subprocess.Popen(
            pcscd_argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env(),
            preexec_fn=_die_with_parent,
        )
        started.append(pcscd)
        _wait_for_socket(pcscd, args.start_timeout)
        if args.card:
            bridge_argv = [sys.executable, "-m", "sim.pcsc.vpcd", "--card", args.card,
                           "--max-seconds", str(args.max_seconds)]
            started.append(subprocess.Popen(
                bridge_argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=child_env(),
                preexec_fn=_die_with_parent,
            ))
        emit("ready", pid=os.getpid(), pcscd_pid=pcscd.pid, socket=SOCKET_PATH, tmpfs=mounted)
        command = list(args.command or [])
        if command and command[0] == "--":
            command = command[1:]
        if command:
            runner = subprocess.Popen(command, env=child_env(), preexec_fn=_die_with_parent)
            started.append(runner)
            try:
                return runner.wait(args.max_seconds)
            except subprocess.TimeoutExpired:
                emit("error", message=f"command still running after {args.max_seconds} s; stopped")
                return 124
        _wait_for_eof(pcscd, args.max_seconds)
        return 0
    except _Stop:
        return 0
    except (NamespaceError, OSError) as exc:
        emit("error", message=str(exc))
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # teardown is not interrupted
        for process in reversed(started):
            stop_process(process, 5.0)
        if log is not subprocess.DEVNULL:
            log.close()  # type: ignore[union-attr]


def _wait_for_socket(pcscd: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(SOCKET_PATH):
        if pcscd.poll() is not None:
            raise NamespaceError(f"pcscd exited with status {pcscd.returncode} before opening {SOCKET_PATH}")
        if time.monotonic() >= deadline:
            raise NamespaceError(f"pcscd did not open {SOCKET_PATH} within {timeout} s")
        time.sleep(0.02)


def _wait_for_eof(pcscd: subprocess.Popen[Any], max_seconds: float) -> None:
    """Until the starter closes our stdin (or dies), pcscd dies, or time runs out."""
    deadline = time.monotonic() + max_seconds
    fd = sys.stdin.fileno()
    while time.monotonic() < deadline:
        if pcscd.poll() is not None:
            raise NamespaceError(f"pcscd exited with status {pcscd.returncode}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready and not os.read(fd, 4096):
            return


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.pcsc.pcscd``: ``check`` this machine, or ``run-in-namespace``.

    ``run-in-namespace`` must itself be started by ``unshare --mount --net``; it refuses
    to run in the host's namespaces. It prints one JSON ``ready`` line once pcscd
    listens, then runs ``-- COMMAND`` if given (and exits with its status) or waits for
    stdin to close. ``--card LABEL`` also inserts that virtual card into Virtual PCD.
    """
    parser = argparse.ArgumentParser(prog="python -m sim.pcsc.pcscd", description=main.__doc__)
    sub = parser.add_subparsers(dest="command_name", required=True)
    sub.add_parser("check", help="say whether a private pcscd can run here")
    run = sub.add_parser("run-in-namespace", help="inside unshare: tmpfs, lo, pcscd, then wait or run a command")
    run.add_argument("--pcscd", default=shutil.which("pcscd") or "/usr/sbin/pcscd")
    run.add_argument("--log", default=None, help="append pcscd's output here")
    run.add_argument("--debug", action="store_true", help="pcscd --debug --apdu")
    run.add_argument("--card", default=None, help="also serve this virtual card (sim.pcsc.vpcd)")
    run.add_argument("--start-timeout", type=float, default=10.0)
    run.add_argument("--max-seconds", type=float, default=600.0, help="stop everything after this long")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND to run once pcscd is up")
    args = parser.parse_args(argv)
    if args.command_name == "check":
        problem = support_problem()
        print(problem or "ok: a private pcscd with Virtual PCD can run here")
        return 0 if problem is None else 1
    return run_in_namespace(args)


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(main())
