"""Auditor and operator tools over the bus: `sessions`, `replay`, `tail`,
`verify`. They only read: nothing here publishes a command or appends an
event, and they connect as the read-only `reader` NATS user (eventbus.access):
with BREAKGLASS_NATS_URL unset, next to `breakglass up`, its password comes
from the data directory (DATA_DIR/nats/credentials.json) when this user may
read it; in production, put the reader's user:password in the URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from contextlib import aclosing
from pathlib import Path

import nats

from eventbus import access, direct, export, index
from events import subjects, transcript
from eventbus.bus import redact, servers
from events.codec import decode_event_lenient
from events.config import ConfigError, Env, nats_url
from eventbus.follow import Following, follow
from eventbus.log import CaughtUp, EventLog, Record
from eventbus.topology import Topology
from events.types import is_uuid

from . import natsauth

RESET, DIM, BOLD = "\x1b[0m", "\x1b[2m", "\x1b[1m"
COLOURS = {"user": "\x1b[36m", "error": "\x1b[31m", "interrupted": "\x1b[31m", "cancelled": "\x1b[33m",
           "verb": "\x1b[35m", "approval": "\x1b[35m", "tool": "\x1b[34m", "turn_end": "\x1b[2m"}


class Paint:
    """ANSI colour only on a terminal, and never with NO_COLOR set."""

    def __init__(self, stream=sys.stdout) -> None:  # type: ignore[no-untyped-def]
        self.on = stream.isatty() and "NO_COLOR" not in os.environ

    def __call__(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.on and code else text


def _nats_url() -> str:
    env = Env()
    if env.str("NATS_URL"):
        try:
            return nats_url(env, "breakglass")  # with BREAKGLASS_NATS_PASSWORD_FILE, when given
        except ConfigError as exc:
            raise SystemExit(f"breakglass: {exc}") from None
    port = env.int("NATS_PORT", 4222, minimum=1, maximum=65535)
    password = natsauth.reader_password(Path(env.str("DATA_DIR", ".breakglass") or ".breakglass"))
    if password:
        return natsauth.url(access.READER, password, "127.0.0.1", port)
    return f"nats://127.0.0.1:{port}"


async def _quiet(exc: Exception) -> None:
    """nats-py would print a traceback per failed attempt; we say it once."""


async def _connect():  # type: ignore[no-untyped-def]
    try:
        return await asyncio.wait_for(
            nats.connect(
                servers(_nats_url()), name="breakglass-cli", connect_timeout=3, allow_reconnect=False, error_cb=_quiet,
                inbox_prefix=access.inbox_prefix(access.READER),
            ),
            5,
        )
    except Exception as exc:
        reason = str(exc) or "no server answered"
        raise SystemExit(f"breakglass: cannot reach NATS at {redact(_nats_url())}: {reason}") from None


async def _until_stopped(following: Following) -> None:
    """Follow until Ctrl-C; a lost server ends it in one line, no traceback."""
    try:
        await following.wait()
    except Exception as exc:
        raise SystemExit(f"breakglass: stopped following: {exc or type(exc).__name__}") from None
    finally:
        await following.stop()


def render(record: Record, paint: Paint) -> str | None:
    event = decode_event_lenient(record.data)
    if event is None:
        return None
    kind = type(event).__struct_config__.tag
    head = paint(DIM, f"#{record.seq} {event.ts:%Y-%m-%d %H:%M:%S} ") + paint(BOLD, event.by)
    return f"{head}\n{paint(COLOURS.get(kind, ''), transcript.describe(event))}\n"


async def sessions_cmd(args: argparse.Namespace) -> int:
    nc = await _connect()
    try:
        js = nc.jetstream()
        t = Topology.from_env()
        found = await index.list_sessions(js, await js.key_value(t.kv_bucket), t, query=args.query, limit=args.limit)
        log = EventLog(js, t)
        heads = [await log.head(s.session_id) for s in found]
    finally:
        await nc.close()
    paint = Paint()
    for s, (seq, link) in zip(found, heads):
        state = paint(COLOURS["error"] if s.state == "running" else DIM, s.state)
        # The chain head: keep it (a ticket, a chat) and a cut export fails `verify --anchor` against it.
        anchor = export.format_anchor(seq, link, export.MIN_ANCHOR_HEX) if seq else "-"
        print(f"{s.session_id}  {s.created_at:%Y-%m-%d %H:%M}  {s.created_by:<12} {state:<8} "
              f"{s.event_count:>5} events {s.verbs_run:>2} verbs  {s.outcome or '-':<11} {anchor}  {s.title}")
    if not found:
        print("no sessions", file=sys.stderr)
    return 0


async def replay_cmd(args: argparse.Namespace) -> int:
    if not is_uuid(args.session):
        raise SystemExit(f"breakglass: {args.session!r} is not a session id")
    nc = await _connect()
    paint = Paint()
    try:
        log = EventLog(nc.jetstream(), Topology.from_env())
        if args.format in ("jsonl", "md"):
            records = await log.read(args.session)
            if not records:
                raise SystemExit(f"breakglass: no events for session {args.session}")
            if args.format == "jsonl":
                for line in export.jsonl(args.session, records):
                    sys.stdout.buffer.write(line)
            else:
                sys.stdout.write(transcript.markdown(args.session, [(r.seq, r.data) for r in records]))
            return 0
        if args.follow:
            # No consumer (the reader may create none): direct gets, then the
            # republished events, handed over exactly (eventbus.follow).
            def show(got: direct.Got) -> None:
                text = render(Record(got.seq, got.data), paint)
                if text:
                    print(text, flush=True)

            following = await follow(nc, subjects.session_filters(args.session), 0, show,
                                     stream=Topology.from_env().events_stream)
            print(paint(DIM, "— caught up; following (Ctrl-C to stop) —"), flush=True)
            await _until_stopped(following)
            return 0
        async with aclosing(log.attach(args.session, follow=False)) as items:
            async for item in items:
                if isinstance(item, CaughtUp):
                    continue
                text = render(item, paint)
                if text:
                    print(text, flush=True)
    finally:
        await nc.close()
    return 0


async def tail_cmd(args: argparse.Namespace) -> int:
    """Live events as they are stored, from now on: each once, in order,
    with its sequence (eventbus.follow; no consumer)."""
    nc = await _connect()
    paint = Paint()
    filters = subjects.session_filters(args.session) if args.session else (subjects.EVENTS_ALL,)
    stream = Topology.from_env().events_stream

    def show(got: direct.Got) -> None:
        event = decode_event_lenient(got.data)
        if event is None or (args.kind and type(event).__struct_config__.tag not in args.kind):
            return
        where = subjects.session_of(got.subject) or got.subject.rsplit(".", 1)[-1]
        print(paint(DIM, f"[{where}] ") + (render(Record(got.seq, got.data), paint) or ""), flush=True)

    try:
        start = await direct.stream_last_seq(nc, stream)
        following = await follow(nc, filters, start, show, stream=stream)
        print(paint(DIM, f"— following what is stored after #{start} (Ctrl-C to stop) —"), flush=True)
        await _until_stopped(following)
    finally:
        await nc.close()
    return 0


def nats_url_cmd(args: argparse.Namespace) -> int:
    """The read-only user's URL of the server `breakglass up` runs here, for
    an integrator's BREAKGLASS_NATS_URL (e.g. examples/notifier)."""
    env = Env()
    data_dir = Path(env.str("DATA_DIR", ".breakglass") or ".breakglass")
    password = natsauth.reader_password(data_dir)
    if password is None:
        print(f"breakglass: no NATS credentials readable in {natsauth.auth_dir(data_dir)} "
              "(run this where `breakglass up` runs, with the same BREAKGLASS_DATA_DIR)", file=sys.stderr)
        return 1
    print(natsauth.url(access.READER, password, "127.0.0.1", env.int("NATS_PORT", 4222, minimum=1, maximum=65535)))
    return 0


async def anchor_cmd(args: argparse.Namespace) -> int:
    """The session's chain head, `SEQ:LINK`, to keep outside the stream."""
    if not is_uuid(args.session):
        raise SystemExit(f"breakglass: {args.session!r} is not a session id")
    nc = await _connect()
    try:
        seq, link = await EventLog(nc.jetstream(), Topology.from_env()).head(args.session)
    finally:
        await nc.close()
    if not seq:
        raise SystemExit(f"breakglass: no events for session {args.session}")
    print(export.format_anchor(seq, link))
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        anchors = [export.parse_anchor(a) for a in args.anchor or ()]
        with path.open("rb") as f:
            problem = export.verify_jsonl(f, anchors)
    except OSError as exc:
        print(f"breakglass: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    except export.ExportError as exc:
        print(f"breakglass: {path}: {exc}", file=sys.stderr)
        return 2
    if problem:
        print(f"TAMPERED {path}: {problem}")
        return 1
    held = f", and it holds {len(anchors)} anchor(s)" if anchors else " (give --anchor SEQ:LINK to catch a cut tail)"
    print(f"OK {path}: every link of the chain holds, every event is its writer's to state{held}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sessions", help="list sessions, newest first")
    p.add_argument("query", nargs="?", default="", help="filter on title, creator or id")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=lambda a: asyncio.run(sessions_cmd(a)))

    p = sub.add_parser("replay", help="show a session's transcript, or export it")
    p.add_argument("session")
    p.add_argument("--follow", "-f", action="store_true", help="keep showing new events")
    p.add_argument("--format", choices=("text", "jsonl", "md"), default="text")
    p.set_defaults(func=lambda a: asyncio.run(replay_cmd(a)))

    p = sub.add_parser("tail", help="live events from the bus")
    p.add_argument("--session")
    p.add_argument("--kind", action="append", help="only these kinds (repeatable)")
    p.set_defaults(func=lambda a: asyncio.run(tail_cmd(a)))

    p = sub.add_parser("nats-url", help="print the read-only NATS user's URL of the server `up` runs here")
    p.set_defaults(func=nats_url_cmd)

    p = sub.add_parser("verify", help="check a JSONL export's hash chain and authorship offline")
    p.add_argument("file")
    p.add_argument("--anchor", action="append", metavar="SEQ:LINK",
                   help="a chain head kept elsewhere (`breakglass sessions`, `breakglass anchor`); repeatable")
    p.set_defaults(func=verify_cmd)

    p = sub.add_parser("anchor", help="print a session's chain head (SEQ:LINK) to keep outside the stream")
    p.add_argument("session")
    p.set_defaults(func=lambda a: asyncio.run(anchor_cmd(a)))
