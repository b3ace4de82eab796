"""No consumer exhaustion (issue 14, part 7), as an attacker holding the
read-only `reader` credential would try it.

A JetStream consumer is server state that outlives the request that made
it, a stream holds a bounded number of them, and a permission cannot bound
how many one user creates. So the reader may create none, of any kind, on
any stream (eventbus.access); it reads by direct gets and follows the log
through the stream's republished events (eventbus.follow). The attacker
tries every consumer-create form, then floods them; the server's consumer
counts do not move, and a real gateway, restarted and reconnected after
the flood, still lists sessions, attaches and streams live events.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from breakglass import natsd
from breakglass.natsd import free_port
from eventbus import access, direct
from events import chain, subjects
from eventbus.follow import follow
from events.kinds import TextSaid, TurnFailed
from eventbus.log import EventLog
from eventbus.topology import EVENTS_MAX_CONSUMERS, Topology, ensure
from events.types import new_id

from tests.processes import Service, base_env
from tests.security.nats_rig import Secured, secured  # noqa: F401 - fixture
from tests.security.test_nats_permissions import Violations, connect
from tests.servers import wait_ready
from tests.sse import collect

T = Topology()
EV, CMD, KV = T.events_stream, T.commands_stream, T.kv_stream
API = "$JS.API"
TOKEN = "consumer-room-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def _counts(secured: Secured) -> dict[str, int]:
    async with connect(secured, access.ADMIN) as (nc, _):
        js = nc.jetstream()
        return {s: (await js.stream_info(s)).state.consumer_count for s in (EV, CMD, KV)}


async def _refused(coro, violations: Violations, stream: str) -> None:  # type: ignore[no-untyped-def]
    """No answer (the server dropped the request) and a refusal of a
    consumer call on `stream` (whichever create form the client chose)."""
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await coro
    deadline = asyncio.get_running_loop().time() + 2
    needle = re.compile(rf'permissions violation for publish to "\$js\.api\.consumer\.[a-z.]+\.{stream.lower()}\b')
    while not any(needle.search(s.lower()) for s in violations.seen):
        assert asyncio.get_running_loop().time() < deadline, (stream, violations.seen)
        await asyncio.sleep(0.01)
    violations.seen.clear()


async def test_the_reader_can_create_no_consumer_of_any_kind_on_any_stream(secured: Secured) -> None:  # noqa: F811
    before = await _counts(secured)
    async with connect(secured, access.READER) as (nc, violations):
        js = nc.jetstream(timeout=0.5)
        for stream, subject in ((EV, subjects.EVENTS_ALL), (CMD, subjects.COMMANDS_ALL), (KV, f"{T.kv_subjects}.>")):
            # durable (named), durable in the legacy form, ephemeral, named ephemeral, push to any subject
            await _refused(js.add_consumer(stream, ConsumerConfig(durable_name="hog")), violations, stream)
            await _refused(nc.request(f"{API}.CONSUMER.DURABLE.CREATE.{stream}.hog2",
                                      json.dumps({"stream_name": stream, "config": {"durable_name": "hog2"}}).encode(),
                                      timeout=0.5), violations, stream)
            await _refused(js.add_consumer(stream, ConsumerConfig()), violations, stream)
            await _refused(js.add_consumer(stream, ConsumerConfig(name="eph", filter_subject=subject)),
                           violations, stream)
            await _refused(js.add_consumer(stream, ConsumerConfig(deliver_subject=subjects.live(new_id()))),
                           violations, stream)
            # ordered (what `subscribe(ordered_consumer=True)` and a KV watcher make)
            await _refused(js.subscribe(subject, stream=stream, ordered_consumer=True), violations, stream)
            await _refused(js.pull_subscribe(subject, durable="puller", stream=stream), violations, stream)
        kv = await js.key_value(T.kv_bucket)  # reading a key is fine; listing takes a watcher, refused
        await _refused(kv.keys(), violations, KV)
        # nor may it pose as the server's republish (followers trust what arrives there)
        forged = subjects.stored(subjects.session_writer(new_id(), access.GATEWAY))
        await nc.publish(forged, b"{}", headers={"Nats-Sequence": "1"})
        await nc.flush()
        assert await violations.refuses("Publish", forged)
    assert await _counts(secured) == before


async def test_a_flood_of_consumer_creates_leaves_the_server_as_it_was(secured: Secured) -> None:  # noqa: F811
    """More create requests than the stream has room for, of every form,
    fired without waiting: the server refuses each and keeps nothing."""
    before = await _counts(secured)
    async with connect(secured, access.READER) as (nc, _):
        for i in range(EVENTS_MAX_CONSUMERS + 50):
            for stream in (EV, KV):
                body = json.dumps({"stream_name": stream, "config": {
                    "name": f"hog{i}", "durable_name": f"hog{i}", "inactive_threshold": 10**15,
                    "deliver_policy": "all", "ack_policy": "none"}}).encode()
                await nc.publish(f"{API}.CONSUMER.CREATE.{stream}.hog{i}", body, reply=nc.new_inbox())
                await nc.publish(f"{API}.CONSUMER.DURABLE.CREATE.{stream}.hog{i}", body, reply=nc.new_inbox())
                await nc.publish(f"{API}.CONSUMER.CREATE.{stream}", body, reply=nc.new_inbox())
        await nc.flush(timeout=30)
    await asyncio.sleep(0.5)
    assert await _counts(secured) == before


async def test_a_consumer_left_behind_is_reaped_and_room_comes_back(nats_url) -> None:
    """Hygiene for the services' own consumers (a crashed process's): every
    consumer of the events stream, durable or not, goes after
    `events_consumer_idle` without a reader, and none may ask to live longer."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        quick = Topology(events_consumer_idle=1.0)
        await ensure(js, quick)
        with pytest.raises(BadRequestError, match="inactive threshold exceeds"):
            await js.add_consumer(quick.events_stream, ConsumerConfig(durable_name="forever", inactive_threshold=10.0))
        for i in range(20):
            await js.add_consumer(quick.events_stream, ConsumerConfig(durable_name=f"left{i}"))
        assert (await js.stream_info(quick.events_stream)).state.consumer_count == 20
        deadline = asyncio.get_running_loop().time() + 10
        while (await js.stream_info(quick.events_stream)).state.consumer_count:
            assert asyncio.get_running_loop().time() < deadline, "left consumers were not reaped"
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


# --- the supported path: follow (direct gets, then the republished events) ----------


async def test_follow_replays_then_tails_exactly_as_the_reader(secured: Secured) -> None:  # noqa: F811
    """Events stored before, during and after the hand-over (a writer that
    never pauses) reach the follower once each, in order, with none
    missing; another session's events interleave and are not delivered."""
    sid, other = new_id(), new_id()
    writer = await nats.connect(secured.url(access.AGENT_RUNNER), inbox_prefix=access.inbox_prefix(access.AGENT_RUNNER))
    reader = await nats.connect(secured.url(access.READER), inbox_prefix=access.inbox_prefix(access.READER))
    try:
        log = EventLog(writer.jetstream(), T, writer=access.AGENT_RUNNER)
        stored: list[int] = []
        for i in range(30):
            stored.append(await log.append(TextSaid(session_id=sid, by="agent", text=f"before {i}")))
            await log.append(TextSaid(session_id=other, by="agent", text=f"elsewhere {i}"))

        writing = True

        async def keep_writing() -> None:
            i = 0
            while writing:
                stored.append(await log.append(TextSaid(session_id=sid, by="agent", text=f"during {i}")))
                await log.append(TextSaid(session_id=other, by="agent", text=f"elsewhere {i}"))
                i += 1

        seen: list[tuple[int, str, str]] = []
        links: set[str] = set()

        def deliver(got: direct.Got) -> None:
            seen.append((got.seq, got.subject, json.loads(got.data)["text"]))
            links.add(got.headers.get(chain.HEADER, ""))  # the stored headers come along, live or replayed

        task = asyncio.create_task(keep_writing())
        await asyncio.sleep(0.05)
        start_after = stored[4]  # resume after the fifth event: exactly the ones after it
        following = await follow(reader, subjects.session_filters(sid), start_after, deliver, check_seconds=0.5)
        try:
            await asyncio.sleep(0.3)
            writing = False
            await task
            for i in range(20):  # and after the hand-over, with nothing else going on
                stored.append(await log.append(TextSaid(session_id=sid, by="agent", text=f"after {i}")))
            deadline = asyncio.get_running_loop().time() + 10
            while (not seen or seen[-1][0] < stored[-1]) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await following.stop()
        want = [s for s in stored if s > start_after]
        assert [s for s, _, _ in seen] == want
        assert all(subj == subjects.session_writer(sid, access.AGENT_RUNNER) for _, subj, _ in seen)
        assert any(text.startswith("during") for _, _, text in seen) and seen[-1][2] == "after 19"
        assert following.position == stored[-1]
        assert "" not in links and len(links) == len(seen)
        # and the reader did it without a consumer
        assert (await _counts(secured))[EV] == 0
    finally:
        await writer.close()
        await reader.close()


async def test_follow_fills_what_the_live_path_dropped(secured: Secured) -> None:  # noqa: F811
    """A follower whose client dropped live events (a slow reader) still
    gets each stored event once: the next live event or the quiet-time
    check reads the gap by direct get."""
    sid = new_id()
    writer = await nats.connect(secured.url(access.GATEWAY), inbox_prefix=access.inbox_prefix(access.GATEWAY))
    reader = await nats.connect(secured.url(access.READER), inbox_prefix=access.inbox_prefix(access.READER))
    try:
        log = EventLog(writer.jetstream(), T, writer=access.GATEWAY)
        first = await log.append(TextSaid(session_id=sid, by="alice", text="first"))
        seen: list[int] = []
        following = await follow(reader, subjects.session_filters(sid), 0, lambda g: seen.append(g.seq),
                                 check_seconds=0.3)
        try:
            assert seen == [first]
            for sub in following._subs:  # the live path goes deaf, as a dropped subscription would
                await sub.unsubscribe()
            more = [await log.append(TextSaid(session_id=sid, by="alice", text=f"n{i}")) for i in range(5)]
            deadline = asyncio.get_running_loop().time() + 5
            while seen[-1] != more[-1] and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await following.stop()
        assert seen == [first, *more]
    finally:
        await writer.close()
        await reader.close()


async def test_the_notifier_does_its_job_as_the_reader_without_a_consumer(
    secured: Secured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    """examples/notifier, the in-repo integrator, on the reader credential."""
    from examples.notifier.position import Position
    from tests.notifier.rig import Receiver, running, settings_for

    monkeypatch.chdir(tmp_path)
    receiver = Receiver().start()
    writer = await nats.connect(secured.url(access.AGENT_RUNNER), inbox_prefix=access.inbox_prefix(access.AGENT_RUNNER))
    try:
        settings = settings_for(secured.url(access.READER), receiver.url)
        async with running(settings):
            seq = await EventLog(writer.jetstream(), T, writer=access.AGENT_RUNNER).append(
                TurnFailed(session_id=new_id(), by="agent-runner", error="boom"))
            [request] = await receiver.wait_for(1)
            assert json.loads(request.body)["event"]["id"] == seq
            assert (await _counts(secured))[EV] == 0
        state = Position.load(tmp_path / settings.state_file, settings.stream)
        assert state is not None and state.position == seq and state.pending == {}
    finally:
        receiver.stop()
        await writer.close()


# --- the gateway after the flood -------------------------------------------------


async def _flood(secured: Secured) -> None:
    """Every create form, half as many again as the stream has room for,
    in waves (so the server's API queue takes them all): under the old
    permissions this filled the events stream's room for good. Now the
    consumer counts do not move."""
    before = await _counts(secured)
    async with connect(secured, access.READER) as (nc, _):
        js = nc.jetstream(timeout=0.2)
        for wave in range(0, EVENTS_MAX_CONSUMERS * 3 // 2, 100):
            for i in range(wave, wave + 100):
                body = json.dumps({"stream_name": EV, "config": {"durable_name": f"hog{i}",
                                                                "deliver_policy": "all"}}).encode()
                await nc.publish(f"{API}.CONSUMER.DURABLE.CREATE.{EV}.hog{i}", body, reply=nc.new_inbox())
                await nc.publish(f"{API}.CONSUMER.CREATE.{EV}.hog{i}", body, reply=nc.new_inbox())
            await nc.flush(timeout=30)
            await asyncio.sleep(0.05)
        with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
            await js.add_consumer(EV, ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    await asyncio.sleep(0.3)
    after = await _counts(secured)
    # The running gateway may replace its one firehose while the flood slows
    # the server (the old one lingers until its idle limit, or goes): one
    # more at most, never the reader's hundreds.
    assert all(after[s] <= before[s] + 1 for s in before), (before, after)


async def _serves(base: str, writer: EventLog, sid: str, label: str) -> None:
    """Listing, attach (stored events) and live events, through the gateway."""
    async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=30) as client:
        listed = await client.get("/api/sessions")
        assert listed.status_code == 200 and sid in listed.text, listed.text
        live_text = f"live after {label}"

        async def speak_later() -> None:
            await asyncio.sleep(0.5)
            await writer.append(TextSaid(session_id=sid, by="agent", text=live_text))

        speaker = asyncio.create_task(speak_later())
        frames = await collect(client, f"/api/session/{sid}/stream",
                               until=lambda fs: any(f.kind == "text" and f.json.get("text") == live_text for f in fs),
                               timeout=20)
        await speaker
        texts = [f.json["text"] for f in frames if f.kind == "text"]
        assert texts[0] == "stored before the flood" and texts[-1] == live_text, texts


async def test_after_the_flood_a_restarted_and_reconnected_gateway_still_serves(
    secured: Secured, tmp_path: Path,  # noqa: F811
) -> None:
    port = free_port()
    env = base_env(secured.url(access.GATEWAY), tmp_path / "gw", BREAKGLASS_PORT=str(port), BREAKGLASS_API_TOKEN=TOKEN)
    gateway = Service("gateway", env, tmp_path / "gateway.log").start()
    base = f"http://127.0.0.1:{port}"
    runner = None
    try:
        wait_ready(base, timeout=30)
        async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=30) as client:
            sid = (await client.post("/api/session")).json()["session_id"]
        runner = await nats.connect(secured.url(access.AGENT_RUNNER), max_reconnect_attempts=-1,
                                    reconnect_time_wait=0.2, inbox_prefix=access.inbox_prefix(access.AGENT_RUNNER))
        writer = EventLog(runner.jetstream(), T, writer=access.AGENT_RUNNER)
        await writer.append(TextSaid(session_id=sid, by="agent", text="stored before the flood"))
        await _serves(base, writer, sid, "start")

        await _flood(secured)
        # The gateway restarts: its firehose consumer is made anew.
        gateway.stop()
        gateway.start()
        wait_ready(base, timeout=30)
        await _serves(base, writer, sid, "restart")

        await _flood(secured)
        # The server restarts under it: the gateway reconnects and re-makes its consumer.
        store, nats_port = secured.server.store_dir, secured.port
        secured.server.stop()
        secured.server = natsd.start(store, port=nats_port, config_file=tmp_path / "auth.conf",
                                     log_file=tmp_path / "nats.log")
        await asyncio.sleep(1.0)
        wait_ready(base, timeout=30)
        await _serves(base, writer, sid, "reconnect")
        assert "violation" not in gateway.log().lower()
    finally:
        if runner is not None:
            await runner.close()
        gateway.stop()
        print("---- gateway ----\n" + gateway.log()[-4000:])
