"""Fixtures that start the real `breakglass up` as a process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from breakglass.natsd import free_port
from tests.cli.proc import Up, clean_env, command

#: `up` runs where `make run` runs it: services find repo files (the agent
#: definition) relative to the working directory.
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ports() -> dict[str, str]:
    http, nats = free_port(), free_port()
    while nats == http:
        nats = free_port()
    runner, executor = free_port(), free_port()  # not up's fixed metrics ports: runs may overlap
    while len({http, nats, runner, executor}) < 4:
        runner, executor = free_port(), free_port()
    return {"BREAKGLASS_PORT": str(http), "BREAKGLASS_NATS_PORT": str(nats),
            "BREAKGLASS_RUNNER_METRICS_PORT": str(runner), "BREAKGLASS_EXECUTOR_METRICS_PORT": str(executor)}


@pytest.fixture
def start_up(tmp_path: Path, ports: dict[str, str]) -> Iterator[Callable[..., Up]]:
    """Start `breakglass up` with a private data dir and free ports; whatever
    it leaves behind is killed at teardown so one failure cannot cascade."""
    started: list[Up] = []

    def start(argv: list[str] | None = None, **env: str) -> Up:
        full = clean_env(BREAKGLASS_DATA_DIR=str(tmp_path / "data"), **ports)
        full.update(env)
        up = Up(argv or [*command(), "up"], full, REPO)
        started.append(up)
        return up

    yield start
    for up in started:
        up.kill_leftovers()
