"""Keeping child processes alive, showing their output, and stopping them
in order.

Only the main thread ever starts a child: PR_SET_PDEATHSIG fires when the
*thread* that forked the child ends, so a child started from a helper thread
could be killed by that thread's exit. Helper threads only read output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from eventbus import logfmt

from . import logfiles
from .logfiles import LogFiles

PREFIX_WIDTH = 12  # len("agent-runner"), len("pve-executor")
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
#: A child that ran this long before dying starts its backoff from scratch.
STABLE_AFTER = 10.0
#: The exit code by which a service says "my settings are invalid" (eventbus.service).
CONFIG_EXIT = 2



class Printer:
    """Serialises whole lines from many threads onto one terminal.

    Service lines are JSON (eventbus.logfmt); each is kept in the service's
    log file when there is one (breakglass.logfiles) and shown either as a
    short human line under the service's name or, with `json_lines`, as
    JSON (then `up`'s own messages are JSON too, so every line parses).
    """

    def __init__(
        self, out: IO[str] | None = None, err: IO[str] | None = None, *,
        json_lines: bool = False, files: LogFiles | None = None,
    ) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._lock = threading.Lock()
        self.json_lines = json_lines
        self.files = files

    def line(self, name: str, text: str) -> None:
        entry = logfmt.parse(text)
        record = entry or logfiles.wrap(name, text)
        record.setdefault("service", name)
        encoded = json.dumps(record, ensure_ascii=False)
        if self.json_lines:
            shown = encoded
        else:
            shown = f"{name:<{PREFIX_WIDTH}} | {logfmt.render(entry) if entry else text}"
        with self._lock:
            if self.files is not None:
                try:
                    self.files.write(name, encoded)
                except OSError:  # a full disk must not stop the supervisor
                    pass
            self._write(self._out, shown)

    def say(self, text: str) -> None:
        with self._lock:
            self._write(self._out, self._own(text, "info"))

    def error(self, text: str) -> None:
        with self._lock:
            self._write(self._err, self._own(text, "error"))

    def _own(self, text: str, level: str) -> str:
        if not self.json_lines:
            return text
        return json.dumps({**logfiles.wrap("breakglass", text), "level": level}, ensure_ascii=False)

    @staticmethod
    def _write(stream: IO[str], text: str) -> None:
        try:
            stream.write(text + "\n")
            stream.flush()
        except (OSError, ValueError):  # the terminal or pipe went away; keep supervising
            pass


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\r\n").decode("utf-8", errors="replace")


def _pump(stream: IO[bytes], name: str, printer: Printer) -> None:
    with stream:
        for raw in iter(stream.readline, b""):
            printer.line(name, _decode(raw))


def tail(path: Path, name: str, printer: Printer, stop: threading.Event) -> threading.Thread:
    """Echo lines appended to `path` until `stop` is set and the file is drained.

    nats-server is started by `natsd.start`, which writes its log to a file
    rather than a pipe; following that file is how its lines get a prefix.
    """

    def follow() -> None:
        with open(path, "rb") as f:
            pending = b""
            while True:
                chunk = f.readline()
                if chunk:
                    pending += chunk
                    if pending.endswith(b"\n"):
                        printer.line(name, _decode(pending))
                        pending = b""
                    continue
                if stop.is_set():
                    if pending:
                        printer.line(name, _decode(pending))
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=follow, name=f"tail-{name}", daemon=True)
    thread.start()
    return thread


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Child:
    """One supervised process; `spawn` starts a fresh one each time."""

    def __init__(
        self,
        name: str,
        spawn: Callable[[], subprocess.Popen[bytes]],
        printer: Printer,
        *,
        own_group: bool = True,
        last: bool = False,
    ) -> None:
        self.name = name
        self._spawn = spawn
        self._printer = printer
        #: Started with start_new_session: signal its whole group on SIGKILL.
        self.own_group = own_group
        #: Stopped after every other child (the server the others talk to).
        self.last = last
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.failures = 0
        self.restart_at: float | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        self.proc = self._spawn()
        self.started_at = time.monotonic()
        self.restart_at = None
        if self.proc.stdout is not None:
            self._pump = threading.Thread(
                target=_pump, args=(self.proc.stdout, self.name, self._printer), name=f"out-{self.name}", daemon=True
            )
            self._pump.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)  # the service alone: it stops its own children

    def kill(self) -> None:
        """SIGKILL the child and, while its pid cannot have been reused (not
        yet reaped), everything left in its process group."""
        if not self.running:
            return
        assert self.proc is not None
        try:
            if self.own_group:
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        except ProcessLookupError:
            pass

    def reap(self, timeout: float = 5.0) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self._pump is not None:
            self._pump.join(1.0)  # a leftover grandchild may hold the pipe; don't hang on it


class Supervisor:
    """Restarts children that die, with capped exponential backoff, until asked
    to stop; then stops them (everything else first, `last` children after)."""

    def __init__(self, printer: Printer, grace: float = 5.0) -> None:
        self.printer = printer
        self.grace = grace
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self._hurry = False
        self.exit_code = 0

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping.is_set():
            self._hurry = True  # a second Ctrl-C: skip the grace period
        self.stopping.set()

    def add(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def run(self) -> int:
        """Supervise until a stop signal (or a child's invalid settings), then
        shut down. Returns the process exit code."""
        while not self.stopping.wait(0.1):
            for child in self.children:
                self._check(child, time.monotonic())
        self.shutdown()
        return self.exit_code

    def _check(self, child: Child, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                try:
                    child.start()
                except Exception as exc:  # e.g. nats-server refusing to start again
                    self._schedule(child, now, f"could not be restarted ({exc})")
            return
        if child.proc is None or child.proc.poll() is None:
            return
        code = child.proc.returncode
        if code == CONFIG_EXIT:
            self.printer.error(f"breakglass: {child.name} rejected its settings (see its line above); stopping")
            self.exit_code = CONFIG_EXIT
            self.stopping.set()
            return
        ran = now - child.started_at
        self._schedule(child, now, f"{describe_exit(code)} after {ran:.1f} s", stable=ran >= STABLE_AFTER)

    def _schedule(self, child: Child, now: float, why: str, *, stable: bool = False) -> None:
        child.failures = 1 if stable else child.failures + 1
        delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (child.failures - 1))
        child.restart_at = now + delay
        self.printer.say(f"breakglass: {child.name} {why}; restarting in {delay:g} s")

    def shutdown(self) -> None:
        """SIGTERM, wait up to `grace`, SIGKILL: first the services, then the
        server they publish to, so their last events can still be stored."""
        self.stopping.set()
        for tier in ([c for c in self.children if not c.last], [c for c in self.children if c.last]):
            for child in tier:
                child.restart_at = None
                child.terminate()
            deadline = time.monotonic() + self.grace
            while any(c.running for c in tier) and time.monotonic() < deadline and not self._hurry:
                time.sleep(0.05)
            for child in tier:
                if child.running:
                    self.printer.say(f"breakglass: {child.name} did not stop within {self.grace:g} s; killing it")
                child.kill()
            for child in tier:
                child.reap()
