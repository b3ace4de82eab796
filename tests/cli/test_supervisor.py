"""Restart policy and shutdown order, with real (tiny) child processes."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from breakglass import supervisor
from breakglass.supervisor import Child, Printer, Supervisor, describe_exit


def python(code: str):  # type: ignore[no-untyped-def]
    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )

    return spawn


def supervise(sup: Supervisor, until: Callable[[], bool], timeout: float = 20.0) -> int:
    """Run `sup` in a thread until `until()` holds, then stop it."""
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(sup.run()))
    runner.start()
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        time.sleep(0.05)
    sup.stopping.set()
    runner.join(15)
    return result[0]


DELAY = re.compile(r"crashy exited with code 3 after [\d.]+ s; restarting in ([\d.]+) s")


def test_a_dying_child_is_restarted_with_doubling_capped_delays(monkeypatch):
    monkeypatch.setattr(supervisor, "BACKOFF_FIRST", 0.05)
    monkeypatch.setattr(supervisor, "BACKOFF_CAP", 0.2)
    out = io.StringIO()
    printer = Printer(out, out)
    sup = Supervisor(printer, grace=1)
    sup.add(Child("crashy", python("print('hello'); raise SystemExit(3)"), printer)).start()
    assert supervise(sup, lambda: len(DELAY.findall(out.getvalue())) >= 4) == 0
    text = out.getvalue()
    assert [float(d) for d in DELAY.findall(text)][:4] == [0.05, 0.1, 0.2, 0.2]
    assert f"{'crashy':<12} | hello" in text  # output is prefixed with the child's name


def test_a_child_that_rejects_its_settings_stops_everything_with_exit_2():
    out = io.StringIO()
    printer = Printer(out, out)
    sup = Supervisor(printer, grace=1)
    sleeper = sup.add(Child("sleeper", python("import time; time.sleep(60)"), printer))
    sleeper.start()
    sup.add(Child("picky", python("raise SystemExit(2)"), printer)).start()
    started = time.monotonic()
    assert sup.run() == 2
    assert time.monotonic() - started < 5
    assert not sleeper.running
    assert "picky rejected its settings" in out.getvalue()
    assert "restarting" not in out.getvalue()


def wait_for_text(out: io.StringIO, text: str) -> None:
    deadline = time.monotonic() + 20
    while text not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period_and_the_server_stops_last():
    out = io.StringIO()
    printer = Printer(out, out)
    sup = Supervisor(printer, grace=0.5)
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('deaf', flush=True); time.sleep(60)"
    )
    server = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (print('term', flush=True), sys.exit(0)));"
        "print('listening', flush=True); time.sleep(60)"
    )
    sup.add(Child("server", python(server), printer, last=True)).start()
    service = sup.add(Child("stubborn", python(stubborn), printer))
    service.start()
    wait_for_text(out, "deaf")
    wait_for_text(out, "listening")
    started = time.monotonic()
    sup.shutdown()
    assert 0.4 < time.monotonic() - started < 5
    assert service.proc.returncode == -9
    text = out.getvalue()
    assert text.index("stubborn did not stop within 0.5 s; killing it") < text.index("server       | term")


@pytest.mark.parametrize(
    ("code", "text"), [(3, "exited with code 3"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")]
)
def test_describe_exit(code, text):
    assert describe_exit(code) == text
