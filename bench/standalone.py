"""What a bench run on its own rig shares (`python -m bench.push`,
`python -m bench.triage`): the command line, a fresh nats-server in a
temporary directory that is gone afterwards unless `--keep` (its logs are
what explains an odd figure), and the two figures each timing reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from .figures import pct
from .rig import Rig


def summary(values: list[float]) -> dict[str, float]:
    """Median and p95: the median for the typical press, p95 for the goal."""
    return {"median_ms": statistics.median(values), "p95_ms": pct(values, 0.95)}


def figure(values: dict[str, float], digits: int) -> str:
    """A `summary` in words."""
    return f"median {values['median_ms']:.{digits}f} ms, p95 {values['p95_ms']:.{digits}f} ms"


def main(name: str, runs: int, measure: Callable[[Rig, int], Awaitable[dict]],
         report: Callable[[dict], None]) -> int:
    """Parse `[--runs N] [--keep]`, run `measure` on a fresh rig, and stop
    the rig whatever happens (its processes must not outlive the bench);
    then the figures in words (`report`) and as one JSON line."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}")
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix=f"breakglass-bench-{name}-"))
    rig = Rig(tmp).start()
    try:
        result = asyncio.run(measure(rig, args.runs))
    finally:
        rig.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}")
    report(result)
    print(json.dumps(result))
    return 0
