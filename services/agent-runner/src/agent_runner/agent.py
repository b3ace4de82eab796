"""The agent definition (`agents/breakglass.md`): YAML front matter naming
its tools, then the instructions appended to the CLI's system prompt."""

from __future__ import annotations

from pathlib import Path


def instructions(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if text.startswith("---\n"):
        _, _, rest = text[4:].partition("\n---\n")
        text = rest
    return text.strip()
