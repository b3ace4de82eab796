"""`python -m bench.triage [--runs N] [--keep]`: an alert's automatic triage,
end to end. Not part of `python -m bench` (it needs its own services).

Figures, per alert (median and p95 over the runs):
- alert received -> `diagnosis` stored: from the moment the webhook POST is
  sent to the gateway until the `diagnosis` event is on the events stream
  (a core subscriber on the session subjects sees it as it is stored);
- alert received -> notification sent: until examples/notifier's POST about
  that diagnosis reaches a loopback receiver.
Baseline, same run: the same work pressed by hand through the HTTP API
(open a session, `status`, `forensics`, a prompt, wait for `turn_end`), so
the ratio says what the automation adds to what an operator would do.

Rig: a fresh nats-server; a gateway with the alert receiver (window 0, so
every alert triages); agent-runner on the fake CLI (bench/fake_cli.py, 5
lines, no gap; the alert's labels tell it so); pve-executor with no Proxmox
host configured, so both verbs travel the whole path and are refused at
once: this measures breakglass's own path, not `qm` on a host.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx

from events import subjects

from .figures import start_runner
from .rig import AUTH, REPO, Rig
from . import standalone
from .standalone import figure, summary

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from examples.notifier.main import serve  # noqa: E402
from examples.notifier.settings import Settings as NotifierSettings  # noqa: E402

SECRET = "bench-alert-secret-0123456789"


def webhook(n: int) -> bytes:
    now = datetime.now(timezone.utc).isoformat()
    name = f"Bench{n:03d}"
    return json.dumps({
        "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "status": "firing", "receiver": "breakglass",
        "alerts": [{"status": "firing", "labels": {"alertname": name, "lines": "5", "gap_ms": "0"},
                    "annotations": {"summary": "bench"}, "startsAt": now, "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": f"{n:016x}"}],
    }).encode()


class Receiver:
    """A loopback HTTP endpoint that notes when each notification arrives."""

    def __init__(self) -> None:
        self.arrivals: dict[str, int] = {}  # session id -> monotonic ns
        self.port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        body = json.loads(await reader.readexactly(length))
        if body.get("kind") == "diagnosis":
            self.arrivals.setdefault(body["session_id"], time.monotonic_ns())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


async def one_triage(client: httpx.AsyncClient, n: int, stored: dict[str, int], receiver: Receiver) -> tuple[float, float]:
    sent = time.monotonic_ns()
    answer = await client.post("/api/alerts/alertmanager", content=webhook(n),
                               headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"})
    [sid] = answer.json()["triages"]
    deadline = time.monotonic() + 60
    while sid not in stored or sid not in receiver.arrivals:
        if time.monotonic() > deadline:
            raise RuntimeError(f"triage {n} did not finish (stored: {sid in stored})")
        await asyncio.sleep(0.005)
    return (stored[sid] - sent) / 1e6, (receiver.arrivals[sid] - sent) / 1e6


async def one_by_hand(client: httpx.AsyncClient, ended: dict[str, int]) -> float:
    sent = time.monotonic_ns()
    sid = (await client.post("/api/session")).json()["session_id"]
    for verb in ("status", "forensics"):
        await client.post(f"/api/pve/{verb}", json={"session_id": sid})
    await client.post(f"/api/session/{sid}/prompt", json={"prompt": "lines=5 gap_ms=0 what is wrong?"})
    deadline = time.monotonic() + 60
    while sid not in ended:
        if time.monotonic() > deadline:
            raise RuntimeError("the hand-pressed turn did not end")
        await asyncio.sleep(0.005)
    return (ended[sid] - sent) / 1e6


def start_executor(rig: Rig) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "BREAKGLASS_NATS_URL": rig.url,
           "BREAKGLASS_DATA_DIR": str(rig.tmp / "pve"), "PYTHONUNBUFFERED": "1"}
    with open(rig.tmp / "pve-executor.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "pve_executor"], env=env, cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


async def measure(rig: Rig, runs: int) -> dict:
    secret = rig.tmp / "alert-token"
    secret.write_text(SECRET)
    gw = await asyncio.to_thread(rig.start_gateway, BREAKGLASS_ALERT_TOKEN_FILE=str(secret),
                                 BREAKGLASS_ALERT_WINDOW_SECONDS="0")
    workers = [start_runner(rig), start_executor(rig)]
    receiver = Receiver()
    await receiver.start()
    stop, ready = asyncio.Event(), asyncio.Event()
    notifier = asyncio.create_task(serve(NotifierSettings(
        nats_url=rig.url, url=f"http://127.0.0.1:{receiver.port}/n", link_base="http://bench/",
        state_file=str(rig.tmp / "notifier-state.json")), stop, ready=ready))  # not the cwd: each run starts afresh
    import nats

    nc = await nats.connect(rig.url)
    stored: dict[str, int] = {}
    ended: dict[str, int] = {}

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        at = time.monotonic_ns()
        kind = json.loads(msg.data).get("kind")
        sid = subjects.session_of(msg.subject)
        if kind == "diagnosis" and sid:
            stored.setdefault(sid, at)
        elif kind == "turn_end" and sid:
            ended.setdefault(sid, at)

    await nc.subscribe(subjects.SESSION_EVENTS_EVERY, cb=on_event)  # every writer's subject
    try:
        await asyncio.wait_for(ready.wait(), 15)
        async with httpx.AsyncClient(base_url=gw.base, headers=AUTH, timeout=60) as client:
            await one_triage(client, 999, stored, receiver)  # warm-up: imports, first CLI start
            await one_by_hand(client, ended)
            to_stored, to_told, by_hand = [], [], []
            for n in range(runs):
                a, b = await one_triage(client, n, stored, receiver)
                c = await one_by_hand(client, ended)
                to_stored.append(a)
                to_told.append(b)
                by_hand.append(c)
                print(f"  run {n + 1}/{runs}: diagnosis stored {a:.0f} ms, notification {b:.0f} ms; by hand {c:.0f} ms", flush=True)
    finally:
        stop.set()
        await asyncio.wait_for(notifier, 15)
        await nc.close()
        for worker in workers:
            worker.terminate()
            worker.wait(10)
    return {"stored": summary(to_stored), "notified": summary(to_told), "by_hand": summary(by_hand),
            "ratio": statistics.median(to_stored) / statistics.median(by_hand)}


def report(result: dict) -> None:
    s, n, h = result["stored"], result["notified"], result["by_hand"]
    print(f"alert received -> diagnosis stored:   {figure(s, 0)}")
    print(f"alert received -> notification sent:  {figure(n, 0)}")
    print(f"baseline, pressed by hand (session, status, forensics, prompt -> turn_end): "
          f"{figure(h, 0)}; triage/by hand {result['ratio']:.2f}")


if __name__ == "__main__":
    sys.exit(standalone.main("triage", 20, measure, report))
