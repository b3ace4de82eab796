"""Helpers for running the real `breakglass` command as a process, and looking at its
process tree through /proc (no psutil), so tests see what an operator sees."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "breakglass"


def command(python: str | None = None) -> list[str]:
    """The console script when it sits beside this interpreter, else `-m`."""
    if python is None and SCRIPT.is_file():
        return [str(SCRIPT)]
    return [python or sys.executable, "-m", "breakglass"]


def clean_env(**overrides: str) -> dict[str, str]:
    """This environment without any BREAKGLASS_* the developer happens to have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS_")}
    env["BREAKGLASS_LOG_FORMAT"] = "console"  # the tests read `up`'s output the way a person would
    env.update(overrides)
    return env


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def children(pid: int) -> dict[int, list[str]]:
    """Live child processes of `pid` with their command lines."""
    found: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[1] == pid and st[0] not in ("Z", "X"):
                found[int(entry)] = cmdline(int(entry))
    return found


def child_running(pid: int, needle: str) -> int | None:
    """The pid of `pid`'s child whose command line contains `needle`."""
    for child, argv in children(pid).items():
        if needle in argv or any(needle in arg for arg in argv):
            return child
    return None


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Up:
    """A running `breakglass up` whose output is collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, like a shell job: killpg == Ctrl-C
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        #: every child pid observed, with its command line, for the leak check
        self.seen: dict[int, list[str]] = {}

    @staticmethod
    def _read(stream, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
        for raw in iter(stream.readline, b""):
            lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.env['BREAKGLASS_PORT']}"

    def children(self) -> dict[int, list[str]]:
        found = children(self.proc.pid)
        self.seen.update(found)
        return found

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def output(self) -> str:
        return "\n".join(self.out + self.err)

    def kill_leftovers(self) -> None:
        """SIGKILL what is still running of this `up` (pids checked against
        their command lines, so a reused pid is never hit)."""
        if self.proc.poll() is None:
            self.children()
            self.proc.kill()
            self.proc.wait(10)
        for pid, argv in self.seen.items():
            if alive(pid) and cmdline(pid) == argv:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@contextlib.contextmanager
def ready_up(env: dict[str, str], cwd: Path, timeout: float = 30.0) -> Iterator[Up]:
    """A `breakglass up` once it printed its URL; afterwards its output
    (pytest shows it beside a failure) and nothing of it left running."""
    running = Up([*command(), "up"], env, cwd)
    try:
        wait_for(lambda: any(line.startswith("breakglass is up:") for line in running.out), timeout, "breakglass up")
        yield running
    finally:
        print("---- up ----\n" + running.output()[-8000:])
        running.kill_leftovers()
