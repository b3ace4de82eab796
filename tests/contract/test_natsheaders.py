"""The faster NATS header parser answers exactly as nats-py's own."""

import random

from nats.aio.client import Client

from eventbus import natsheaders

PIECES = [b"Nats-Sequence", b"Nats-Subject", b": ", b":", b" ", b"\t", b"\x1c", b"\r\n", b"\n", b"value",
          b"\xc3\xa9", b"\xff", b"a b", b"Name", b"12", b"", b"  x  ", b"\x0b", b"caf\xc3\xa9"]


def test_installed() -> None:
    assert natsheaders.install()
    assert Client._parse_header_lines is natsheaders.parse_header_lines


def test_same_answer_as_the_library() -> None:
    rng = random.Random(16)
    for _ in range(20_000):
        raw = b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))
        assert natsheaders.parse_header_lines(raw) == natsheaders.original(raw), raw


def test_a_direct_get_reply() -> None:
    raw = (b"Nats-Stream: EVENTS\r\nNats-Subject: breakglass.events.session.x.gateway\r\n"
           b"Nats-Sequence: 42\r\nNats-Time-Stamp: 2026-12-02T05:00:00Z\r\nNats-Num-Pending: 7\r\n\r\n")
    got = natsheaders.parse_header_lines(raw)
    assert got == natsheaders.original(raw)
    assert got["Nats-Sequence"] == "42" and got["Nats-Num-Pending"] == "7"
