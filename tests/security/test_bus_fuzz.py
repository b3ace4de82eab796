"""Bus fuzzing (SPEC §9): over a thousand malformed payloads on every
subject a service consumes. The consumers survive, poison messages are
terminated (never redelivered), and a valid command afterwards still works."""

from __future__ import annotations

import asyncio
import json
import random
from contextlib import asynccontextmanager
from pathlib import Path

from agent_runner.bootstrap import main as runner_main
from agent_runner.settings import Settings as RunnerSettings
from events import subjects
from events.codec import ContractError, decode_command, encode
from events.commands import RunVerb, StartTurn
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.topology import EXECUTOR_CONSUMER, RUNNER_CONSUMER
from events.types import new_id
from tests.pve_executor.rig import executor, request, settings_for

SID = "6cfaa6bb-d10d-4842-8572-2d78d3eeee8c"
PER_SUBJECT = 1000


def is_malformed(payload: bytes) -> bool:
    try:
        decode_command(payload)
    except ContractError:
        return True
    return False  # a mutation that happens to be valid (e.g. a hostile `by`): not what we test here


def malformed(seed: int, n: int) -> list[bytes]:
    """Garbage, near-misses and hostile shapes that the contract refuses, reproducibly."""
    rng = random.Random(seed)
    valid_shapes = [
        {"type": "prompt", "by": "x", "session_id": SID, "turn_id": SID, "prompt": "hi", "model": "sonnet"},
        {"type": "run_verb", "by": "x", "request_id": SID, "verb": "status"},
        {"type": "cancel", "by": "x", "session_id": SID},
        {"type": "answer_approval", "by": "x", "session_id": SID, "approval_id": SID, "approved": True},
    ]
    hostile = ["status; reboot", "$(reboot)", "../../etc/passwd", "\u0455tatus", "x" * 5000, "", None, 1e308, [], {}]
    def candidate() -> bytes:
        choice = rng.randrange(6)
        shape = dict(rng.choice(valid_shapes))
        if choice == 0:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        if choice == 1:
            shape[rng.choice(list(shape))] = rng.choice(hostile)
        elif choice == 2:
            del shape[rng.choice(list(shape))]
        elif choice == 3:
            return json.dumps(rng.choice(hostile)).encode()
        elif choice == 4:
            raw = json.dumps(shape).encode()
            return raw[: rng.randrange(1, len(raw))]
        else:
            shape["type"] = rng.choice(["prompt ", "PROMPT", "run-verb", "", "cancel\n", "x" * 300])
        return json.dumps(shape).encode()

    out: list[bytes] = []
    while len(out) < n:
        payload = candidate()
        if is_malformed(payload):
            out.append(payload)
    return out


@asynccontextmanager
async def runner(nats_url: str, data_dir: Path):
    stop = asyncio.Event()
    settings = RunnerSettings(nats_url=nats_url, data_dir=data_dir, claude_bin="/nonexistent/claude",
                              lease_seconds=3.0, lease_renew_seconds=0.5)
    task = asyncio.create_task(runner_main(stop, settings))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def consumer_is_clean(js, topology, durable: str) -> None:
    for _ in range(200):
        info = await js.consumer_info(topology.commands_stream, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.05)
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)


async def test_the_runner_survives_a_thousand_malformed_prompts_and_control_messages(nc, js, topology, nats_url, tmp_path):
    async with runner(nats_url, tmp_path):
        for payload in malformed(1, PER_SUBJECT):
            await js.publish(subjects.PROMPT, payload)
        for payload in malformed(2, PER_SUBJECT):
            await nc.publish(subjects.cancel(SID), payload)
            await nc.publish(subjects.approval(SID), payload)
        await consumer_is_clean(js, topology, RUNNER_CONSUMER)

        # Still alive: a real prompt command is taken and its turn ends (the CLI is missing here).
        sid, turn = new_id(), new_id()
        log = EventLog(js, topology)
        assert await TurnLocks(await js.key_value(topology.kv_bucket), log).take(sid, turn, "ops")
        await js.publish(subjects.PROMPT, encode(StartTurn(by="ops", session_id=sid, turn_id=turn, prompt="hi", model="sonnet")))
        for _ in range(200):
            kinds = [r.event().__struct_config__.tag for r in await log.read(sid)]
            if "turn_end" in kinds:
                break
            await asyncio.sleep(0.05)
        assert kinds == ["error", "turn_end"]
    assert (await js.stream_info(topology.commands_stream)).state.messages == 0


async def test_the_executor_survives_a_thousand_malformed_verb_commands(nc, js, topology, nats_url, sshd_server, pve):
    async with executor(settings_for(nats_url, sshd_server)):
        for payload in malformed(3, PER_SUBJECT):
            await js.publish(subjects.VERB, payload)
        await consumer_is_clean(js, topology, EXECUTOR_CONSUMER)
        answer = await request(nc, js, "status")
    assert answer.result.exit_code == 0
    assert pve.calls() == ["status 102"]  # not one of the thousand reached the host
