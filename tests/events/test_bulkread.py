"""The bulk replay reader (eventbus.bulkread) against a real nats-server:
exact replays (whole, resumed, cut at a sequence) through both of its
reads, payloads that look like protocol or span many socket reads, and a
hand-over to nats-py, without gap or duplicate, when it cannot go on."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest

from eventbus import access, bulkread, direct
from eventbus.log import EventLog
from eventbus.topology import Topology
from events import subjects
from events.types import new_id

from tests.security.nats_rig import Secured, secured  # noqa: F401 - fixture

READERS = {"direct gets": bulkread.replay, "pushed": bulkread.replay_pushed}


async def _seed(nc, js, stream: str, subject: str, payloads: list[bytes], *, other: str | None = None,
                headers_every: int = 2) -> list[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    """Store `payloads` on `subject` (every `headers_every`-th with a
    header, the others without: MSG and HMSG), interleaved with messages on
    `other`; returns (sequence, payload) as nats-py reads them back."""
    for n, data in enumerate(payloads):
        await nc.publish(subject, data, headers={"X-N": str(n)} if n % headers_every == 0 else None)
        if other is not None:
            await nc.publish(other, b'{"other":true}')
    await nc.flush()
    for _ in range(200):
        stored = await _read(nc, stream, subject)
        if len(stored) >= len(payloads):
            return stored
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(stored)} of {len(payloads)} stored")


async def _read(nc, stream: str, subject: str) -> list[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    """The subject's messages as nats-py reads them (eventbus.direct)."""
    stored: list[tuple[int, bytes]] = []
    seq = 1
    while True:
        got, more = await direct.get_batch(nc, stream, seq=seq, subject=subject)
        stored += [(g.seq, g.data) for g in got]
        if not got or not more:
            return stored
        seq = got[-1].seq + 1


async def _replay(  # type: ignore[no-untyped-def]
    reader, nc, stream: str, subject: str, after: int, until: int, *, many: bool = False,
) -> tuple[list[tuple[int, bytes]], int, bool]:
    """`many`: take the records as runs (`deliver_many`), not one by one."""
    out: list[tuple[int, bytes]] = []

    def deliver(seq: int, data: bytes) -> None:
        assert not many
        out.append((seq, data))

    filters = subject if reader is bulkread.replay else (subject,)
    position, over = await reader(nc, stream, filters, after, until, deliver, out.extend if many else None)
    return out, position, over


@pytest.mark.parametrize("many", [False, True], ids=["one by one", "in runs"])
@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
async def test_replays_exactly_whole_resumed_and_cut(nc, js, topology, reader, many):  # type: ignore[no-untyped-def]
    stream = topology.events_stream
    sid = new_id()
    subject = subjects.session_writer(sid, "agent-runner")
    stored = await _seed(nc, js, stream, subject, [b'{"n":%d}' % n for n in range(2500)],
                         other=subjects.session_writer(new_id(), "agent-runner"))
    assert len(stored) == 2500
    seqs = [seq for seq, _ in stored]

    whole, position, over = await _replay(reader, nc, stream, subject, 0, seqs[-1], many=many)
    assert (whole, position, over) == (stored, seqs[-1], True)

    resumed, position, over = await _replay(reader, nc, stream, subject, seqs[1200], seqs[-1], many=many)
    assert (resumed, position, over) == (stored[1201:], seqs[-1], True)

    # Cut at a sequence that is not the subject's: the other session's, between two of ours.
    cut, position, over = await _replay(reader, nc, stream, subject, seqs[10], seqs[2000] + 1, many=many)
    assert (cut, position, over) == (stored[11:2001], seqs[2000], True)

    nothing, position, over = await _replay(reader, nc, stream, subject, seqs[-1], seqs[-1], many=many)
    assert (nothing, position, over) == ([], seqs[-1], True)


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
async def test_payloads_that_look_like_protocol_or_span_many_reads(  # type: ignore[no-untyped-def]
    nc, js, topology, reader, monkeypatch,
):
    monkeypatch.setattr(bulkread, "READ_SIZE", 4096)  # every message split across socket reads
    stream = topology.events_stream
    subject = subjects.session_writer(new_id(), "gateway")
    payloads = [
        b"\r\nHMSG fake 1 5 5\r\nNATS/1.0\r\n\r\n\r\n",
        b"MSG a 1 3\r\nabc\r\n-ERR 'no'\r\nPING\r\n",
        bytes(range(256)) * 3,
        b"",
        b"NATS/1.0 204 EOB\r\nNats-Sequence: 1\r\n\r\n",
        b"x" * 700_000 + b"\r\n",
        b"\x00\xff\r" * 50_000,
        b"y" * 900_000,
        b'{"last":true}',
    ]
    stored = await _seed(nc, js, stream, subject, payloads, headers_every=3)
    assert [data for _, data in stored] == payloads
    got, position, over = await _replay(reader, nc, stream, subject, 0, stored[-1][0])
    assert (got, position, over) == (stored, stored[-1][0], True)


async def test_a_connection_lost_mid_replay_hands_over_without_gap_or_duplicate(  # type: ignore[no-untyped-def]
    js, topology, monkeypatch, caplog,
):
    """Through EventLog.replay, a long replay (the pushed read) and a
    mid-size one (direct gets): the bulk reader's socket is cut under it
    after some records, and the rest comes through nats-py. (The events
    are large enough that most of them cannot have been read yet.)"""
    log = EventLog(js, topology, writer="agent-runner")
    taken: list[bulkread._Conn] = []
    take = bulkread._take

    async def spying(nc):  # type: ignore[no-untyped-def]
        conn = await take(nc)
        taken.append(conn)
        return conn

    monkeypatch.setattr(bulkread, "_take", spying)
    nc = js._nc
    for count in (1500, 500):
        sid = new_id()
        stored = await _seed(nc, js, topology.events_stream, subjects.session_writer(sid, "agent-runner"),
                             [b'{"n":%d,"pad":"%s"}' % (n, b"x" * 8000) for n in range(count)])
        until = await log.last_seq(sid)
        out: list[tuple[int, bytes]] = []

        def deliver(seq: int, data: bytes) -> None:
            out.append((seq, data))
            if len(out) == 300:
                taken[-1].writer.transport.abort()

        taken.clear()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="eventbus.bulkread"):
            assert await log.replay(sid, 0, until, deliver) == until
        assert taken, "the bulk reader was not used"
        assert out == stored
        assert any("reading on through nats-py" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
async def test_a_server_error_ends_the_read_with_nothing_delivered(nc, reader, caplog):  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.INFO, logger="eventbus.bulkread"):
        got, position, over = await _replay(reader, nc, "NO_SUCH_STREAM", "a.b", 0, 10)
    assert (got, position, over) == ([], 0, False)
    assert any("reading on through nats-py" in r.getMessage() for r in caplog.records)


async def test_the_gateway_credentials_and_inbox_carry_over_and_the_reader_role_makes_no_consumer(secured: Secured):
    """The bulk reader connects as the caller's user (password in the URL,
    the role's inbox prefix): the gateway reads both ways; the reader role,
    which may create no consumer, reads by direct gets and is refused the
    pushed read, which then leaves the replay to the caller."""
    stream = Topology().events_stream
    admin = await nats.connect(secured.url(access.ADMIN), inbox_prefix=access.inbox_prefix(access.ADMIN))
    try:
        subject = subjects.session_writer(new_id(), "agent-runner")
        runner_role = access.AGENT_RUNNER
        runner = await nats.connect(secured.url(runner_role), inbox_prefix=access.inbox_prefix(runner_role))
        try:
            stored = await _seed(runner, admin.jetstream(), stream, subject, [b'{"n":%d}' % n for n in range(300)])
        finally:
            await runner.close()
        for role, pushed in ((access.GATEWAY, True), (access.READER, False)):
            nc = await nats.connect(secured.url(role), inbox_prefix=access.inbox_prefix(role))
            try:
                got, _, over = await _replay(bulkread.replay, nc, stream, subject, 0, stored[-1][0])
                assert (got, over) == (stored, True), role
                consumers = (await admin.jetstream().stream_info(stream)).state.consumer_count
                got, _, over = await _replay(bulkread.replay_pushed, nc, stream, subject, 0, stored[-1][0])
                assert over is pushed, role
                assert got == (stored if pushed else []), role
                if not pushed:
                    assert (await admin.jetstream().stream_info(stream)).state.consumer_count == consumers
            finally:
                await nc.close()
    finally:
        await admin.close()
