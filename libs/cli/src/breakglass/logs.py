"""`breakglass logs`: one turn (or session, or request) across every service.

Reads the JSON log lines `up` keeps per service (breakglass.logfiles), or
any files or stdin given (e.g. `docker compose logs --no-log-prefix`), keeps
the lines that carry the asked-for ids (eventbus.trace) and shows them merged
in time order, so "what happened to that turn" is one command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from eventbus import logfmt
from events.config import ConfigError, Env

from . import logfiles


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "logs", help="log lines of one turn, session or request, from every service",
        description="Merge the services' JSON log lines in time order, keeping those with the given ids. "
        "Reads the files `breakglass up` writes under <data dir>/logs unless FILEs are given ('-' = stdin).",
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--turn", help="a turn id")
    p.add_argument("--session", help="a session id")
    p.add_argument("--request", help="a request id (the gateway's X-Request-Id)")
    p.add_argument("--json", action="store_true", help="print the matching lines as JSON")
    p.set_defaults(func=logs_cmd)


def logs_cmd(args: argparse.Namespace) -> int:
    wanted = {k: v for k, v in (("turn_id", args.turn), ("session_id", args.session), ("request_id", args.request)) if v}
    try:
        sources = [Path(f) for f in args.files] or logfiles.files(_data_dir())
    except ConfigError as exc:
        print(f"breakglass: {exc}", file=sys.stderr)
        return 2
    if not sources:
        print("breakglass: no log files (is this where `breakglass up` runs? give FILEs otherwise)", file=sys.stderr)
        return 1
    try:
        entries = sorted(matching(_lines(sources), wanted), key=lambda e: str(e.get("ts", "")))
    except OSError as exc:
        print(f"breakglass: {exc}", file=sys.stderr)
        return 1
    for entry in entries:
        print(json.dumps(entry, ensure_ascii=False) if args.json else logfmt.render(entry, service=True))
    if not entries:
        print("breakglass: no matching log lines", file=sys.stderr)
        return 1
    return 0


def matching(lines: Iterable[str], wanted: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The JSON lines whose fields equal every `wanted` one; other lines are skipped."""
    for text in lines:
        entry = logfmt.parse(text.strip())
        if entry is not None and all(entry.get(k) == v for k, v in wanted.items()):
            yield entry


def _lines(sources: list[Path]) -> Iterator[str]:
    for source in sources:
        if str(source) == "-":
            yield from sys.stdin
            continue
        with open(source, encoding="utf-8", errors="replace") as f:
            yield from f


def _data_dir() -> Path:
    return Path(Env().str("DATA_DIR", ".breakglass") or ".breakglass")
