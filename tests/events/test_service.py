"""A service asked to stop while NATS is unreachable stops (no hang)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from breakglass.natsd import free_port


@pytest.mark.parametrize("module", ["agent_runner", "pve_executor"])
def test_sigterm_while_waiting_for_nats_stops_the_service(module, tmp_path):
    env = {"PATH": os.environ["PATH"], "BREAKGLASS_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "BREAKGLASS_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", module], env={**env, "BREAKGLASS_LOG_FORMAT": "json"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Waiting for NATS, not still importing: a failed connection attempt
        # is logged from the event loop, after the signal handlers are in.
        deadline = time.monotonic() + 60
        while "nats error" not in (line := proc.stderr.readline()):
            assert line and time.monotonic() < deadline, "the service never tried to reach NATS"
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
