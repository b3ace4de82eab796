"""`python -m bench [--quick] [--runs N] [--only NAMES] [--json FILE]`

Runs every figure of BENCHMARKS.md against a fresh nats-server and gateway
process, each with its baseline measured in the same run, and prints the
median of the runs with its verdict against the goal. Not a test: it only
fails (exit 1) when a figure cannot be measured or a stream is not exact;
a missed goal is reported, not raised.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from events.types import new_id

from . import figures as f
from .rig import Rig, connect, noise, open_session, seed

FIGURES = ("live", "cli", "replay", "cold", "resume", "fanout", "throughput", "up", "scale", "listing", "gateways")


def median(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else float("nan")


def say(text: str) -> None:
    print(text, flush=True)


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, load average {load}"


async def seed_all(ctx: f.Ctx, quick: bool, want_scale: bool) -> None:
    """One 10,000-event session interleaved with 100,000 other events (a
    filtered read of a 110,000-event stream), plus the scaling sessions."""
    t0 = time.monotonic()
    sid = await asyncio.to_thread(open_session, ctx.gw.base)
    others = [new_id() for _ in range(100)]
    per_round = 20 if quick else 100  # others' events per round, per other session
    seqs: list[int] = []
    previous = ""
    for _ in range(10):  # 10 rounds: 1,000 of ours, then 100 sessions × per_round of others
        part, previous = await seed(ctx.js, sid, 1000, previous=previous)
        seqs += part
        await noise(ctx.js, others, per_round)
    ctx.seeded[sid] = seqs
    ctx.seeded_10k = sid  # type: ignore[attr-defined]
    if want_scale:
        for size in ((1_000, 10_000) if quick else (1_000, 10_000, 100_000)):
            if size == 10_000:
                ctx.seeded_by_size[size] = sid  # type: ignore[attr-defined]
                continue
            other = await asyncio.to_thread(open_session, ctx.gw.base)
            ctx.seeded[other], _ = await seed(ctx.js, other, size)
            ctx.seeded_by_size[size] = other  # type: ignore[attr-defined]
    say(f"seeded in {time.monotonic() - t0:.1f} s (stream now holds {(await ctx.js.stream_info(f.STREAM)).state.messages} events)")


async def repeat(name: str, runs: int, fn: Callable[[], Awaitable[dict]], show: Callable[[dict], str]) -> list[dict]:
    out = []
    for i in range(runs):
        result = await fn()
        out.append(result)
        say(f"  {name} run {i + 1}/{runs}: {show(result)}")
    return out


async def main_async(args: argparse.Namespace) -> int:
    only = set(args.only.split(",")) if args.only else set(FIGURES)
    unknown = only - set(FIGURES)
    if unknown:
        say(f"unknown figure(s): {', '.join(sorted(unknown))}; known: {', '.join(FIGURES)}")
        return 2
    runs = args.runs or (3 if args.quick else 5)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    say(f"machine: {machine()}")
    say(f"runs: {runs}{' (quick)' if args.quick else ''}")
    results: dict[str, object] = {"machine": machine(), "runs": runs, "quick": args.quick}
    tmp = Path(tempfile.mkdtemp(prefix="breakglass-bench-"))
    if args.keep:
        say(f"logs and stores kept in {tmp}")
    try:
        rig = await asyncio.to_thread(Rig(tmp, args.gateway_python or sys.executable).start)  # its own loop
        try:
            gw = await asyncio.to_thread(rig.start_gateway)
            nc, js = await connect(rig.url)
            ctx = f.Ctx(rig=rig, gw=gw, nc=nc, js=js, quick=args.quick)
            ctx.seeded_by_size = {}  # type: ignore[attr-defined]
            if only & {"replay", "cold", "resume", "scale"}:
                await seed_all(ctx, args.quick, "scale" in only)
            if only & {"cli", "throughput"}:
                ctx.runner = f.start_runner(rig)
            try:
                await run_figures(ctx, only, runs, results, tmp)
            finally:
                if ctx.runner is not None:
                    ctx.runner.terminate()
                    ctx.runner.wait(10)
                if getattr(ctx, "listapp", None) is not None:
                    ctx.listapp.process.kill()  # type: ignore[attr-defined]
                    await ctx.listapp.process.wait()  # type: ignore[attr-defined]
                await nc.close()
        finally:
            rig.stop()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    results["load_after"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        say(f"raw results written to {args.json}")
    return 0


async def run_figures(ctx: f.Ctx, only: set[str], runs: int, results: dict, tmp: Path) -> None:
    """Each figure asked for, always in the same order; most
    are `runs` runs of one measurement (ALIKE), a few are shaped their own way."""
    for figure, key, name, title, measure, show in ALIKE:
        if figure in only:
            say(title)
            results[key] = await repeat(name, runs, functools.partial(measure, ctx), show)
    if "scale" in only:
        await measure_scale(ctx, runs, results)
    if "listing" in only:
        results["listing"] = await measure_listing(ctx)
    if "gateways" in only:
        results["gateways"] = await measure_gateways(ctx)
    if "up" in only:
        results["up"] = await measure_up(runs, tmp)


def show_live(r: dict) -> str:
    return (f"p50 {r['p50_ms']:.3f} ms / base {r['base_p50_ms']:.3f} ({r['ratio_p50']:.2f}×), "
            f"p99 {r['p99_ms']:.3f} ms / base {r['base_p99_ms']:.3f} ({r['ratio_p99']:.2f}×)")


def show_cli(r: dict) -> str:
    return (f"text p50 {r['p50_ms']:.3f} ms p99 {r['p99_ms']:.3f} ms; "
            f"delta (live-only) p50 {r['delta_p50_ms']:.3f} ms p99 {r['delta_p99_ms']:.3f} ms")


def show_replay(r: dict) -> str:
    return (f"{r['ms']:.1f} ms / base {r['base_ms']:.1f} ms ({r['ratio']:.2f}×), "
            f"in-process list {r['list_ms']:.1f} ms ({r['ratio_list']:.2f}×), exact")


def show_cold(r: dict) -> str:
    return (f"{r['ms']:.1f} ms / base {r['base_ms']:.1f} ms ({r['ratio']:.2f}×), "
            f"in-process list {r['list_ms']:.1f} ms ({r['ratio_list']:.2f}×); then hot {r['hot_ms']:.1f} ms "
            f"({r['hot_ratio']:.2f}× raw, {r['hot_ratio_list']:.2f}× list), exact; CPU: raw reader {r['base_cpu_ms']:.0f} ms "
            f"(server {r['base_server_cpu_ms']:.0f}), cold gateway {r['gw_cpu_ms']:.0f} ms (server {r['gw_server_cpu_ms']:.0f}); "
            f"load {r['load']:.1f}")


def show_resume(r: dict) -> str:
    return f"{r['ms']:.1f} ms / base {r['base_ms']:.1f} ms ({r['ratio']:.2f}×), {r['events']} events, exact"


def show_throughput(r: dict) -> str:
    return (f"pipelined appender {r['per_s']:.0f}/s end to end (stored at {r['append_per_s']:.0f}/s); "
            f"awaiting each append {r['seq_per_s']:.0f}/s; raw pipelined publish {r['base_per_s']:.0f}/s "
            f"({r['ratio']:.2f}×)")


def show_cli_flood(r: dict) -> str:
    return f"{r['per_s']:.0f}/s"


async def measure_scale(ctx: f.Ctx, runs: int, results: dict) -> None:
    """Replay by session size, then fan-out by client count: fewer runs
    (the largest sizes are slow), and the 1,000-client fan-out reused when
    it was measured already."""
    scale_runs = max(3, runs // 2 + 1) if runs >= 3 else runs
    say(f"scale: attach → caught-up by session size (median of {scale_runs})")
    by_size = {}
    for size, sid in sorted(ctx.seeded_by_size.items()):  # type: ignore[attr-defined]
        by_size[size] = await repeat(
            f"{size} events", scale_runs, lambda sid=sid: f.fig_replay_cold(ctx, sid, with_list=False),
            lambda r: (f"cold {r['ms']:.1f} ms / base {r['base_ms']:.1f} ms ({r['ratio']:.2f}×), "
                       f"hot {r['hot_ms']:.1f} ms ({r['hot_ratio']:.2f}×); gateway RSS {r['rss_mb']:.0f} MB "
                       f"(idle {r['rss_idle_mb']:.0f}); consumers after the cold attach {r['consumers']}"))
    results["scale_events"] = {str(k): v for k, v in by_size.items()}
    say(f"scale: fan-out by client count (10 per session; median of {scale_runs})")
    by_clients = {}
    for sessions in (10,):
        by_clients[sessions * 10] = await repeat(
            f"{sessions * 10} clients", scale_runs, lambda s=sessions: f.fig_fanout(ctx, sessions=s, rate=2.0 * s),
            show_fanout)
    if "fanout" in results:
        by_clients[1000] = results["fanout"]  # type: ignore[assignment]
    else:
        by_clients[1000] = await repeat("1000 clients", scale_runs, lambda: f.fig_fanout(ctx), show_fanout)
    results["scale_clients"] = {str(k): v for k, v in by_clients.items()}


async def measure_listing(ctx: f.Ctx) -> dict:
    """One measurement of both store sizes (it seeds the sessions itself)."""
    say("listing: GET /api/sessions first page (50) with 1,000 then 10,000 sessions stored")
    r = await f.fig_listing(ctx)
    for size, v in r.items():
        say(f"  {size:,} sessions: p50 {v['p50_ms']:.2f} ms p99 {v['p99_ms']:.2f} ms (GET /health, same moment: "
            f"p50 {v['noop_p50_ms']:.2f} ms p99 {v['noop_p99_ms']:.2f} ms; load {v['load']:.1f}); CPU per page: gateway "
            f"{v['gateway_cpu_ms']:.1f} ms (/health {v['noop_gateway_cpu_ms']:.1f}), nats-server {v['server_cpu_ms']:.1f} ms; "
            f"the first search matching none {v['search']['first_ms']:.0f} ms (searched {v['search']['searched']:,} "
            f"of {v['search']['stored']:,}), then "
            f"p50 {v['search']['p50_ms']:.0f} ms; consumers on the events stream {v['consumers']}")
    return {str(k): v for k, v in r.items()}


async def measure_gateways(ctx: f.Ctx) -> list[dict]:
    """Once: two gateway processes under thousands of clients take a while."""
    clients = int(os.environ.get("BENCH_GATEWAYS_SESSIONS", "500"))
    say(f"gateways: {clients * 10:,} SSE clients on {clients} sessions across two gateway processes, 2 appends/s per session")
    return await repeat("two gateways", 1, lambda: f.fig_fanout(
        ctx, sessions=clients, per_session=10, rate=2.0 * clients, gateways=2, expect=int(os.environ.get("BENCH_GATEWAYS_EXPECT", "3"))), lambda r: (
        show_fanout(r) + f"; consumers on the events stream {r['consumers']} (before {r['consumers_before']}); "
        f"live phase {r['live_s']:.1f} s, load {r['load_live']:.1f}, CPU (cores) "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_live"].items())))


async def measure_up(runs: int, tmp: Path) -> list[dict]:
    """`breakglass up` in a thread: it runs processes of its own, not on this loop."""
    say("up: `breakglass up` (fresh data dir) → /ready")
    out = []
    for i in range(runs):
        r = await asyncio.to_thread(f.fig_up, tmp)
        out.append(r)
        say(f"  up run {i + 1}/{runs}: {r['s']:.2f} s")
    return out


def show_fanout(r: dict) -> str:
    return (f"{r['clients']} clients: live p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms (max {r['max_ms']:.1f}); "
            f"gateway RSS {r['rss_mb']:.0f} MB (idle {r['rss_idle_mb']:.0f}, peak {r['hwm_mb']:.0f}), "
            f"CPU {r['gateway_cpu'] * 100:.0f}% of a core while live; all attached in {r['attach_s']:.2f} s (all answered in {r['open_s']:.2f} s)"
            + (f" ({r['reconnects_attaching']} streams ended and were resumed while attaching)" if r["reconnects_attaching"] else "")
            + (f"; {r['reconnects_live']} resumed while live" if r["reconnects_live"] else ""))


#: The figures measured alike, `runs` runs each, in order: the name
#: `--only` takes, the results key, the runs' name, what it measures, the
#: measurement, and a run in words.
ALIKE: tuple[tuple[str, str, str, str, Callable[[f.Ctx], Awaitable[dict]], Callable[[dict], str]], ...] = (
    ("live", "live", "live", "live: EventLog.append → SSE frame parsed, vs JetStream publish → ordered consumer",
     f.fig_live, show_live),
    ("cli", "cli", "cli", "cli: fake CLI stdout line → runner → SSE frame parsed", f.fig_cli, show_cli),
    ("replay", "replay", "replay",
     "replay: attach to a 10,000-event session → caught-up, vs raw ordered-consumer replay", f.fig_replay, show_replay),
    ("cold", "cold", "cold",
     "cold: the same on a fresh gateway process (read from the store), vs raw and the list baseline",
     f.fig_replay_cold, show_cold),
    ("resume", "resume", "resume", "resume: Last-Event-ID half-way → caught-up, vs raw resume from that sequence",
     f.fig_resume, show_resume),
    ("throughput", "throughput", "throughput", "throughput: one session → client, vs pipelined JetStream publish",
     f.fig_throughput, show_throughput),
    ("throughput", "cli_flood", "cli flood",
     "throughput via the real agent-runner: fake CLI printing as fast as it can → client", f.fig_cli_flood,
     show_cli_flood),
    ("fanout", "fanout", "fanout", "fan-out: 1,000 SSE clients (another process), 100 sessions, fresh gateway process",
     f.fig_fanout, show_fanout),
)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(results: dict) -> None:
    rows: list[tuple[str, str, str, str, str]] = []
    if "live" in results:
        r = results["live"]
        p50, p99, b50, b99 = (median(r, k) for k in ("p50_ms", "p99_ms", "base_p50_ms", "base_p99_ms"))
        x50, x99 = median(r, "ratio_p50"), median(r, "ratio_p99")
        rows.append(("live: append → SSE frame parsed", f"p50 {p50:.3f} ms, p99 {p99:.3f} ms",
                     f"p50 {b50:.3f} ms, p99 {b99:.3f} ms", f"{x50:.2f}× / {x99:.2f}×",
                     f"≤ 3×; p99 ≤ 5 ms: {verdict(x50 <= 3 and x99 <= 3 and p99 <= 5)}"))
    if "cli" in results:
        r = results["cli"]
        p50, p99 = median(r, "p50_ms"), median(r, "p99_ms")
        d50, d99 = median(r, "delta_p50_ms"), median(r, "delta_p99_ms")
        rows.append(("CLI stdout line → SSE frame", f"p50 {p50:.3f} ms, p99 {p99:.3f} ms (delta: p50 {d50:.3f}, p99 {d99:.3f})",
                     "—", "—", f"p99 ≤ 5 ms: {verdict(p99 <= 5)}"))
    if "replay" in results:
        r = results["replay"]
        v, b, x = median(r, "ms"), median(r, "base_ms"), median(r, "ratio")
        rows.append(("attach 10,000 events → caught-up", f"{v:.1f} ms", f"{b:.1f} ms", f"{x:.2f}×", f"≤ 1×: {verdict(x <= 1)}"))
        lv, lx = median(r, "list_ms"), median(r, "ratio_list")
        rows.append(("the same vs an in-process list replay (same HTTP stack)", f"{v:.1f} ms", f"{lv:.1f} ms", f"{lx:.2f}×",
                     f"≤ 1.0×: {verdict(lx <= 1.0)}"))
    if "cold" in results:
        r = results["cold"]
        v, b, x = median(r, "ms"), median(r, "base_ms"), median(r, "ratio")
        rows.append(("attach 10,000 events → caught-up, cold gateway", f"{v:.1f} ms", f"{b:.1f} ms", f"{x:.2f}×",
                     f"≤ 1×: {verdict(x <= 1)}"))
        lv, lx = median(r, "list_ms"), median(r, "ratio_list")
        rows.append(("the same, cold, vs the in-process list replay", f"{v:.1f} ms", f"{lv:.1f} ms", f"{lx:.2f}×",
                     f"≤ 1.0×: {verdict(lx <= 1.0)}"))
    if "resume" in results:
        r = results["resume"]
        v, b, x = median(r, "ms"), median(r, "base_ms"), median(r, "ratio")
        exact = all(run.get("exact") for run in r)
        rows.append(("resume half-way (Last-Event-ID)", f"{v:.1f} ms, {'exact' if exact else 'NOT EXACT'}", f"{b:.1f} ms",
                     f"{x:.2f}×", f"exact, ≤ 2×: {verdict(exact and x <= 2)}"))
    if "fanout" in results:
        r = results["fanout"]
        p50, p99, rss = median(r, "p50_ms"), median(r, "p99_ms"), median(r, "rss_mb")
        rows.append(("fan-out: 1,000 clients, 100 sessions", f"live p50 {p50:.2f} ms, p99 {p99:.2f} ms; RSS {rss:.0f} MB",
                     "—", "—", f"p99 ≤ 50 ms, RSS ≤ 300 MB: {verdict(p99 <= 50 and rss <= 300)}"))
    if "throughput" in results:
        r = results["throughput"]
        v, b, x = median(r, "per_s"), median(r, "base_per_s"), median(r, "ratio")
        rows.append(("sustained events/s, one session: pipelined `EventLog.appender` → client", f"{v:,.0f}/s",
                     f"{b:,.0f}/s", f"{x:.2f}×", f"≥ 5,000/s: {verdict(v >= 5000)}"))
        v = median(r, "seq_per_s")
        rows.append(("sustained events/s, one session: `EventLog.append` awaiting each ack → client", f"{v:,.0f}/s",
                     f"{b:,.0f}/s", f"{v / b:.2f}×", f"≥ 5,000/s: {verdict(v >= 5000)}"))
    if "cli_flood" in results:
        v = median(results["cli_flood"], "per_s")
        rows.append(("sustained events/s, one session (fake CLI → runner → client)", f"{v:,.0f}/s", "—", "—",
                     f"≥ 5,000/s: {verdict(v >= 5000)}"))
    if "listing" in results:
        r = results["listing"]
        small, big = r.get("1000"), r.get("10000")
        if small and big:
            flat = big["p99_ms"] / small["p99_ms"]
            rows.append(("GET /api/sessions first page, 10,000 sessions stored", f"p99 {big['p99_ms']:.1f} ms",
                         f"1,000 sessions: p99 {small['p99_ms']:.1f} ms", f"{flat:.2f}×",
                         f"p99 ≤ 50 ms, ±20%: {verdict(big['p99_ms'] <= 50 and 0.8 <= flat <= 1.2)}"))
    if "gateways" in results:
        r = results["gateways"][0]
        bound = r["sessions"] * r["gateways"]
        rows.append((f"{r['clients']:,} clients, {r['sessions']} sessions, {r['gateways']} gateways", f"live p99 {r['p99_ms']:.1f} ms; "
                     f"{r['consumers']} consumers", "—", "—",
                     f"p99 ≤ 50 ms, consumers ≤ {bound} + c: {verdict(r['p99_ms'] <= 50 and r['consumers'] <= bound + 10)}"))
    if "up" in results:
        v = median(results["up"], "s")
        rows.append(("`breakglass up` → /ready", f"{v:.2f} s", "—", "—", f"≤ 3 s: {verdict(v <= 3)}"))
    say("")
    say(f"## Figures (median of {results['runs']} runs)")
    say("")
    say(f"{results['machine']}; load average at the end {results.get('load_after', '?')}")
    say("")
    say("| figure | breakglass | baseline, same run | ratio | goal |")
    say("|---|---|---|---|---|")
    for row in rows:
        say("| " + " | ".join(row) + " |")
    if "scale_events" in results:
        say("")
        say("| events in the session | cold attach → caught-up | hot | raw replay | cold / raw | hot / raw "
            "| gateway RSS (idle) | consumers |")
        say("|---|---|---|---|---|---|---|---|")
        for size, r in results["scale_events"].items():
            say(f"| {int(size):,} | {median(r, 'ms'):.1f} ms | {median(r, 'hot_ms'):.1f} ms | {median(r, 'base_ms'):.1f} ms "
                f"| {median(r, 'ratio'):.2f}× | {median(r, 'hot_ratio'):.2f}× | {median(r, 'rss_mb'):.0f} MB "
                f"({median(r, 'rss_idle_mb'):.0f}) | {max(x['consumers'] for x in r)} |")
    if "scale_clients" in results:
        say("")
        say("| SSE clients (10 per session, 2 events/s per session) | live p50 | live p99 | gateway RSS | gateway CPU "
            "| consumers |")
        say("|---|---|---|---|---|---|")
        for clients, r in results["scale_clients"].items():
            say(f"| {int(clients):,} | {median(r, 'p50_ms'):.2f} ms | {median(r, 'p99_ms'):.2f} ms | "
                f"{median(r, 'rss_mb'):.0f} MB | {median(r, 'gateway_cpu') * 100:.0f}% | {max(x['consumers'] for x in r)} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="fewer runs and samples (a smoke run, ~2 min)")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (default 5, quick 3)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(FIGURES)}")
    parser.add_argument("--json", default="", help="also write the raw per-run results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    parser.add_argument("--gateway-python", default="", help="run the gateway on this interpreter (compare installs)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
