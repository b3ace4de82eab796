"""Untrusted bytes from the host, made safe to store and show: capped,
decoded leniently, the cut marked; and every answer fits one NATS message."""

from __future__ import annotations

import pytest

from events.codec import encode
from events.commands import VerbResult
from events.verbs import Verb
from pve_executor.output import REFIT_MARK, Capped, fit, truncation_mark

CASES = [
    # (chunks, cap, text)
    ([b"hello\n"], 1024, "hello\n"),
    ([], 1024, ""),
    ([b"abc", b"def"], 4, "abcd" + truncation_mark(2)),
    ([b"abcd"], 4, "abcd"),  # exactly at the cap: nothing cut, no mark
    ([b"ab", b"cd", b"ef"], 4, "abcd" + truncation_mark(2)),
    ([b"\xff\xfe ok"], 1024, "\ufffd\ufffd ok"),
    ([b"caf\xc3\xa9"], 1024, "café"),
    ([b"caf\xc3\xa9!"], 4, "caf" + truncation_mark(3)),  # a cut inside é: its first byte counts as omitted
    ([b"\xe2\x82\xac\xe2\x82\xac"], 5, "€" + truncation_mark(3)),
    ([b"\x00\x1b[31m"], 1024, "\x00\x1b[31m"),
    ([b"x" * 10, b"y" * 10], 5, "xxxxx" + truncation_mark(15)),
]


@pytest.mark.parametrize("chunks, cap, text", CASES)
def test_capped_keeps_the_head_and_marks_the_cut(chunks, cap, text):
    capped = Capped(cap)
    for chunk in chunks:
        capped.feed(chunk)
    assert capped.text() == text
    assert len(capped.kept) <= cap


def test_the_mark_says_how_much_was_left_out():
    assert truncation_mark(123) == "\n… [truncated: 123 bytes omitted]"
    capped = Capped(65_536)
    capped.feed(b"a" * 70_000)
    assert capped.text().endswith("[truncated: 4464 bytes omitted]")


def test_a_cap_below_one_byte_is_refused():
    with pytest.raises(ValueError):
        Capped(0)


def test_fit_leaves_a_small_result_alone():
    result = VerbResult(verb=Verb.STATUS, exit_code=0, stdout="status: running\n")
    assert fit(result, 1024 * 1024, 4096) is result


@pytest.mark.parametrize("stdout, stderr", [
    ("\x00" * 400_000, ""),             # escapes six-fold in JSON
    ("x" * 900_000, "\x01" * 300_000),
    ("", "é" * 600_000),
])
def test_fit_cuts_until_one_nats_message_holds_it(stdout, stderr):
    result = VerbResult(verb=Verb.FORENSICS, exit_code=0, stdout=stdout, stderr=stderr)
    fitted = fit(result, 1024 * 1024, 4096)
    assert len(encode(fitted)) <= 1024 * 1024 - 4096
    assert (fitted.verb, fitted.exit_code, fitted.rejected) == (result.verb, 0, False)
    for before, after in ((stdout, fitted.stdout), (stderr, fitted.stderr)):
        if after != before:
            assert after.endswith(REFIT_MARK)
            assert before.startswith(after[: -len(REFIT_MARK)])
