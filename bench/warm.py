"""`python -m bench.warm [--runs N] [--json FILE]`: warm CLIs against the
per-turn start, the REAL Claude CLI on the fake Messages API, same run.

One nats-server and gateway; agent-runner twice, as its own process with
the CLI in its sandbox: first with `BREAKGLASS_MAX_WARM_CLIS=0` (every turn
starts its own CLI: the baseline), then with warm CLIs (the default). Each
mode measures, `runs` times:

- prompt → model: POST /prompt → the fake API receives the model request,
  for the first prompt of a session opened and attached `--gap` seconds
  before (the warm hint's head start: an operator typing), and for the
  next prompt of the same session;
- Bash turn: POST /prompt → `turn_end` on the open stream, a turn with one
  Bash round trip (fresh session, opened and attached `--gap` before);
- Stop: POST /cancel → `turn_end` on the open stream, mid-stream.

Then the memory of one warm CLI (bwrap, the CLI, its verb tool: RSS and
PSS of the process tree) and the cap's effect (sessions opened beyond
`BREAKGLASS_MAX_WARM_CLIS`: how many CLIs stay warm, their total PSS).
Not a test: a missed goal is printed, not raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.fakeapi import FakeAnthropic, bash, hang, text
from tests.fakeapi.cli import require_claude
from tests.processes import Service, runner_env
from tests.sse import frames

from .rig import AUTH, Rig


def say(line: str) -> None:
    print(line, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Watch:
    """One session's open stream: the arrival time of every frame kind."""

    def __init__(self, client: httpx.AsyncClient, sid: str) -> None:
        self.seen: list[tuple[str, float]] = []
        self._task = asyncio.create_task(self._read(client, sid))

    async def _read(self, client: httpx.AsyncClient, sid: str) -> None:
        async with client.stream("GET", f"/api/session/{sid}/stream") as response:
            async for frame in frames(response):
                if frame.kind:
                    self.seen.append((frame.kind, time.monotonic()))

    async def until(self, kind: str, count: int = 1, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            times = [t for k, t in self.seen if k == kind]
            if len(times) >= count:
                return times[count - 1]
            await asyncio.sleep(0.002)
        raise TimeoutError(f"no {kind} #{count}")

    def close(self) -> None:
        self._task.cancel()


async def opened(client: httpx.AsyncClient, gap: float) -> tuple[str, Watch]:
    """A session opened and attached `gap` seconds ago."""
    sid = (await client.post("/api/session")).json()["session_id"]
    watch = Watch(client, sid)
    await asyncio.sleep(gap)
    return sid, watch


async def to_model(client: httpx.AsyncClient, api: FakeAnthropic, sid: str) -> float:
    """POST /prompt → the fake API has the model request (ms)."""
    before = len(api.model_requests)
    started = time.monotonic()
    answer = await client.post(f"/api/session/{sid}/prompt", json={"prompt": "hello"})
    assert answer.status_code == 202, answer.text
    while len(api.model_requests) <= before:
        await asyncio.sleep(0.001)
    return (api.model_requests[before].at - started) * 1000


async def measure(client: httpx.AsyncClient, api: FakeAnthropic, runs: int, gap: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"first": [], "next": [], "bash": [], "stop": []}
    for _ in range(runs):
        api.clear()
        api.script(text("hi"), text("hi again"))
        sid, watch = await opened(client, gap)
        out["first"].append(await to_model(client, api, sid))
        await watch.until("turn_end")
        await asyncio.sleep(0.3)
        out["next"].append(await to_model(client, api, sid))
        await watch.until("turn_end", 2)
        watch.close()

        api.script(bash("echo hello-from-tool"), text("done"))
        sid, watch = await opened(client, gap)
        started = time.monotonic()
        await client.post(f"/api/session/{sid}/prompt", json={"prompt": "check"})
        out["bash"].append((await watch.until("turn_end") - started) * 1000)
        watch.close()

        api.script(hang(interval=0.05, seconds=60))
        sid, watch = await opened(client, gap)
        await client.post(f"/api/session/{sid}/prompt", json={"prompt": "slow"})
        await watch.until("delta")
        pressed = time.monotonic()
        await client.post(f"/api/session/{sid}/cancel")
        out["stop"].append((await watch.until("turn_end") - pressed) * 1000)
        watch.close()
    return out


def tree(pid: int) -> list[int]:
    """`pid` and every descendant."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process tree, KiB."""
    rss = pss = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def warm_pids(log: str) -> dict[str, int]:
    out = {}
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        msg = record.get("msg", "")
        if msg.startswith("warm CLI ready, pid "):
            out[record["session_id"]] = int(msg.split("pid ", 1)[1].split(" ", 1)[0])
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def memory(client: httpx.AsyncClient, runner: Service, cap: int, sessions: int) -> dict:
    """Open `sessions` sessions on a runner capped at `cap`: the CLIs warm, their memory."""
    for _ in range(sessions):
        await client.post("/api/session")
        await asyncio.sleep(1.5)
    await asyncio.sleep(3.0)  # let the last one finish starting (node's heap settles)
    live = [pid for pid in warm_pids(runner.log()).values() if alive(pid)]
    each = [memory_kib(pid) for pid in live]
    return {"opened": sessions, "cap": cap, "warm": len(live),
            "rss_mib_each": [round(r / 1024) for r, _ in each], "pss_mib_each": [round(p / 1024) for _, p in each],
            "pss_mib_total": round(sum(p for _, p in each) / 1024)}


async def run_mode(rig: Rig, api: FakeAnthropic, claude: str, tmp: Path, name: str, runs: int, gap: float,
                   **env: str) -> tuple[dict, Service]:
    renv = runner_env(rig.url, tmp / f"runner-{name}", claude, api.url, **env)
    runner = Service("agent_runner", renv, tmp / f"runner-{name}.log").start()
    gw = rig.gateways[0]
    async with httpx.AsyncClient(base_url=gw.base, headers=AUTH, timeout=60) as client:
        for _ in range(200):
            if "consuming prompts" in runner.log():
                break
            await asyncio.sleep(0.1)
        await measure(client, api, 1, gap)  # warm-up: page caches, first sandbox
        out = await measure(client, api, runs, gap)
    return out, runner


def summary(name: str, got: dict[str, list[float]]) -> dict:
    row = {}
    for key, values in got.items():
        row[key] = {"p50": round(statistics.median(values)), "p95": round(pct(values, 0.95)), "n": len(values)}
    say(f"{name:>9}: " + "  ".join(f"{k} p50 {v['p50']} ms p95 {v['p95']} ms" for k, v in row.items()))
    return row


async def measure_all(rig: Rig, api: FakeAnthropic, claude: str, tmp: Path, runs: int, gap: float) -> dict:
    base, runner = await run_mode(rig, api, claude, tmp, "baseline", runs, gap, BREAKGLASS_MAX_WARM_CLIS="0")
    runner.stop()
    warm, runner = await run_mode(rig, api, claude, tmp, "warm", runs, gap)
    runner.stop()
    results = {"baseline": summary("per-turn", base), "warm": summary("warm", warm)}
    cap = 2
    renv = runner_env(rig.url, tmp / "runner-cap", claude, api.url, BREAKGLASS_MAX_WARM_CLIS=str(cap))
    runner = Service("agent_runner", renv, tmp / "runner-cap.log").start()
    try:
        async with httpx.AsyncClient(base_url=rig.gateways[0].base, headers=AUTH, timeout=60) as client:
            for _ in range(200):
                if "consuming prompts" in runner.log():
                    break
                await asyncio.sleep(0.1)
            results["memory"] = await memory(client, runner, cap, 5)
    finally:
        runner.stop()
    return results


def main(runs: int, gap: float, out: Path | None) -> int:
    claude = str(require_claude())
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp_name, FakeAnthropic() as api:
        tmp = Path(tmp_name)
        rig = Rig(tmp).start()
        try:
            rig.start_gateway()
            results = asyncio.run(measure_all(rig, api, claude, tmp, runs, gap))
        finally:
            rig.stop()
    w, b = results["warm"], results["baseline"]
    say(f"prompt → model, first after attach: warm p50 {w['first']['p50']} ms vs per-turn {b['first']['p50']} ms "
        f"(goal ≤ 60 ms: {'MET' if w['first']['p50'] <= 60 else 'MISSED'})")
    say(f"prompt → model, next prompt: warm p50 {w['next']['p50']} ms vs per-turn {b['next']['p50']} ms "
        f"(goal ≤ 60 ms: {'MET' if w['next']['p50'] <= 60 else 'MISSED'})")
    ratio = w["bash"]["p50"] / b["bash"]["p50"]
    say(f"Bash turn prompt → turn_end: warm p50 {w['bash']['p50']} ms vs per-turn {b['bash']['p50']} ms = {ratio:.2f}× "
        f"(goal ≤ 0.5×: {'MET' if ratio <= 0.5 else 'MISSED'})")
    say(f"Stop → turn_end: warm p95 {w['stop']['p95']} ms vs per-turn {b['stop']['p95']} ms "
        f"(goal ≤ 200 ms: {'MET' if w['stop']['p95'] <= 200 else 'MISSED'})")
    say(f"memory: {results['memory']}")
    if out is not None:
        out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between attach and the first prompt")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.exit(main(args.runs, args.gap, args.json))
