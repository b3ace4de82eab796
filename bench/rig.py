"""The bench rig: a nats-server from the wheel, the gateway as its own
process, and helpers to seed sessions and read a process's memory.

The gateway runs as `python -m gateway` (exactly what `breakglass up` runs),
so its CPU and memory are its own: the bench's appenders and clients live in
other processes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from breakglass import natsd
from events import chain, subjects
from events.codec import encode
from events.kinds import TextSaid
from eventbus.topology import Topology, ensure

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STREAM = Topology().events_stream
#: Text of a seeded event: about the size of a line of assistant prose.
FILLER = "The quick brown fox checks the cluster's quorum before it jumps. " * 2


def event_bytes(session_id: str, text: str = FILLER) -> bytes:
    return encode(TextSaid(session_id=session_id, turn_id=None, by="agent", text=text))


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":", 1)
            values[name] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _http(method: str, url: str, timeout: float = 5.0, body: bytes | None = None) -> tuple[int, bytes]:
    headers = dict(AUTH)
    if body is not None:
        headers["Content-Type"] = "application/json"
    data = body if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(url, method=method, headers=headers, data=data)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Rig:
    """One nats-server (fresh store) and, on demand, gateway processes."""

    tmp: Path
    #: The interpreter the gateway runs on (another venv, to compare installs).
    gateway_python: str = sys.executable
    server: natsd.Natsd | None = None
    gateways: list[Gateway] = field(default_factory=list)

    def start(self) -> "Rig":
        self.server = natsd.start(self.tmp / "nats", log_file=self.tmp / "nats.log")

        async def topology() -> None:
            nc = await nats.connect(self.url)
            await ensure(nc.jetstream())
            await nc.close()

        asyncio.run(topology())
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start_gateway(self, **env: str) -> Gateway:
        port = natsd.free_port()
        log_path = self.tmp / f"gateway-{port}.log"
        full = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "BREAKGLASS_NATS_URL": self.url,
            "BREAKGLASS_HOST": "127.0.0.1",
            "BREAKGLASS_PORT": str(port),
            "BREAKGLASS_API_TOKEN": TOKEN,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [self.gateway_python, "-m", "gateway"], env=full, cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        gw = Gateway(process, "127.0.0.1", port, log_path)
        self.gateways.append(gw)
        wait_ready(gw.base)
        return gw

    def stop(self) -> None:
        for gw in self.gateways:
            gw.stop()
        self.gateways.clear()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def nats_rss_kib(self) -> int:
        assert self.server is not None
        return rss_kib(self.server.process.pid)[0]


def wait_ready(base: str, timeout: float = 20.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if _http("GET", f"{base}/ready", timeout=1)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"{base}/ready did not answer 200 within {timeout} s")


def open_session(base: str) -> str:
    status, body = _http("POST", f"{base}/api/session")
    if status != 200:
        raise RuntimeError(f"POST /api/session: HTTP {status} {body[:200]!r}")
    import json

    return json.loads(body)["session_id"]


async def connect(url: str) -> tuple[Client, JetStreamContext]:
    nc = await nats.connect(url, name="bench", pending_size=64 * 1024 * 1024)
    return nc, nc.jetstream()


async def seed(
    js: JetStreamContext, session_id: str, count: int, *, previous: str = chain.GENESIS, in_flight: int = 500,
) -> tuple[list[int], str]:
    """`count` chain-linked events appended to one session, published
    pipelined (fast seeding; appends through EventLog are measured elsewhere).
    Returns their stream sequences in order, and the last link."""
    subject = subjects.session_writer(session_id, "agent-runner")  # where a runner writes today
    pending: list[asyncio.Future] = []
    seqs: list[int] = []
    data = event_bytes(session_id)
    for _ in range(count):
        previous = chain.link(previous, data)
        pending.append(await js.publish_async(subject, data, headers={chain.HEADER: previous}))
        if len(pending) >= in_flight:
            seqs += [(await f).seq for f in pending]
            pending.clear()
    seqs += [(await f).seq for f in pending]
    return seqs, previous


async def noise(js: JetStreamContext, session_ids: list[str], per_session: int) -> None:
    """Other sessions' events, round-robin, so that a replay is a filtered
    read of a bigger stream, as in production."""
    payloads = {sid: event_bytes(sid) for sid in session_ids}
    pending: list[asyncio.Future] = []
    for _ in range(per_session):
        for sid in session_ids:
            pending.append(await js.publish_async(subjects.session_writer(sid, "agent-runner"), payloads[sid]))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
    await asyncio.gather(*pending)


__all__ = ["AUTH", "Gateway", "Rig", "STREAM", "connect", "event_bytes", "noise", "open_session", "seed"]
