"""The chaos suite's knobs, environment variables so they work from
`make test` and CI alike:

- `BREAKGLASS_CHAOS_ITERATIONS`: kills per target (default 2, CI-sized;
  20 or more for the full run);
- `BREAKGLASS_CHAOS_SEED`: the seed of the kill points (default: a fresh
  one, printed with every iteration so a failure can be replayed).
"""

from __future__ import annotations

import os
import secrets

import pytest

DEFAULT_ITERATIONS = 2


def iterations() -> int:
    raw = os.environ.get("BREAKGLASS_CHAOS_ITERATIONS", "")
    try:
        value = int(raw) if raw else DEFAULT_ITERATIONS
    except ValueError:
        raise pytest.UsageError(f"BREAKGLASS_CHAOS_ITERATIONS must be a whole number, not {raw!r}") from None
    if value < 1:
        raise pytest.UsageError("BREAKGLASS_CHAOS_ITERATIONS must be at least 1")
    return value


#: One seed per test run, shared by every target (each derives its own stream).
SEED = os.environ.get("BREAKGLASS_CHAOS_SEED") or str(secrets.randbelow(10**9))
