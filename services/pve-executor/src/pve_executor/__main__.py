"""`python -m pve_executor` (what `breakglass pve-executor` runs)."""

from __future__ import annotations

from eventbus.service import run

from .bootstrap import main

if __name__ == "__main__":
    run("pve-executor", main)
