"""TurnRunner alone (agent_runner.turns): a real nats-server, the fake CLI
(bench/fake_cli.py, a real subprocess), no gateway and no consumer loop.
The test plays the gateway's part (take the lock, store `user`, mark it
queued) and then hands the runner its StartTurn, as the consumer would;
every assertion is on what the bus stores: the session's events and the
turn's lock."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_runner.settings import Settings
from agent_runner.turns import TurnRunner
from events.codec import decode
from events.commands import Ending, Running, StartTurn, TurnLock, Unclaimed
from events.kinds import Outcome, TurnCancelled, TurnEnded, TurnFailed, TurnInterrupted, UserPrompted
from eventbus.locks import TurnLocks
from eventbus.log import EventLog
from eventbus.topology import lock_key
from events.types import new_id

RUNNER = "host:test-runner/1"


@dataclass
class Rig:
    runner: TurnRunner
    log: EventLog
    kv: object

    async def prompt(self, text: str) -> StartTurn:
        """The gateway's half: lock, `user`, queued; then the command."""
        sid, turn = new_id(), new_id()
        revision = await self.runner.locks.take(sid, turn, "ops")
        assert revision is not None
        await self.log.append(UserPrompted(session_id=sid, turn_id=turn, by="ops", text=text), msg_id=f"{turn}:user")
        assert await self.runner.locks.queued(sid, turn, revision)
        return StartTurn(by="ops", session_id=sid, turn_id=turn, prompt=text, model="sonnet")

    async def events(self, session_id: str) -> list:  # type: ignore[type-arg]
        return [r.event() for r in await self.log.read(session_id)]

    async def kinds(self, session_id: str) -> list[str]:
        return [type(e).__struct_config__.tag for e in await self.events(session_id)]

    async def phases(self, session_id: str) -> list:  # type: ignore[type-arg]
        """The lock's last revisions (the bucket keeps five), None for its deletion."""
        return [decode(e.value, TurnLock).phase if e.value else None
                for e in await self.kv.history(lock_key(session_id))]  # type: ignore[attr-defined]

    async def until(self, check, what: str) -> None:  # type: ignore[no-untyped-def]
        """Wait for `check()` (a condition, not a timing goal)."""
        for _ in range(600):
            if await check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def rig(request, js, nc, topology, tmp_path: Path, fake_claude: str) -> Rig:  # type: ignore[no-untyped-def]
    """A short lease, renewed often, so lease paths take seconds; a test
    may ask for other lease settings (indirect parametrization)."""
    kv = await js.key_value(topology.kv_bucket)
    log = EventLog(js, topology, writer="agent-runner")
    lease = {"lease_seconds": 4.0, "lease_renew_seconds": 0.2, **getattr(request, "param", {})}
    settings = Settings(
        nats_url="nats://unused", data_dir=tmp_path / "runner", claude_bin=fake_claude,
        allow_unsandboxed=True, max_warm=0, cancel_grace_seconds=3.0, **lease,
    )
    locks = TurnLocks(kv, log, run_lease=settings.lease_seconds)
    return Rig(TurnRunner(settings=settings, nc=nc, events=log, locks=locks, owner=RUNNER), log, kv)


def turn_end(events: list) -> TurnEnded:  # type: ignore[type-arg]
    ends = [e for e in events if isinstance(e, TurnEnded)]
    assert len(ends) == 1, ends
    assert events[-1] is ends[0]  # nothing of a turn follows its end
    return ends[0]


def cli_pid(session_id: str) -> int | None:
    """The fake CLI this test's runner started for the session (its argv names it)."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if any(a.endswith(b"fake_cli.py") for a in argv) and session_id.encode() in argv:
            return int(entry.name)
    return None


#: No renewal inside the short turn, so the lock's history is exactly its phases.
@pytest.mark.parametrize("rig", [{"lease_seconds": 60.0, "lease_renew_seconds": 30.0}], indirect=True,
                         ids=["long-lease"])
async def test_a_turn_runs_the_cli_records_what_it_says_and_frees_the_lock(rig: Rig) -> None:
    command = await rig.prompt("lines=3 gap_ms=0")
    await rig.runner.run(command)
    sid = command.session_id
    events = await rig.events(sid)
    assert await rig.kinds(sid) == ["user", "session", "text", "text", "text", "result", "usage", "turn_end"]
    assert turn_end(events).outcome == Outcome.OK
    assert all(e.turn_id == command.turn_id for e in events)
    mine = Running(runner=RUNNER)
    # claimed, confirmed before the end, marked ending, freed
    assert await rig.phases(sid) == [Unclaimed(), mine, mine, Ending(runner=RUNNER), None]
    assert await rig.runner.locks.current(sid) is None
    assert rig.runner.active == {}


async def test_a_turn_whose_lock_is_not_open_is_dropped_without_a_word(rig: Rig) -> None:
    command = await rig.prompt("lines=3 gap_ms=0")
    assert await rig.runner.locks.claim(command.session_id, command.turn_id, "host:other/1")
    await rig.runner.run(command)
    assert await rig.kinds(command.session_id) == ["user"]
    assert (await rig.runner.locks.current(command.session_id)).lock.phase == Running(runner="host:other/1")


async def test_a_cancelled_turn_stops_the_cli_and_ends_cancelled(rig: Rig) -> None:
    command = await rig.prompt("lines=100000 gap_ms=20")
    sid = command.session_id
    running = asyncio.create_task(rig.runner.run(command))
    await rig.until(lambda: _has(rig, sid, "text"), "the CLI's first text is stored")
    assert (await rig.runner.locks.current(sid)).lock.phase == Running(runner=RUNNER)
    rig.runner.active[sid].cancel("alice")  # what a CancelTurn does (bootstrap.on_cancel)
    await running
    events = await rig.events(sid)
    assert isinstance(events[-2], TurnCancelled) and events[-2].by == "alice"
    assert turn_end(events).outcome == Outcome.CANCELLED
    assert cli_pid(sid) is None  # the CLI was stopped, not left behind
    assert await rig.runner.locks.current(sid) is None


async def test_a_cli_that_crashes_mid_turn_ends_the_turn_as_an_error(rig: Rig) -> None:
    command = await rig.prompt("lines=100000 gap_ms=20")
    sid = command.session_id
    running = asyncio.create_task(rig.runner.run(command))
    await rig.until(lambda: _has(rig, sid, "text"), "the CLI's first text is stored")
    pid = cli_pid(sid)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await running
    events = await rig.events(sid)
    failed = [e for e in events if isinstance(e, TurnFailed)]
    assert len(failed) == 1 and failed[0].error.startswith("the Claude CLI exited with code -9"), failed
    assert events[-2] is failed[0]
    assert turn_end(events).outcome == Outcome.ERROR
    assert await rig.runner.locks.current(sid) is None


async def test_a_running_turn_renews_its_lease(rig: Rig) -> None:
    command = await rig.prompt("lines=100000 gap_ms=20")
    sid = command.session_id
    running = asyncio.create_task(rig.runner.run(command))
    await rig.until(lambda: _phase_is(rig, sid, Running(runner=RUNNER)), "the runner claims the lock")
    claimed = await rig.runner.locks.current(sid)
    await rig.until(lambda: _renewed(rig, sid, claimed.revision), "the lease is renewed")
    renewed = await rig.runner.locks.current(sid)
    assert renewed.lock.lease_until > claimed.lock.lease_until
    assert renewed.lock.phase == Running(runner=RUNNER)
    rig.runner.active[sid].cancel("ops")
    await running


async def test_a_turn_whose_lease_lapsed_is_ended_once_by_the_reaper_and_the_runner_stops(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """NATS is away for the runner (its renewals fail: the one mock, to
    reach that path) longer than its lease: a reaper takes the lock over and
    ends the turn. Once the runner sees the lock again it is not its own any
    more: it stops the CLI and writes nothing, so the turn has one end, the
    reaper's, and nothing after it."""
    command = await rig.prompt("lines=100000 gap_ms=20")
    sid = command.session_id
    running = asyncio.create_task(rig.runner.run(command))
    await rig.until(lambda: _has(rig, sid, "text"), "the CLI's first text is stored")

    async def away(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("nats: connection closed")

    monkeypatch.setattr(rig.runner.locks, "renew", away)
    reaper = TurnLocks(rig.runner.locks._kv, rig.log)  # type: ignore[attr-defined]
    await rig.until(lambda: _reaped(reaper, sid), "the lapsed lease is reaped")
    monkeypatch.undo()  # NATS is back
    await running
    events = await rig.events(sid)
    end = turn_end(events)
    assert (end.by, end.outcome) == ("breakglass", Outcome.INTERRUPTED)
    assert isinstance(events[-2], TurnInterrupted) and events[-2].by == "breakglass"
    assert not [e for e in events if isinstance(e, (TurnCancelled, TurnFailed))]
    assert cli_pid(sid) is None
    assert await rig.runner.locks.current(sid) is None


async def _reaped(reaper: TurnLocks, session_id: str) -> bool:
    return await reaper.reap_lapsed() == [session_id]


async def _has(rig: Rig, session_id: str, kind: str) -> bool:
    return kind in await rig.kinds(session_id)


async def _phase_is(rig: Rig, session_id: str, phase) -> bool:  # type: ignore[no-untyped-def]
    held = await rig.runner.locks.current(session_id)
    return held is not None and held.lock.phase == phase


async def _renewed(rig: Rig, session_id: str, revision: int) -> bool:
    held = await rig.runner.locks.current(session_id)
    return held is not None and held.revision > revision
