"""What comes back from the host, made safe to store and show.

The host's stdout and stderr are untrusted bytes: possibly huge, binary or
not UTF-8 (a wedged VM's monitor can print anything). Each stream is kept up
to a cap while the rest is drained and counted (the remote side must never
block on a full window, or a mutating verb could stall half-way), then
decoded as UTF-8 with replacement characters, and a cut is marked in the text
itself so nobody mistakes a prefix for the whole story.

Pure functions and a small accumulator: no I/O, pinned by table-driven tests.
"""

from __future__ import annotations

import codecs

from events.codec import encode
from events.commands import VerbResult

MARK = "\n… [truncated: {omitted} bytes omitted]"
REFIT_MARK = "\n… [cut further to fit one NATS message]"


def truncation_mark(omitted: int) -> str:
    return MARK.format(omitted=omitted)


class Capped:
    """Keeps the first `cap` bytes of a stream and counts the rest."""

    __slots__ = ("cap", "_kept", "omitted")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("the cap must be at least one byte")
        self.cap = cap
        self._kept = bytearray()
        self.omitted = 0

    def feed(self, data: bytes) -> None:
        room = self.cap - len(self._kept)
        if room > 0:
            self._kept += data[:room]
        self.omitted += max(0, len(data) - max(room, 0))

    @property
    def kept(self) -> bytes:
        return bytes(self._kept)

    def text(self) -> str:
        """The kept bytes as text; a cut is marked with the omitted count.

        When the cut falls inside a multi-byte character, its leading bytes
        are counted as omitted instead of showing up as a stray U+FFFD.
        """
        if not self.omitted:
            return self._kept.decode("utf-8", errors="replace")
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = decoder.decode(bytes(self._kept), final=False)
        pending = len(decoder.getstate()[0])
        return text + truncation_mark(self.omitted + pending)


def fit(result: VerbResult, limit: int, overhead: int = 0) -> VerbResult:
    """`result`, with its outputs cut further until it encodes within
    `limit - overhead` bytes.

    The byte cap bounds what the host sent, not the JSON: escaping can grow
    binary output up to six-fold (`\\u0000`). A reply, a KV record or an
    event over the server's max payload would be refused by NATS, so the
    answer would be lost; a shorter, clearly marked answer is better.
    """
    budget = limit - overhead
    stdout, stderr = result.stdout, result.stderr
    while len(encode(_with(result, stdout, stderr))) > budget:
        if not stdout and not stderr:
            break
        if len(stdout) >= len(stderr):
            stdout = _halve(stdout)
        else:
            stderr = _halve(stderr)
    return _with(result, stdout, stderr)


def _halve(text: str) -> str:
    if text.endswith(REFIT_MARK):
        text = text[: -len(REFIT_MARK)]
    return text[: len(text) // 2] + REFIT_MARK if len(text) > 1 else ""


def _with(result: VerbResult, stdout: str, stderr: str) -> VerbResult:
    if stdout is result.stdout and stderr is result.stderr:
        return result
    return VerbResult(verb=result.verb, exit_code=result.exit_code, stdout=stdout, stderr=stderr,
                      rejected=result.rejected)
