"""Batched direct gets: reading a stream without creating a consumer.

A consumer is server state per reader, and nats-server caps a stream's
consumers (eventbus.topology sets the cap). Reads that a request can answer
(a session's events from a sequence on, the newest event of many subjects,
how many events a subject holds) go through JetStream's DIRECT.GET API
instead (nats-server 2.11+, the stream needs `allow_direct`): one request,
N messages back on an inbox, then an end-of-batch status. nats-py 2.16 has
no call for the batch form, so this module sends the request itself.

Each message comes back as stored, with `Nats-Sequence`, `Nats-Subject` and
`Nats-Num-Pending` (how many matching messages remain after it) headers.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client

#: The server answers at most this many messages to one batch request.
MAX_BATCH = 1000
#: Stream sequences are unsigned 64-bit numbers.
MAX_SEQ = 2**64 - 1
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Got:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]
    #: Matching messages left after this one (in the batch's filter).
    pending: int


class DirectGetError(RuntimeError):
    """The server refused a direct get (status other than found/not found)."""


def api_subject(stream: str) -> str:
    return f"$JS.API.DIRECT.GET.{stream}"


async def get_batch(
    nc: Client, stream: str, *, seq: int = 1, subject: str | None = None, batch: int = MAX_BATCH,
    multi_last: list[str] | None = None, up_to_seq: int | None = None, timeout: float = REQUEST_TIMEOUT,
) -> tuple[list[Got], int]:
    """One batch request: the messages (in stream order) and how many more
    match after the last one (0 when the batch reached the end).

    `subject` (wildcards allowed) filters a batch from `seq` on;
    `multi_last` asks for the newest message of each subject instead."""
    if multi_last is None and seq > MAX_SEQ:
        return [], 0  # past every sequence a stream can hold (the server calls it malformed)
    body: dict[str, object] = {"batch": max(1, min(batch, MAX_BATCH))}
    if multi_last is not None:
        body["multi_last"] = multi_last
        if up_to_seq is not None:
            body["up_to_seq"] = up_to_seq
    else:
        body["seq"] = max(1, seq)
        if subject is not None:
            body["next_by_subj"] = subject
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    out: list[Got] = []

    def on_msg(msg) -> None:  # type: ignore[no-untyped-def]
        headers = msg.headers or {}
        status = headers.get("Status")
        if done.done():
            return
        if status is None:
            out.append(Got(
                int(headers["Nats-Sequence"]), headers.get("Nats-Subject", ""), msg.data, headers,
                int(headers.get("Nats-Num-Pending", 0)),
            ))
        elif status == "204":  # end of batch
            done.set_result(int(headers.get("Nats-Num-Pending", 0)))
        elif status == "404":  # nothing (more) matches
            done.set_result(0)
        else:
            done.set_exception(DirectGetError(f"direct get on {stream}: {status} {headers.get('Description', '')}"))

    replies = await _replies(nc)
    reply = replies.open(on_msg)
    try:
        await nc.publish(api_subject(stream), json.dumps(body).encode(), reply=reply)
        pending = await asyncio.wait_for(done, timeout)
    finally:
        replies.close(reply)
    return out, pending


class _Replies:
    """One subscription per connection for every batch's replies: a batch
    request gets its own reply subject under it (`<inbox>.<n>`), so a
    request costs one publish, not a subscribe and an unsubscribe too (a
    listing page makes about fifty of them)."""

    def __init__(self, nc: Client) -> None:
        self.prefix = nc.new_inbox()
        self._handlers: dict[str, Callable[[object], None]] = {}
        self._next = 0
        self._cut = len(self.prefix) + 1
        self.ready = asyncio.ensure_future(nc.subscribe(f"{self.prefix}.*", cb=self._on_msg))

    async def _on_msg(self, msg) -> None:  # type: ignore[no-untyped-def]
        handler = self._handlers.get(msg.subject[self._cut:])
        if handler is not None:
            handler(msg)

    def open(self, handler: Callable[[object], None]) -> str:
        self._next += 1
        token = str(self._next)
        self._handlers[token] = handler
        return f"{self.prefix}.{token}"

    def close(self, reply: str) -> None:
        self._handlers.pop(reply[self._cut:], None)


_REPLIES: "weakref.WeakKeyDictionary[Client, _Replies]" = weakref.WeakKeyDictionary()


async def _replies(nc: Client) -> _Replies:
    replies = _REPLIES.get(nc)
    if replies is None:
        replies = _REPLIES[nc] = _Replies(nc)
    try:
        await asyncio.shield(replies.ready)
    except Exception:
        if _REPLIES.get(nc) is replies:
            del _REPLIES[nc]  # the next request tries again
        raise
    return replies


async def last_seq(nc: Client, stream: str, subject: str, timeout: float = REQUEST_TIMEOUT) -> int:
    """The sequence of the newest message on `subject` (wildcards allowed), 0 when none."""
    msg = await nc.request(api_subject(stream), json.dumps({"last_by_subj": subject}).encode(), timeout=timeout)
    headers = msg.headers or {}
    status = headers.get("Status")
    if status == "404":
        return 0
    if status is not None:
        raise DirectGetError(f"direct get on {stream}: {status} {headers.get('Description', '')}")
    return int(headers["Nats-Sequence"])


async def stream_last_seq(nc: Client, stream: str, timeout: float = REQUEST_TIMEOUT) -> int:
    """The stream's newest sequence, whatever its subject (constant cost,
    unlike a last-by-subject over a wildcard, which the server answers by
    looking at every matching subject)."""
    msg = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=timeout)
    info = json.loads(msg.data)
    if "error" in info:
        raise DirectGetError(f"stream info of {stream}: {info['error'].get('description', info['error'])}")
    return int(info["state"]["last_seq"])


async def newest(nc: Client, stream: str, subject: str, n: int, below: int | None = None) -> list[Got]:
    """The `n` newest messages on `subject` (wildcards allowed) with a
    sequence < `below` (when given), oldest first.

    Read backwards in growing windows of sequences: a window of n
    sequences before the newest is read forward in batches; if it holds
    fewer than n matches, a window four times larger is tried. The cost
    follows n and how densely the subject fills the stream's tail, not the
    number of subjects or messages stored (a server's pending count over a
    wildcard does grow with the subjects, so the window is read unfiltered
    and `subject` is matched here)."""
    if n <= 0:
        return []
    top = (below - 1) if below is not None else await stream_last_seq(nc, stream)
    if top <= 0:
        return []
    width = n
    while True:
        start = max(1, top - width + 1)
        found: list[Got] = []
        seq = start
        while seq <= top:
            # Unfiltered, matched here: the server's pending count for a
            # wildcard filter costs it more as subjects accumulate, while
            # a stream's tail is mostly the subjects asked for anyway.
            got, more = await get_batch(nc, stream, seq=seq, batch=min(MAX_BATCH, top - seq + 1))
            found += [g for g in got if g.seq <= top and _matches(g.subject, subject)]
            if not got or not more or got[-1].seq >= top:
                break
            seq = got[-1].seq + 1
        if len(found) >= n or start == 1:
            return found[-n:]
        width *= 4


def _matches(subject: str, pattern: str) -> bool:
    """NATS subject matching (`*` one token, `>` the rest)."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(have) == len(want)


async def get_batch_any(
    nc: Client, stream: str, *, seq: int = 1, filters: tuple[str, ...], batch: int = MAX_BATCH,
) -> tuple[list[Got], int]:
    """`get_batch` over several subject filters at once, as one read: a
    session's events live on its old subject and its writers' subjects
    (events.subjects.session_filters), and no single filter matches both.

    One batch per filter, in parallel; merged in stream order up to the
    lowest last sequence of any filter that has more left (past it, a
    message of that filter could still come first). Returns the merged
    messages and how many matching messages remain after them."""
    if len(filters) == 1:
        return await get_batch(nc, stream, seq=seq, subject=filters[0], batch=batch)
    answers = await asyncio.gather(*(get_batch(nc, stream, seq=seq, subject=f, batch=batch) for f in filters))
    merged = sorted((g for got, _ in answers for g in got), key=lambda g: g.seq)
    left = sum(more for _, more in answers)
    bound = min((got[-1].seq for got, more in answers if more and got), default=None)
    if bound is None:
        return merged, left
    kept = [g for g in merged if g.seq <= bound]
    return kept, left + len(merged) - len(kept)
