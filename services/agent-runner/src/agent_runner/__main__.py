"""`python -m agent_runner` (what `breakglass agent-runner` runs)."""

from __future__ import annotations

from eventbus.service import run

from .bootstrap import main

if __name__ == "__main__":
    run("agent-runner", main)
