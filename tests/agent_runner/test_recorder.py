"""The runner's recorder pipelines stored events (atomic batches) and still
stores each exactly once, in order, with an unbroken hash chain, even when
nats-server is killed and restarted in the middle of a burst."""

from __future__ import annotations

import asyncio
import json

import nats
from breakglass import natsd

from agent_runner.turns import Recorder
from events import chain
from events.commands import StartTurn
from events.kinds import TextSaid
from eventbus.log import EventLog
from eventbus.topology import Topology, ensure
from events.types import new_id

T = Topology()


def _command() -> StartTurn:
    return StartTurn(by="op", session_id=new_id(), turn_id=new_id(), prompt="p", model="sonnet")


async def _stored(url: str, sid: str) -> list[tuple[int, str, bytes]]:
    nc = await nats.connect(url)
    try:
        return [(r.seq, r.link, r.data) for r in await EventLog(nc.jetstream(), T).read(sid)]
    finally:
        await nc.close()


async def test_a_burst_is_stored_in_order_in_few_batches(nats_url):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure(js, T)
    command = _command()
    recorder = Recorder(EventLog(js, T), nc, command)
    for n in range(2000):
        await recorder.record(TextSaid(text=f"line {n}", **recorder.envelope("agent-runner")))
    await recorder.flush()
    await nc.close()
    stored = await _stored(nats_url, command.session_id)
    assert [json.loads(data)["text"] for _, _, data in stored] == [f"line {n}" for n in range(2000)]
    assert chain.verify(stored) is None
    seqs = [seq for seq, _, _ in stored]
    assert seqs == list(range(seqs[0], seqs[0] + 2000))  # nothing interleaved, nothing twice


async def test_a_nats_restart_mid_burst_loses_and_repeats_nothing(tmp_path):
    port = natsd.free_port()
    server = natsd.start(tmp_path / "nats", port=port, log_file=tmp_path / "nats.log")
    try:
        nc = await nats.connect(server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
        js = nc.jetstream()
        await ensure(js, T)
        command = _command()
        recorder = Recorder(EventLog(js, T), nc, command)

        async def restart() -> None:
            nonlocal server
            await asyncio.sleep(0.05)
            server.kill()
            await asyncio.sleep(0.3)
            server = natsd.start(tmp_path / "nats", port=port, log_file=tmp_path / "nats.log")

        restarting = asyncio.create_task(restart())
        for n in range(3000):
            await recorder.record(TextSaid(text=f"line {n}", **recorder.envelope("agent-runner")))
            if n % 100 == 0:
                await asyncio.sleep(0.01)  # a CLI prints in bursts, not all at once
        await restarting
        await recorder.flush()
        await recorder.append(TextSaid(text="the end", **recorder.envelope("agent-runner")))
        await nc.close()
        stored = await _stored(server.url, command.session_id)
        assert [json.loads(data)["text"] for _, _, data in stored] == [f"line {n}" for n in range(3000)] + ["the end"]
        assert chain.verify(stored) is None
    finally:
        server.stop()
