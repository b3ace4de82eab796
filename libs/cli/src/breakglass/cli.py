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

from . import audit, doctor, init, logs
from .settings import SERVICES, ConfigError, service_env


def _up(args: argparse.Namespace) -> int:
    from .up import up  # imported late: the service sub-commands need none of it

    return up()


def _service(args: argparse.Namespace) -> int:
    """Become the service (exec), so signals and the exit code are its own;
    this is what a container or a cluster's process manager runs."""
    name: str = args.command
    argv = [sys.executable, "-m", SERVICES[name]]
    from events.config import ConfigError, layered_environ

    try:
        environ = layered_environ()
    except ConfigError as exc:
        print(f"breakglass: {exc}", file=sys.stderr)
        return 2
    env = service_env(name, environ, environ.get("BREAKGLASS_NATS_URL", ""))
    if not env["BREAKGLASS_NATS_URL"]:
        del env["BREAKGLASS_NATS_URL"]  # let the service say, in its own words, that it is required
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 127  # not reached


def _setup(args: argparse.Namespace) -> int:
    """Create or update the JetStream topology on BREAKGLASS_NATS_URL: what
    `up` does before it starts the services. On a server with per-service
    users (eventbus.access) only the admin user may; compose runs this once."""
    from eventbus.bus import redact
    from events.config import ConfigError, Env, nats_url
    from eventbus.topology import Topology

    from .up import StartError, ensure_topology

    try:
        env = Env()
        url = nats_url(env, "breakglass setup")
        topology = Topology.from_env(env)
    except ConfigError as exc:
        print(f"breakglass: {exc}", file=sys.stderr)
        return 2
    try:
        ensure_topology(url, topology)
    except StartError as exc:
        print(f"breakglass: {exc}", file=sys.stderr)
        return 1
    print(f"breakglass: the JetStream topology is ready on {redact(url)}")
    return 0


def _add_setup(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "setup",
        help="create or update the JetStream streams and consumers on BREAKGLASS_NATS_URL (as the admin user)",
        description="Create or update the streams, the KV bucket and the durable consumers, then exit.",
    )
    p.set_defaults(func=_setup)


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
    init.add_parser(sub)
    doctor.add_parser(sub)
    _add_up(sub)
    _add_setup(sub)
    _add_services(sub)
    audit.add_parsers(sub)
    logs.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:  # e.g. a malformed settings file, read by whichever tool ran first
        print(f"breakglass: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
