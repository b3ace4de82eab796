"""Framing a run of replayed records at once (the bulk replay's path) gives
the same bytes, and the same listener state, as framing them one by one."""

from __future__ import annotations

from gateway.hub import Listener, record_frame, record_frames

PAYLOADS = [
    b'{"kind":"text","text":"plain"}',
    b"{}",
    b"",
    b'{"text":"two\nlines"}',
    b'{"text":"a\r\nb\rc"}',
    b'\n{"x":1}',
    b'{"t":"\xc3\xa9\x00"}',
]


def test_a_run_of_records_is_framed_byte_for_byte_like_one_record():
    records = list(enumerate(PAYLOADS, start=41))
    assert record_frames(records) == [(seq, record_frame(seq, data)) for seq, data in records]


async def test_a_listener_takes_a_run_of_frames_like_one_frame_at_a_time():
    frames = record_frames(list(enumerate(PAYLOADS, start=10)))
    one, many = Listener(after=12), Listener(after=12)  # the first three were sent already
    for seq, frame in frames:
        one.replayed_frame(seq, frame)
    many.replayed_frames(frames)
    assert many.position == one.position == 16
    assert many._out == one._out == [frame for seq, frame in frames if seq > 12]
    assert many._size == one._size
    assert many.replayed_frames(frames[:2]) is None and many.position == 16
