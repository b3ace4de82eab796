"""Transcript exports that can be verified offline.

JSONL: a header line, then one line per event with its stream sequence, its
chain link and its stored bytes *verbatim* (spliced in, never re-encoded, so
the hash still matches):

    {"format":"breakglass-transcript","version":1,"session_id":"…","count":N,"last_link":"…","exported_at":"…"}
    {"seq":12,"link":"9f…","event":{"kind":"user",…}}

The header's `count` and `last_link` catch events cut from the end; compare
`last_link` with the live stream (or a copy kept elsewhere) to catch a
wholesale rewrite, which no offline check can.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import msgspec

from . import chain
from .log import Record
from .types import utcnow

FORMAT = "breakglass-transcript"


class Header(msgspec.Struct, kw_only=True):
    format: str
    version: int
    session_id: str
    count: int
    last_link: str
    exported_at: datetime


class Line(msgspec.Struct, kw_only=True):
    seq: int
    link: str
    event: msgspec.Raw


_header_decoder = msgspec.json.Decoder(Header)
_line_decoder = msgspec.json.Decoder(Line)
_encoder = msgspec.json.Encoder()


class ExportError(ValueError):
    """The file is not a breakglass transcript export."""


def jsonl(session_id: str, records: list[Record]) -> Iterator[bytes]:
    header = Header(
        format=FORMAT, version=1, session_id=session_id, count=len(records),
        last_link=records[-1].link if records else chain.GENESIS, exported_at=utcnow(),
    )
    yield _encoder.encode(header) + b"\n"
    for r in records:
        yield b'{"seq":%d,"link":"%s","event":%s}\n' % (r.seq, r.link.encode(), r.data)


def read_jsonl(lines: Iterable[bytes]) -> tuple[Header, list[Line]]:
    it = iter(line for line in lines if line.strip())
    try:
        header = _header_decoder.decode(next(it))
    except StopIteration:
        raise ExportError("empty file") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ExportError(f"line 1 is not a transcript header: {exc}") from None
    if header.format != FORMAT:
        raise ExportError(f"not a {FORMAT} file")
    body = []
    for number, raw in enumerate(it, start=2):
        try:
            body.append(_line_decoder.decode(raw))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ExportError(f"line {number} is malformed: {exc}") from None
    return header, body


def verify_jsonl(lines: Iterable[bytes]) -> str | None:
    """None when the export is intact, else the first problem, in words."""
    header, body = read_jsonl(lines)
    broken = chain.verify((line.seq, line.link, bytes(line.event)) for line in body)
    if broken is not None:
        return f"event {broken.index + 1} (seq {broken.seq}): {broken.reason}"
    if len(body) != header.count:
        return f"the header says {header.count} events, the file has {len(body)} (events removed or added)"
    last = body[-1].link if body else chain.GENESIS
    if last != header.last_link:
        return "the last link does not match the header (events removed from the end?)"
    return None
