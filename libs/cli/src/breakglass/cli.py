"""The `breakglass` command. It starts services as processes by module name
and never imports them, so the services stay independent of each other.

Each sub-command is one `_add_*` function below; the operator/auditor tools
(sessions, replay, tail, verify) join the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import audit
from .settings import SERVICES, service_env


def _up(args: argparse.Namespace) -> int:
    from .up import up  # imported late: the service sub-commands need none of it

    return up()


def _service(args: argparse.Namespace) -> int:
    """Become the service (exec), so signals and the exit code are its own;
    this is what a container or a cluster's process manager runs."""
    name: str = args.command
    argv = [sys.executable, "-m", SERVICES[name]]
    env = service_env(name, os.environ, os.environ.get("BREAKGLASS_NATS_URL", ""))
    if not env["BREAKGLASS_NATS_URL"]:
        del env["BREAKGLASS_NATS_URL"]  # let the service say, in its own words, that it is required
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 127  # not reached


def _add_up(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "up",
        help="run everything on this machine: NATS (embedded unless BREAKGLASS_NATS_URL is set) and all services",
        description="Start NATS and the three services, restart any that die, and stop them all on Ctrl-C.",
    )
    p.set_defaults(func=_up)


def _add_services(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name in SERVICES:
        p = sub.add_parser(name, help=f"run only the {name} against BREAKGLASS_NATS_URL")
        p.set_defaults(func=_service)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="breakglass", description="Break-glass recovery console for the devvm.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_up(sub)
    _add_services(sub)
    audit.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
