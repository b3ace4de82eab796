"""`python -m bench.warm_prime [--prime a+b] [--gap S] [--clis N]`: where a
warm CLI's first prompt spends its time, and whether a control request at
warm-up ("priming") takes that work off the first prompt.

The bare REAL CLI (no sandbox, no runner, no MCP) on the fake Messages API,
in streaming-input mode as `agent_runner.warm` runs it: `initialize`, then
the `--prime` control requests in order (each waited for), `--gap` seconds
idle (an operator typing), then two prompts; for each, stdin line → the
fake API has the model request. Also prints every request the CLI sent,
so a priming request that calls the API (not allowed at warm-up: it would
be a model call the operator did not ask for) shows. `--preconnect`: leave
out CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, so the CLI sends its own
`HEAD /api/hello` at start (its HTTP client and connection warm before the
first prompt); the runner keeps that variable set. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter

from tests.fakeapi import FakeAnthropic, text
from tests.fakeapi.cli import require_claude

#: Arguments some control requests need; the others take none.
ARGS = {"set_model": {"model": "claude-sonnet-4-5"}, "set_permission_mode": {"mode": "default"}}


def line(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def one(claude: str, api: FakeAnthropic, tmp: str, prime: list[str], gap: float, preconnect: bool) -> tuple[float, list[float]]:
    """One CLI: (priming ms, [first prompt ms, next prompt ms])."""
    home = tempfile.mkdtemp(dir=tmp)
    env = {"HOME": home, "TMPDIR": home, "PATH": "/usr/bin:/bin", "ANTHROPIC_BASE_URL": api.url,
           "ANTHROPIC_API_KEY": "test-key", "CLAUDE_CODE_MAX_RETRIES": "0", "DISABLE_TELEMETRY": "1",
           "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    if preconnect:
        del env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]
    args = [claude, "-p", "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
            "--include-partial-messages", "--model", "claude-sonnet-4-5", "--tools=Bash,Read,Grep,Glob",
            "--allowedTools=Bash,Read,Grep,Glob", "--session-id", str(uuid.uuid4()), "--setting-sources", ""]
    cli = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.DEVNULL, env=env, cwd=home, limit=2**24)
    assert cli.stdin is not None and cli.stdout is not None

    async def until(marker: bytes) -> None:
        while True:
            got = await cli.stdout.readline()  # type: ignore[union-attr]
            if not got:
                raise RuntimeError("the CLI ended")
            if marker in got:
                return

    async def control(request_id: str, subtype: str) -> None:
        request = {"subtype": subtype, **ARGS.get(subtype, {})}
        cli.stdin.write(line({"type": "control_request", "request_id": request_id, "request": request}))  # type: ignore[union-attr]
        await until(f'"request_id":"{request_id}"'.encode())

    try:
        await control("init", "initialize")
        started = time.monotonic()
        for n, subtype in enumerate(prime):
            await control(f"prime-{n}", subtype)
        primed = (time.monotonic() - started) * 1000
        await asyncio.sleep(gap)
        took = []
        for _ in range(2):
            before = len(api.model_requests)
            sent = time.monotonic()
            cli.stdin.write(line({"type": "user", "message": {"role": "user", "content": "hello"},
                                  "parent_tool_use_id": None}))
            await cli.stdin.drain()
            while len(api.model_requests) <= before:
                await asyncio.sleep(0.0005)
            took.append((api.model_requests[before].at - sent) * 1000)
            await until(b'"type":"result"')
            await asyncio.sleep(0.3)
        return primed, took
    finally:
        cli.stdin.close()
        await cli.wait()


async def main(prime: list[str], gap: float, clis: int, preconnect: bool) -> None:
    claude = str(require_claude())
    with FakeAnthropic() as api, tempfile.TemporaryDirectory(prefix="bench-prime-") as tmp:
        api.default = text("hi")
        runs = [await one(claude, api, tmp, prime, gap, preconnect) for _ in range(clis)]
        sent = Counter(r.path for r in api.requests)
        first, after = [r[1][0] for r in runs], [r[1][1] for r in runs]
        print(f"prime {'+'.join(prime) or 'none'}{' (preconnect)' if preconnect else ''}: priming {[round(r[0]) for r in runs]} ms; "
              f"first prompt p50 {statistics.median(first):.0f} ms {sorted(round(x) for x in first)}; "
              f"next prompt p50 {statistics.median(after):.0f} ms {sorted(round(x) for x in after)}; "
              f"API requests {dict(sent)} (prompts: {2 * clis}); load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prime", default="", help="control request subtypes sent after initialize, '+'-separated")
    parser.add_argument("--gap", type=float, default=3.0, help="idle seconds between warm-up and the first prompt")
    parser.add_argument("--clis", type=int, default=5)
    parser.add_argument("--preconnect", action="store_true", help="let the CLI warm its HTTP connection at start")
    args = parser.parse_args()
    asyncio.run(main([p for p in args.prime.split("+") if p], args.gap, args.clis, args.preconnect))
    sys.exit(0)
