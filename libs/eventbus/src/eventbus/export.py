"""Transcript exports that can be verified offline.

JSONL: a header line, then one line per event with its stream sequence, its
chain link and its stored bytes *verbatim* (spliced in, never re-encoded, so
the hash still matches):

    {"format":"breakglass-transcript","version":1,"session_id":"…","count":N,"last_link":"…","exported_at":"…"}
    {"seq":12,"link":"9f…","writer":"gateway","event":{"kind":"user",…}}

`writer` (absent for events stored before per-writer subjects) is the
service whose subject held the event; the link binds it (events.chain), and
`verify_jsonl` holds it to the kinds that writer may state
(events.authorship).

The header's `count` and `last_link` catch a careless cut; a cut with the
header rewritten too is caught only against an anchor kept outside the
stream's writers: a chain head (`SEQ:LINK`, printed by `breakglass sessions`
and `breakglass anchor`) recorded earlier, which the export must contain.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import msgspec

from events import authorship, chain, subjects
from events.codec import ContractError, decode_event_lenient
from .log import Record
from events.types import utcnow

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
    writer: str | None = None


class Anchor(msgspec.Struct, frozen=True):
    """A chain head kept outside the stream: (sequence, link or a prefix of
    at least MIN_ANCHOR_HEX hex digits of it)."""

    seq: int
    link: str


MIN_ANCHOR_HEX = 16


def parse_anchor(text: str) -> Anchor:
    seq, _, link = text.strip().partition(":")
    link = link.lower()
    if not seq.isascii() or not seq.isdigit() or len(link) < MIN_ANCHOR_HEX or len(link) > 64 \
            or any(c not in "0123456789abcdef" for c in link):
        raise ExportError(f"an anchor is SEQ:LINK (the link, or at least {MIN_ANCHOR_HEX} hex digits of it), "
                          f"got {text!r}")
    return Anchor(int(seq), link)


def format_anchor(seq: int, link: str, digits: int = 64) -> str:
    return f"{seq}:{link[:digits]}"


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
        if r.writer:
            yield b'{"seq":%d,"link":"%s","writer":"%s","event":%s}\n' % (r.seq, r.link.encode(), r.writer.encode(),
                                                                          r.data)
        else:
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


def verify_jsonl(lines: Iterable[bytes], anchors: Iterable[Anchor] = ()) -> str | None:
    """None when the export is intact, else the first problem, in words:
    a broken link, an event its writer may not state, a count or last link
    that does not match the header, an anchor the export does not hold."""
    header, body = read_jsonl(lines)
    broken = chain.verify((line.seq, line.link, bytes(line.event), line.writer or "") for line in body)
    if broken is not None:
        return f"event {broken.index + 1} (seq {broken.seq}): {broken.reason}"
    for number, line in enumerate(body, start=1):
        if line.writer is None:
            continue  # stored before per-writer subjects: no writer to hold to its kinds
        if line.writer not in subjects.WRITERS:
            return f"event {number} (seq {line.seq}): unknown writer {line.writer!r}"
        try:
            event = decode_event_lenient(bytes(line.event))
        except ContractError as exc:
            return f"event {number} (seq {line.seq}): {exc}"
        forged = authorship.problem(line.writer, event)
        if forged:
            return f"event {number} (seq {line.seq}): forged: {forged}"
    by_seq = {line.seq: line.link for line in body}
    for anchor in anchors:
        link = by_seq.get(anchor.seq)
        if link is None:
            last = body[-1].seq if body else 0
            return (f"the anchor {format_anchor(anchor.seq, anchor.link, 16)} is not in the export, which ends at "
                    f"seq {last} (events cut from the end?)" if anchor.seq > last else
                    f"the anchor's event seq {anchor.seq} is missing from the export (events removed)")
        if not link.startswith(anchor.link):
            return f"event seq {anchor.seq} does not carry the anchor's link (the log was rewritten)"
    if len(body) != header.count:
        return f"the header says {header.count} events, the file has {len(body)} (events removed or added)"
    last = body[-1].link if body else chain.GENESIS
    if last != header.last_link:
        return "the last link does not match the header (events removed from the end?)"
    return None
