"""Bulk replay: a session's stored events read over a NATS connection of
its own, parsed in bulk rather than one nats-py message at a time.

Why: a cold attach to a long session is bounded by reading the store, and
nats-py spends 15-20 µs of CPU per received message (protocol parse, a
header dict, a `Msg`, a queue, an awaited callback; BENCHMARKS.md, issue
16). A replay is nothing but direct-get replies on one inbox, so this reader
asks for them on a plain socket and, per event, matches the `HMSG` line,
finds `Nats-Sequence` in the headers and slices the payload out of a large
buffer; the stored bytes go to `deliver` as they are.

- Same server, credentials and TLS as the caller's nats-py client (its
  CONNECT command, its TLS context), under its inbox prefix. A direct get
  creates no consumer (the reader role may create none).
- Pipelined: the next batch is asked for as soon as the current one ends,
  and delivered records are handed on while the server sends the rest.
- Exact: records in stream order, none past `until`; the sequence comes
  from the reply's headers. Anything the reader cannot do (nkeys or JWT
  auth, a websocket URL, an error status, `-ERR`, a closed connection, a
  timeout) stops it where it got to: every record handed over is whole, and
  the caller reads on from there by its usual path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable

from nats.aio.client import Client

logger = logging.getLogger(__name__)

#: Events asked for by the first request of a replay; later requests are
#: sized from the bytes per event seen so far (BATCH_BYTES), so a batch of
#: large events does not pile up in the server's buffer for a slow reader.
FIRST_BATCH = 1000
MAX_BATCH = 10_000
BATCH_BYTES = 4 * 1024 * 1024
READ_SIZE = 1024 * 1024
TIMEOUT = 5.0
#: A pooled connection unused this long is closed rather than reused (the
#: server pings idle clients every 2 minutes and drops the silent ones).
IDLE_SECONDS = 30.0
POOL_SIZE = 4
#: Below this many events a replay is cheap through nats-py already, and a
#: first replay would pay for opening a connection.
WORTH_IT = 100

#: `HMSG <subject> <sid> [reply] <header bytes> <total bytes>`
_HMSG = re.compile(rb"HMSG [^ \r\n]+ [^ \r\n]+ (?:[^ \r\n]+ )?(\d+) (\d+)\r\n")
#: What a consumer pushes: `HMSG <subject> <sid> [reply] <header bytes> <total bytes>`
#: or `MSG <subject> <sid> [reply] <bytes>`.
_PUSHED = re.compile(
    rb"(?:HMSG [^ \r\n]+ [^ \r\n]+ (?:([^ \r\n]+) )?(\d+) (\d+)|MSG [^ \r\n]+ [^ \r\n]+ (?:([^ \r\n]+) )?(\d+))\r\n"
)
#: The common case of `_PUSHED`, with the stream and consumer sequences
#: (4th and 3rd from the end of the ack subject) taken out by the match.
_ACKED = re.compile(rb"HMSG [^ \r\n]+ [^ \r\n]+ \$JS\.ACK\.[^ \r\n]*\.(\d+)\.(\d+)\.\d+\.\d+ (\d+) (\d+)\r\n")
_SEQUENCE = b"\r\nNats-Sequence: "
_PENDING = b"\r\nNats-Num-Pending: "

Deliver = Callable[[int, bytes], "Awaitable[None] | None"]
#: Takes the records parsed together, [(sequence, stored bytes)], in order.
DeliverMany = Callable[[list[tuple[int, bytes]]], "Awaitable[None] | None"]


class Unavailable(Exception):
    """The bulk reader cannot go on; the caller reads on by its usual path."""


class _Conn:
    """One raw client connection, subscribed to one reply subject."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: str) -> None:
        self.reader = reader
        self.writer = writer
        self.reply = reply.encode()
        self.buf = b""
        self.used = time.monotonic()
        #: The current request was answered to its end (204 or 404).
        self.ended = True
        #: Matching messages after the batch, from its end marker.
        self.pending = 0
        self.parse = self._parse
        #: Pushed mode: the consumer sequence of the last message, and
        #: whether the server confirmed the consumer.
        self.consumer_seq = 0
        self.created = False
        #: Flow-control requests to answer once what came before them is handed on.
        self.flow: list[bytes] = []

    def ask(self, stream: str, subject: str, seq: int, batch: int) -> None:
        body = json.dumps({"batch": batch, "seq": seq, "next_by_subj": subject}).encode()
        self.writer.write(b"PUB $JS.API.DIRECT.GET.%s %s %d\r\n%s\r\n" % (stream.encode(), self.reply, len(body), body))
        self.ended = False

    async def records(self) -> list[tuple[int, bytes]]:
        """The whole messages received so far (at least one read's worth),
        as (sequence, payload); sets `ended`/`pending` at the end marker
        (and, pushed, notes flow-control requests in `flow`)."""
        async with asyncio.timeout(TIMEOUT):
            chunk = await self.reader.read(READ_SIZE)
            if not chunk:
                raise Unavailable("the server closed the connection")
            buf = self.buf + chunk if self.buf else chunk
            out, pos, need = self.parse(buf)
            while need:  # a message larger than what has come: wait for all of it, then join once
                parts, have = [buf], len(buf)
                while have < need:
                    chunk = await self.reader.read(max(READ_SIZE, need - have))
                    if not chunk:
                        raise Unavailable("the server closed the connection")
                    parts.append(chunk)
                    have += len(chunk)
                buf = b"".join(parts)
                more, pos, need = self.parse(buf, pos)
                out += more
        self.buf = buf[pos:]
        return out

    def _parse(self, buf: bytes, pos: int = 0) -> tuple[list[tuple[int, bytes]], int, int]:
        """(records, where parsing stopped, bytes needed to go on: 0 unless
        a message is only partly in `buf`)."""
        out: list[tuple[int, bytes]] = []
        match, find, size = _HMSG.match, buf.find, len(buf)
        while pos < size:
            m = match(buf, pos)
            if m is None:
                eol = find(b"\r\n", pos)
                if eol < 0:
                    return out, pos, 0
                self._control(buf[pos:eol])
                pos = eol + 2
                continue
            start = m.end()
            headers_end = start + int(m[1])
            end = start + int(m[2])
            if end + 2 > size:
                return out, pos, end + 2 if not out else 0
            if buf[start + 8] == 13:  # "NATS/1.0\r\n": a stored message
                at = find(_SEQUENCE, start, headers_end)
                if at < 0:
                    raise Unavailable("a reply without Nats-Sequence")
                at += len(_SEQUENCE)
                out.append((int(buf[at:find(b"\r", at, headers_end)]), buf[headers_end:end]))
            else:
                self._status(buf[start:headers_end])
            pos = end + 2
        return out, pos, 0

    def _parse_pushed(self, buf: bytes, pos: int = 0) -> tuple[list[tuple[int, bytes]], int, int]:
        """`_parse` for what a consumer pushes: the stream sequence is in the
        ack subject (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
        <consumer seq>.<time>.<pending>`), a stored message without headers
        comes as MSG, and flow-control requests come in between."""
        out: list[tuple[int, bytes]] = []
        acked, match, find, size = _ACKED.match, _PUSHED.match, buf.find, len(buf)
        expected = self.consumer_seq + 1
        while pos < size:
            m = acked(buf, pos)
            if m is not None:  # a stored message with headers: nearly all of them
                start = m.end()
                end = start + int(m[4])
                if end + 2 > size:
                    self.consumer_seq = expected - 1
                    return out, pos, end + 2 if not out else 0
                if int(m[2]) != expected:  # a gap: an ordered reader would start over; the caller does
                    raise Unavailable(f"consumer sequence {int(m[2])}, expected {expected}")
                expected += 1
                out.append((int(m[1]), buf[start + int(m[3]):end]))
                pos = end + 2
                continue
            m = match(buf, pos)
            if m is None:
                eol = find(b"\r\n", pos)
                if eol < 0:
                    break
                self._control(buf[pos:eol])
                pos = eol + 2
                continue
            start = m.end()
            if m[5] is None:  # HMSG
                reply, headers_end, end = m[1], start + int(m[2]), start + int(m[3])
            else:
                reply, headers_end, end = m[4], start, start + int(m[5])
            if end + 2 > size:
                self.consumer_seq = expected - 1
                return out, pos, end + 2 if not out else 0
            if reply is not None and reply.startswith(b"$JS.ACK."):
                tokens = reply.rsplit(b".", 4)
                if int(tokens[2]) != expected:  # a gap: an ordered reader would start over; the caller does
                    raise Unavailable(f"consumer sequence {int(tokens[2])}, expected {expected}")
                expected += 1
                out.append((int(tokens[1]), buf[headers_end:end]))
            elif reply is not None and reply.startswith(b"$JS.FC."):
                self.flow.append(reply)
            elif headers_end > start:  # a status: heartbeats only
                self._heartbeat(buf[start:headers_end], received=expected - 1)
            else:
                self._create_answer(buf[start:end])
            pos = end + 2
        self.consumer_seq = expected - 1
        return out, pos, 0

    def _heartbeat(self, headers: bytes, received: int) -> None:
        """An idle heartbeat says what the consumer sent: more than was
        received is a loss, and a stalled flow-control request is answered."""
        if headers[9:12] != b"100":
            status = headers.split(b"\r\n", 1)[0].decode(errors="replace")
            raise Unavailable(f"consumer answered {status!r}")
        last = _header(headers, b"Nats-Last-Consumer")
        if last is not None and int(last) > received:  # pushed, yet never received
            raise Unavailable(f"consumer sent up to {int(last)}, received {received}")
        stalled = _header(headers, b"Nats-Consumer-Stalled")
        if stalled is not None:  # a flow-control request got lost: answer it now
            self.flow.append(stalled)

    def _create_answer(self, body: bytes) -> None:
        answer = json.loads(body)
        if "error" in answer:
            raise Unavailable(f"consumer not created: {answer['error'].get('description', answer['error'])}")
        self.created = True

    def _status(self, headers: bytes) -> None:
        code = headers[9:12]
        if code == b"204":  # end of batch
            at = headers.find(_PENDING)
            self.pending = int(headers[at + len(_PENDING):headers.find(b"\r", at + 2)]) if at >= 0 else 0
        elif code == b"404":  # nothing (more) matches
            self.pending = 0
        else:
            status = headers.split(b"\r\n", 1)[0].decode(errors="replace")
            raise Unavailable(f"direct get answered {status!r}")
        self.ended = True

    def _control(self, line: bytes) -> None:
        if line == b"PING":
            self.writer.write(b"PONG\r\n")
        elif line.startswith(b"-ERR"):
            raise Unavailable(f"server error {line[5:].decode(errors='replace').strip()}")
        elif not (line == b"PONG" or line == b"+OK" or line.startswith(b"INFO ")):
            raise Unavailable(f"unexpected protocol line {line[:60]!r}")

    def close(self) -> None:
        self.writer.close()


def _header(headers: bytes, name: bytes) -> bytes | None:
    at = headers.find(b"\r\n" + name + b": ")
    if at < 0:
        return None
    at += len(name) + 4
    return headers[at:headers.find(b"\r", at)].strip()


async def _open(nc: Client) -> _Conn:
    """A connection to the server `nc` is connected to, as the same user."""
    if getattr(nc, "_signature_cb", None) is not None or nc.options.get("tls_handshake_first"):
        raise Unavailable("nkeys/JWT authentication and TLS-first are left to nats-py")
    server = getattr(nc, "_current_server", None)
    uri = nc.connected_url
    if uri is None or server is None:
        raise Unavailable("not connected")
    if uri.scheme not in ("nats", "tls"):
        raise Unavailable(f"{uri.scheme}:// is left to nats-py")
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection(uri.hostname, uri.port or 4222, limit=READ_SIZE)
    try:
        async with asyncio.timeout(TIMEOUT):
            line = await reader.readline()
            if not line.startswith(b"INFO "):
                raise Unavailable(f"expected INFO, got {line[:40]!r}")
            info = json.loads(line[5:])
            if info.get("tls_required") or uri.scheme == "tls":
                hostname = nc.options.get("tls_hostname") or server.tls_name or uri.hostname
                await writer.start_tls(nc.ssl_context, server_hostname=hostname)
            # nats-py's own CONNECT (user, password or token as it sends them),
            # with what this reader needs: headers, no +OK per command.
            options = json.loads(nc._connect_command()[len(b"CONNECT "):])
            options.update(verbose=False, pedantic=False, headers=True, no_responders=True)
            reply = nc.new_inbox()
            writer.write(b"CONNECT %s\r\nSUB %s 1\r\nPING\r\n" % (json.dumps(options).encode(), reply.encode()))
            await writer.drain()
            conn = _Conn(reader, writer, reply)
            while True:
                line = (await reader.readline()).rstrip(b"\r\n")
                if line == b"PONG":
                    return conn
                if not line and reader.at_eof():
                    raise Unavailable("the server closed the connection")
                conn._control(line)
    except BaseException:
        writer.close()
        raise


_POOLS: "weakref.WeakKeyDictionary[Client, list[_Conn]]" = weakref.WeakKeyDictionary()


async def _take(nc: Client) -> _Conn:
    pool = _POOLS.get(nc, [])
    while pool:
        conn = pool.pop()
        if time.monotonic() - conn.used < IDLE_SECONDS and not conn.reader.at_eof():
            return conn
        conn.close()
    return await _open(nc)


async def _connection(nc: Client, subject: str) -> _Conn | None:
    """A bulk connection, or None (logged) when one cannot be had: the
    caller then reads through nats-py, where the replay stopped."""
    try:
        return await _take(nc)
    except _READ_ERRORS as exc:
        logger.info("bulk replay of %s unavailable (%s); reading through nats-py", subject, exc)
        return None


async def _next_records(conn: _Conn, subject: str, position: int) -> list[tuple[int, bytes]] | None:
    """The next run of parsed records, or None (logged) when the reader
    stops: the caller reads on through nats-py from `position`."""
    try:
        return await conn.records()
    except _READ_ERRORS as exc:
        logger.info("bulk replay of %s stopped after %d (%s); reading on through nats-py", subject, position, exc)
        return None


def _give(nc: Client, conn: _Conn) -> None:
    pool = _POOLS.setdefault(nc, [])
    if len(pool) < POOL_SIZE and not nc.is_closed:
        conn.used = time.monotonic()
        pool.append(conn)
    else:
        conn.close()


async def _hand_on(
    got: list[tuple[int, bytes]], position: int, until: int, deliver: Deliver, many: DeliverMany | None,
) -> tuple[int, bool]:
    """Hand `got` on, none at or before `position` nor past `until`: the
    last sequence handed on, and whether one past `until` was seen."""
    if not got:
        return position, False
    past = got[-1][0] > until
    if many is not None:
        if past or got[0][0] <= position:
            got = [record for record in got if position < record[0] <= until]
        if got:
            position = got[-1][0]
            pending = many(got)
            if pending is not None:
                await pending
        return position, past
    for seq, data in got:
        if seq <= position:
            continue
        if seq > until:
            break
        position = seq
        pending = deliver(seq, data)
        if pending is not None:
            await pending
    return position, past


#: What ends the bulk reader (and hands over to the caller's usual path).
_READ_ERRORS = (Unavailable, OSError, TimeoutError, ValueError, AttributeError, KeyError, TypeError)


async def replay(
    nc: Client, stream: str, subject: str, after: int, until: int, deliver: Deliver,
    deliver_many: DeliverMany | None = None,
) -> tuple[int, bool]:
    """Call `deliver(seq, data)` for the stored messages on `subject` with
    `after < seq <= until`, in order, each once, awaiting what it returns
    (or, when given, `deliver_many` once per run of records parsed together).
    Returns the last sequence delivered and whether the replay is over
    (`until` reached or passed). Not over: the reader stopped (an error,
    logged) or the server had nothing up to `until` yet (a lagging replica);
    the caller reads on from the returned sequence."""
    if until <= after:
        return after, True
    conn = await _connection(nc, subject)
    if conn is None:
        return after, False
    position = after
    received, seen, size = after, 0, 0
    conn.ask(stream, subject, after + 1, min(FIRST_BATCH, until - after))
    clean = False
    try:
        while True:
            got = await _next_records(conn, subject, position)
            if got is None:
                return position, False
            if got:
                received = got[-1][0]
                seen += len(got)
                size += sum(len(data) for _, data in got)
            if conn.ended and conn.pending and received < until:
                # The next batch is on its way while this one is handed on.
                per_event = max(1, size // max(1, seen))
                batch = max(1, min(MAX_BATCH, BATCH_BYTES // per_event, until - received))
                conn.ask(stream, subject, received + 1, batch)
            position, past = await _hand_on(got, position, until, deliver, deliver_many)
            if past:  # `until` itself is gone (expired): the replay is past it all the same
                return position, True
            if position >= until:
                clean = conn.ended and not conn.buf
                return position, True
            if conn.ended:
                clean = not conn.buf
                return position, False  # nothing more stored up to `until` (yet)
    finally:
        if clean:
            _give(nc, conn)
        else:
            conn.close()


#: The short-lived consumer of a long replay: what nats-py's ordered
#: consumer asks for (eventbus.log._ordered_on), pushed to this connection.
INACTIVE_NS = 2_000_000_000
HEARTBEAT_NS = 5_000_000_000


async def replay_pushed(
    nc: Client, stream: str, filters: tuple[str, ...], after: int, until: int, deliver: Deliver,
    deliver_many: DeliverMany | None = None,
) -> tuple[int, bool]:
    """`replay` through one short-lived consumer (the same one nats-py's
    ordered consumer would make: no acks, flow control, in memory, reaped
    by the server 2 s after this reader leaves), for long replays: per
    event the server pushes for a third of what a direct-get reply costs
    it. Same contract as `replay`; a consumer the server refuses (at its
    limit) leaves the replay to the caller, which waits for room."""
    if until <= after:
        return after, True
    conn = await _connection(nc, filters[0])
    if conn is None:
        return after, False
    position = after
    conn.parse = conn._parse_pushed
    deliver_to = nc.new_inbox()
    config: dict[str, object] = {
        "deliver_subject": deliver_to, "deliver_policy": "by_start_sequence", "opt_start_seq": after + 1,
        "ack_policy": "none", "max_deliver": 1, "ack_wait": 22 * 3600 * 10**9, "flow_control": True,
        "idle_heartbeat": HEARTBEAT_NS, "num_replicas": 1, "mem_storage": True, "inactive_threshold": INACTIVE_NS,
        "replay_policy": "instant",
    }
    if len(filters) == 1:
        config["filter_subject"] = filters[0]
    else:
        config["filter_subjects"] = list(filters)
    body = json.dumps({"stream_name": stream, "config": config}).encode()
    conn.writer.write(b"SUB %s 2\r\nPUB $JS.API.CONSUMER.CREATE.%s %s %d\r\n%s\r\n" % (
        deliver_to.encode(), stream.encode(), conn.reply, len(body), body))
    try:
        while True:
            got = await _next_records(conn, filters[0], position)
            if got is None:
                return position, False
            position, past = await _hand_on(got, position, until, deliver, deliver_many)
            if past or position >= until:
                return position, True
            for reply in conn.flow:  # what came before is handed on: let the server send more
                conn.writer.write(b"PUB %s 0\r\n\r\n" % reply)
            conn.flow.clear()
    finally:
        conn.close()  # the consumer may still be pushing: this connection is not reused
