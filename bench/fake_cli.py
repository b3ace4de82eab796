"""A stand-in for the Claude Code CLI that timestamps its stdout lines.

Started by the real agent-runner as its `claude` binary. The prompt (the
argument after `--`) says how many lines to print and how fast:
`lines=500 gap_ms=2` (gap 0 = as fast as it can). Each text is
`t=<CLOCK_MONOTONIC ns when the line was written>`, so a client on the same
machine computes line → frame latency. It prints, per step, one partial
text delta (a live-only `delta` frame) and one whole assistant text block (a
stored `text` event), then a result line.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    prompt = argv[argv.index("--") + 1] if "--" in argv else ""
    options = dict(part.rstrip(",.;").split("=", 1) for part in prompt.split() if "=" in part)  # "lines=5," in a list
    lines = int(options.get("lines", "100"))
    gap = float(options.get("gap_ms", "2")) / 1000
    deltas = options.get("deltas", "1") == "1"
    session = argv[argv.index("--session-id") + 1] if "--session-id" in argv else argv[argv.index("--resume") + 1]
    out = sys.stdout.buffer
    write = out.write
    flush = out.flush
    write(json.dumps({"type": "system", "subtype": "init", "session_id": session, "model": "bench"}).encode() + b"\n")
    flush()
    started = time.monotonic()
    next_at = time.monotonic()
    for i in range(lines):
        message = f"msg_{i}"
        if deltas:
            write(b'{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
                  b'"delta":{"type":"text_delta","text":"t=%d"}},"api_message_id":"%s"}\n'
                  % (time.monotonic_ns(), message.encode()))
            flush()
        write(b'{"type":"assistant","message":{"id":"%s","content":[{"type":"text","text":"t=%d"}]}}\n'
              % (message.encode(), time.monotonic_ns()))
        flush()
        if gap > 0:
            next_at += gap
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    elapsed_ms = int((time.monotonic() - started) * 1000)
    write(json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "done",
                      "duration_ms": elapsed_ms, "total_cost_usd": 0.0}).encode() + b"\n")
    flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
