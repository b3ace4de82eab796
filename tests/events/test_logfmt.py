"""Log lines: JSON for machines (with the bound ids), short lines for people."""

from __future__ import annotations

import io
import json
import logging

import pytest

from eventbus import logfmt, trace
from events.config import ConfigError
from eventbus.service import setup_logging


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def capture(setting: str, tty: bool = False) -> io.StringIO:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    stream = Stream()
    logfmt.install("gateway", "info", setting, stream)
    return stream


def test_json_lines_carry_level_service_message_and_bound_ids(restore_root):
    out = capture("json")
    with trace.bound(turn_id="t1", session_id="s1", by="operator"):
        logging.getLogger("gateway.sessions").info("turn queued (%d characters)", 12)
    logging.getLogger("gateway").debug("below the level")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["level"] == "info" and line["service"] == "gateway" and line["logger"] == "gateway.sessions"
    assert line["msg"] == "turn queued (12 characters)"
    assert (line["turn_id"], line["session_id"], line["by"]) == ("t1", "s1", "operator")
    assert line["ts"].endswith("Z")


def test_an_exception_stays_inside_its_one_json_line(restore_root):
    out = capture("json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (text,) = out.getvalue().splitlines()
    line = json.loads(text)
    assert line["level"] == "error" and "ValueError: boom" in line["exc"]


def test_auto_is_console_on_a_terminal_and_json_elsewhere(restore_root):
    out = capture("auto", tty=True)
    with trace.bound(turn_id="t9"):
        logging.getLogger("agent-runner").warning("lease lapsed")
    text = out.getvalue().strip()
    assert logfmt.parse(text) is None
    assert "WARNING" in text and "agent-runner: lease lapsed" in text and "turn_id=t9" in text
    out = capture("auto", tty=False)
    logging.getLogger("agent-runner").warning("lease lapsed")
    assert logfmt.parse(out.getvalue().strip())["msg"] == "lease lapsed"


@pytest.mark.parametrize("name, value", [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "loud")])
def test_a_bad_logging_setting_names_the_variable(name, value, restore_root):
    with pytest.raises(ConfigError, match=f"BREAKGLASS_{name}"):
        setup_logging("gateway", {f"BREAKGLASS_{name}": value})


def test_parse_takes_only_json_objects():
    assert logfmt.parse('{"msg": "x"}') == {"msg": "x"}
    for text in ("[1] 2026/11/24 [INF] Server is ready", "{broken", "[1, 2]", ""):
        assert logfmt.parse(text) is None
