"""`up` keeps every service's JSON lines per service; `breakglass logs`
follows one turn across them."""

from __future__ import annotations

import io
import json
import subprocess

from breakglass import logfiles
from breakglass.supervisor import Printer
from tests.cli.proc import clean_env, command


def line(service: str, ts: str, msg: str, **ids: str) -> str:
    return json.dumps({"ts": ts, "level": "info", "service": service, "logger": service, "msg": msg, **ids})


def test_service_lines_are_kept_as_json_and_shown_to_people(tmp_path):
    out = io.StringIO()
    printer = Printer(out, out, files=logfiles.LogFiles(tmp_path))
    printer.line("gateway", line("gateway", "2026-11-24T10:00:00.000Z", "turn queued", turn_id="t1"))
    printer.line("nats", "[42] 2026/11/24 10:00:00.000 [WRN] slow consumer")
    shown = out.getvalue().splitlines()
    assert shown[0].startswith("gateway      | 10:00:00.000 INFO") and "turn queued  turn_id=t1" in shown[0]
    assert shown[1] == "nats         | [42] 2026/11/24 10:00:00.000 [WRN] slow consumer"
    kept = [json.loads(x) for x in (tmp_path / "logs" / "nats.jsonl").read_text().splitlines()]
    assert kept[0]["level"] == "warning" and kept[0]["service"] == "nats" and "slow consumer" in kept[0]["msg"]
    assert json.loads((tmp_path / "logs" / "gateway.jsonl").read_text())["turn_id"] == "t1"


def test_json_mode_makes_every_line_json_up_s_own_included(tmp_path):
    out = io.StringIO()
    printer = Printer(out, out, json_lines=True)
    printer.say("breakglass is up: http://127.0.0.1:8080")
    printer.line("agent-runner", line("agent-runner", "2026-11-24T10:00:00.000Z", "turn ended: ok", turn_id="t1"))
    printer.line("nats", "plain text")
    parsed = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [p["service"] for p in parsed] == ["breakglass", "agent-runner", "nats"]
    assert parsed[0]["msg"] == "breakglass is up: http://127.0.0.1:8080"


def test_a_full_log_file_is_rotated_not_grown(tmp_path, monkeypatch):
    monkeypatch.setattr(logfiles, "MAX_BYTES", 200)
    files = logfiles.LogFiles(tmp_path)
    for n in range(10):
        files.write("gateway", json.dumps({"n": n, "pad": "x" * 50}))
    current = tmp_path / "logs" / "gateway.jsonl"
    assert current.with_name("gateway.jsonl.1").exists()
    assert current.stat().st_size <= 200 + 100
    assert logfiles.files(tmp_path)[0].name == "gateway.jsonl.1"


def run_logs(*args: str, data_dir=None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = clean_env(**({"BREAKGLASS_DATA_DIR": str(data_dir)} if data_dir else {}))
    return subprocess.run([*command(), "logs", *args], env=env, input=stdin, capture_output=True, text=True, timeout=30)


def test_logs_merges_one_turn_from_every_service_in_time_order(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gateway.jsonl").write_text("\n".join([
        line("gateway", "2026-11-24T10:00:00.100Z", "turn queued", turn_id="t1", request_id="r1"),
        line("gateway", "2026-11-24T10:00:00.200Z", "turn queued", turn_id="t2"),
    ]) + "\n")
    (logs / "agent-runner.jsonl").write_text("\n".join([
        "not json at all",
        line("agent-runner", "2026-11-24T10:00:03.000Z", "turn ended: ok", turn_id="t1"),
        line("agent-runner", "2026-11-24T10:00:00.500Z", "CLI started", turn_id="t1"),
    ]) + "\n")
    (logs / "pve-executor.jsonl").write_text(
        line("pve-executor", "2026-11-24T10:00:01.000Z", "verb status exited 0", turn_id="t1", verb="status") + "\n")

    shown = run_logs("--turn", "t1", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    rows = shown.stdout.splitlines()
    assert [r.split()[0] for r in rows] == ["gateway", "agent-runner", "pve-executor", "agent-runner"]
    assert "CLI started" in rows[1] and "verb=status" in rows[2] and "turn ended: ok" in rows[3]

    as_json = run_logs("--turn", "t1", "--json", str(logs / "pve-executor.jsonl"))
    assert json.loads(as_json.stdout)["verb"] == "status"
    from_stdin = run_logs("--request", "r1", "-", stdin=(logs / "gateway.jsonl").read_text())
    assert from_stdin.stdout.count("\n") == 1 and "turn queued" in from_stdin.stdout


def test_logs_says_so_when_nothing_matches_or_nothing_is_there(tmp_path):
    none = run_logs("--turn", "nope", data_dir=tmp_path)
    assert none.returncode == 1 and "no log files" in none.stderr and "Traceback" not in none.stderr
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "gateway.jsonl").write_text(line("gateway", "2026-11-24T10:00:00Z", "x", turn_id="t") + "\n")
    missing = run_logs("--turn", "nope", data_dir=tmp_path)
    assert missing.returncode == 1 and "no matching log lines" in missing.stderr
