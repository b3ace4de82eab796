"""`python -m bench.bulkread [--runs N] [--events N]`: the read of a cold
replay alone, in one process, by each reader: CPU per event of the reading
process and of nats-server, and wall time.

- `nats-py consumer`: the short-lived ordered consumer through nats-py
  (what `EventLog.replay` did for a long replay before eventbus.bulkread);
- `bulk pushed`: the same consumer's pushes, parsed in bulk
  (`bulkread.replay_pushed`, what a long replay does now);
- `bulk direct gets`: direct-get batches parsed in bulk (`bulkread.replay`,
  what a replay of up to `LONG_REPLAY` events does now).

Same session (the bench's event, one writer's subject, with a chain-link
header like a stored event), the readers alternating within each run.
CPU does not depend on how many other processes wait for a core, so it is
the figure to compare on a shared machine. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import nats

from breakglass import natsd
from eventbus import bulkread
from eventbus.log import EventLog
from eventbus.topology import Topology, ensure
from events import subjects
from events.types import new_id

from .rig import cpu_seconds, event_bytes


async def _measure(events: int, runs: int) -> dict[str, list[tuple[float, float, float]]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = natsd.start(Path(tmp) / "nats")
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            topology = Topology()
            await ensure(js, topology)
            sid = new_id()
            subject = subjects.session_writer(sid, "agent-runner")
            data = event_bytes(sid)
            for _ in range(events):
                await nc.publish(subject, data, headers={"Breakglass-Link": "0" * 64})
            await nc.flush()
            log = EventLog(js, topology)
            until = 0
            while until < events:
                await asyncio.sleep(0.1)
                until = await log.last_seq(sid)
            filters = log._filters(sid)
            stream = topology.events_stream

            async def natspy(deliver) -> int:  # type: ignore[no-untyped-def]
                real = bulkread.replay_pushed

                async def off(*args):  # type: ignore[no-untyped-def]
                    return 0, False

                bulkread.replay_pushed = off  # type: ignore[assignment]
                try:
                    return await log._replay_ordered(sid, 0, until, deliver)
                finally:
                    bulkread.replay_pushed = real  # type: ignore[assignment]

            readers = {
                "nats-py consumer": natspy,
                "bulk pushed": lambda d: bulkread.replay_pushed(nc, stream, filters, 0, until, d),
                "bulk direct gets": lambda d: bulkread.replay(nc, stream, filters[0], 0, until, d),
            }
            out: dict[str, list[tuple[float, float, float]]] = {name: [] for name in readers}
            for _ in range(runs):
                for name, read in readers.items():
                    count = 0

                    def deliver(seq: int, data: bytes) -> None:
                        nonlocal count
                        count += 1

                    server0, cpu0, wall0 = cpu_seconds(server.process.pid), time.process_time(), time.perf_counter()
                    await read(deliver)
                    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                    server_cpu = cpu_seconds(server.process.pid) - server0
                    if count != events:
                        raise RuntimeError(f"{name}: {count} of {events} events")
                    out[name].append((cpu / events * 1e6, server_cpu / events * 1e6, wall * 1e3))
            await nc.close()
            return out
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulkread")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.events} events, {args.runs} runs, medians:")
    results = asyncio.run(_measure(args.events, args.runs))
    print("| reader | reader CPU per event | nats-server CPU per event | wall |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        cpu, server, wall = (statistics.median(column) for column in zip(*rows))
        print(f"| {name} | {cpu:.1f} µs | {server:.1f} µs | {wall:.0f} ms |")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
