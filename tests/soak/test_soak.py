"""The soak: 1,000 SSE clients and 20 concurrent turns for 10 minutes, with
0 errors and flat RSS. Off by default (it is long); run it with

    BREAKGLASS_SOAK=1 .venv/bin/python -m pytest tests/soak -s                 # full size: 600 s
    BREAKGLASS_SOAK=1 BREAKGLASS_SOAK_SECONDS=60 .venv/bin/python -m pytest tests/soak -s   # short

Settings (environment): BREAKGLASS_SOAK_SECONDS (600), BREAKGLASS_SOAK_CLIENTS
(1000), BREAKGLASS_SOAK_TURNS (20 concurrent turns = 20 sessions),
BREAKGLASS_SOAK_PROMPT (`lines=10 gap_ms=300`: what each turn prints),
BREAKGLASS_SOAK_CLI (`fake`: bench/fake_cli.py; `real`: the Claude Code CLI
on the fake Messages API), BREAKGLASS_SOAK_REPORT (a path: the samples and
figures as JSON).

The rig: a nats-server from the wheel, the real gateway and agent-runner
processes (`python -m gateway`, `python -m agent_runner`, runner allowed
BREAKGLASS_MAX_TURNS = the turn count); the runner's `claude` is
bench/fake_cli.py by default, which prints the CLI's stream-json (`lines`
partial deltas and whole text blocks, `gap_ms` apart, then a result), so 20
turns can run back to back on a small machine without 20 node processes.
The client fleet is its own process (tests/soak/clients.py). The driver
here keeps every session busy: prompt, wait for that turn's `turn_end`,
prompt again.

Passes when:
- errors = 0: no client stream failed to open, ended, broke, or saw an id
  twice or out of order; no prompt got an answer other than 202 (a 409 while
  the previous turn releases its lock is retried, and counted apart); every
  turn ended `ok` within 120 s;
- every client saw exactly the stored events of its session (count and a
  digest of the ids, against the events stream itself);
- RSS is flat, for the gateway and for the agent-runner: the median of the
  samples of the last quarter of the run is at most 10% above the median of
  the second quarter (the first quarter is warm-up).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import nats
import pytest

from bench.rig import cpu_seconds, rss_kib
from bench.sse import SSE, HttpError
from breakglass.natsd import free_port
from eventbus.log import EventLog
from eventbus.topology import Topology, ensure
from tests.processes import REPO, Service, base_env, runner_env
from tests.servers import wait_ready

SOAK = os.environ.get("BREAKGLASS_SOAK") == "1"
pytestmark = pytest.mark.skipif(not SOAK, reason="the soak runs only with BREAKGLASS_SOAK=1 (see RELIABILITY.md)")

SECONDS = float(os.environ.get("BREAKGLASS_SOAK_SECONDS", "600"))
CLIENTS = int(os.environ.get("BREAKGLASS_SOAK_CLIENTS", "1000"))
TURNS = int(os.environ.get("BREAKGLASS_SOAK_TURNS", "20"))
PROMPT = os.environ.get("BREAKGLASS_SOAK_PROMPT", "lines=10 gap_ms=300")
CLI = os.environ.get("BREAKGLASS_SOAK_CLI", "fake")
REPORT = os.environ.get("BREAKGLASS_SOAK_REPORT")
TOKEN = "soak-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
#: RSS is flat when median(last quarter) <= median(second quarter) * (1 + this).
RSS_GROWTH = 0.10
TURN_TIMEOUT = 120.0


class Fleet:
    """The client process, line by line."""

    def __init__(self, job: dict, log: Path) -> None:
        self.lines: queue.Queue[dict] = queue.Queue()
        self.log = open(log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.soak.clients"], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, start_new_session=True,
        )
        self.send(job)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(json.loads(raw))

    def send(self, obj: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(obj).encode() + b"\n")
        self.process.stdin.flush()

    async def next(self, key: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = await asyncio.to_thread(self.lines.get, True, 1.0)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the client fleet exited with {self.process.returncode}") from None
                continue
            if key in line:
                return line
            self.last_report = line
        raise TimeoutError(f"the client fleet did not say {key!r} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


class Driver:
    """Keeps one session busy: prompt, wait for that turn's end, again."""

    def __init__(self, base: str, host: str, port: int, session: str) -> None:
        self.base, self.host, self.port, self.session = base, host, port, session
        self.ended: dict[str, str] = {}
        self.changed = asyncio.Event()
        self.turns = 0
        self.busy = 0
        self.errors: list[str] = []

    async def watch(self) -> None:
        """The driver's own attach stream: turn ends, by turn id."""
        sse = await SSE.open(self.host, self.port, f"/api/session/{self.session}/stream", HEADERS)
        try:
            async for batch in sse.chunks():
                for frame in batch:
                    if frame.id is not None and b'"kind":"turn_end"' in frame.data:
                        event = json.loads(frame.data)
                        self.ended[event["turn_id"]] = event["outcome"]
                        self.changed.set()
            self.errors.append("the driver's stream ended")
        except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
            self.errors.append(f"the driver's stream broke: {exc}")
        finally:
            sse.close()

    async def run(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            answer = await http.post(f"{self.base}/api/session/{self.session}/prompt", json={"prompt": PROMPT})
            if answer.status_code == 409:  # the last turn is still releasing its lock
                self.busy += 1
                await asyncio.sleep(0.05)
                continue
            if answer.status_code != 202:
                self.errors.append(f"{time.strftime('%H:%M:%S')} prompt: HTTP {answer.status_code} {answer.text[:200]}")
                await asyncio.sleep(1.0)
                continue
            turn = answer.json()["turn_id"]
            deadline = time.monotonic() + TURN_TIMEOUT
            while turn not in self.ended and time.monotonic() < deadline:
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
            outcome = self.ended.get(turn)
            if outcome != "ok":
                self.errors.append(f"{time.strftime('%H:%M:%S')} turn {turn}: {outcome or 'no turn_end in time'}")
            self.turns += 1


def quarter_medians(values: list[float]) -> tuple[float, float]:
    n = len(values)
    q = max(1, n // 4)
    return statistics.median(values[q:2 * q]), statistics.median(values[n - q:])


async def test_soak(nats_server, tmp_path: Path, fake_claude: str) -> None:
    nc = await nats.connect(nats_server.url, name="soak")
    js = nc.jetstream()
    await ensure(js, Topology())
    events = EventLog(js)

    api = None
    if CLI == "real":
        from tests.fakeapi import FakeAnthropic
        from tests.fakeapi.cli import require_claude

        api = FakeAnthropic().start()  # default reply: a short text, for every request
        r_env = runner_env(nats_server.url, tmp_path / "runner", str(require_claude()), api.url)
        r_env.update(BREAKGLASS_LEASE_SECONDS="30", BREAKGLASS_LEASE_RENEW_SECONDS="5")
    else:
        r_env = base_env(
            nats_server.url, tmp_path / "runner", BREAKGLASS_CLAUDE_BIN=fake_claude,
            BREAKGLASS_AGENT_FILE=str(REPO / "agents" / "breakglass.md"),
        )
    r_env["BREAKGLASS_MAX_TURNS"] = str(TURNS)
    port = free_port()
    gateway = Service("gateway", base_env(nats_server.url, tmp_path / "gw", BREAKGLASS_PORT=str(port),
                                          BREAKGLASS_API_TOKEN=TOKEN), tmp_path / "gateway.log").start()
    runner = Service("agent_runner", r_env, tmp_path / "runner.log").start()
    base = f"http://127.0.0.1:{port}"
    fleet = None
    stop = asyncio.Event()
    samples: list[dict] = []
    try:
        wait_ready(base, timeout=30)
        async with httpx.AsyncClient(headers=HEADERS, timeout=30, limits=httpx.Limits(max_connections=TURNS + 5)) as http:
            sessions = [(await http.post(f"{base}/api/session")).json()["session_id"] for _ in range(TURNS)]
            fleet = Fleet({"host": "127.0.0.1", "port": port, "token": TOKEN, "sessions": sessions, "clients": CLIENTS},
                          tmp_path / "clients.log")
            ready = await fleet.next("ready", 180)
            print(f"{CLIENTS} clients attached to {TURNS} sessions in {ready['ready']:.1f} s")

            drivers = [Driver(base, "127.0.0.1", port, sid) for sid in sessions]
            watchers = [asyncio.create_task(d.watch()) for d in drivers]
            await asyncio.sleep(0.5)  # the driver streams are attached before the first prompt
            pids = {"gateway": gateway.pid, "runner": runner.pid, "nats": nats_server.process.pid,
                    "clients": fleet.process.pid}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            started = time.monotonic()
            every = max(1.0, SECONDS / 200)

            async def sample() -> None:
                while not stop.is_set():
                    row = {"t": round(time.monotonic() - started, 1)}
                    for name, pid in pids.items():
                        row[name] = rss_kib(pid)[0]
                    samples.append(row)
                    try:
                        await asyncio.wait_for(stop.wait(), every)
                    except asyncio.TimeoutError:
                        pass

            sampler = asyncio.create_task(sample())
            running = [asyncio.create_task(d.run(http, stop)) for d in drivers]
            await asyncio.sleep(SECONDS)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*running), TURN_TIMEOUT + 10)
            elapsed = time.monotonic() - started
            cpu = {name: round(100 * (cpu_seconds(pid) - cpu0[name]) / elapsed, 1) for name, pid in pids.items()}
            await sampler

            # Every client caught up with its session's last event, then the books.
            finish = {sid: await events.last_seq(sid) for sid in sessions}
            fleet.send({"finish": finish})
            summary = await fleet.next("summary", 120)
            for w in watchers:
                w.cancel()
    finally:
        stop.set()
        if fleet is not None:
            fleet.stop()
        runner.stop()
        gateway.stop()
        if api is not None:
            api.stop()
        for service in (gateway, runner):  # what went wrong, if anything did (diagnostics only)
            lines = [line for line in service.log().splitlines()
                     if any(word in line.lower() for word in ("unavailable", "traceback", "warning", "failed"))]
            print(f"---- {service.module}: {len(lines)} log lines about errors ----\n" + "\n".join(lines[:20]))

    expected = {}
    for sid in sessions:
        seqs = [r.seq for r in await events.read(sid)]
        digest = hashlib.blake2b(digest_size=16)
        for seq in seqs:
            digest.update(seq.to_bytes(8, "big"))
        expected[sid] = (len(seqs), seqs[-1] if seqs else 0, digest.hexdigest())
    await nc.close()
    inexact = [row for row in summary["summary"] if tuple(row[1:4]) != expected[row[0]]]

    turns = sum(d.turns for d in drivers)
    driver_errors = [e for d in drivers for e in d.errors]
    figures = {
        "seconds": round(elapsed, 1), "clients": CLIENTS, "concurrent_turns": TURNS, "prompt": PROMPT, "cli": CLI,
        "turns_completed": turns, "busy_retries": sum(d.busy for d in drivers),
        "stored_events": sum(e[0] for e in expected.values()),
        "frames_received": sum(row[1] for row in summary["summary"]),
        "client_errors": summary["error_count"], "driver_errors": len(driver_errors), "inexact_streams": len(inexact),
        "cpu_percent": cpu,
    }
    for name in ("gateway", "runner", "nats", "clients"):
        values = [row[name] / 1024 for row in samples]
        q2, q4 = quarter_medians(values)
        figures[f"{name}_rss_mib"] = {"first": round(values[0], 1), "q2_median": round(q2, 1),
                                      "q4_median": round(q4, 1), "max": round(max(values), 1),
                                      "last": round(values[-1], 1), "growth": round(q4 / q2 - 1, 4)}
    print("soak figures:", json.dumps(figures, indent=1))
    if REPORT:
        Path(REPORT).write_text(json.dumps({"figures": figures, "samples": samples,
                                            "client_errors": summary["errors"], "driver_errors": driver_errors[:50]},
                                           indent=1))

    assert summary["error_count"] == 0, summary["errors"]
    assert not driver_errors, driver_errors[:20]
    assert not inexact, inexact[:5]
    assert turns >= TURNS
    for name in ("gateway", "runner"):
        rss = figures[f"{name}_rss_mib"]
        assert rss["q4_median"] <= rss["q2_median"] * (1 + RSS_GROWTH), (name, rss)
