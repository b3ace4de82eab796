"""The runner's identity across restarts (agent_runner.identity): stable on
one data directory, exclusive while a process holds it, free again the
moment that process dies, even by SIGKILL."""

from __future__ import annotations

import subprocess
import sys

from agent_runner.identity import ID_FILE, acquire

HOLD = "import sys, time; from agent_runner.identity import acquire; " \
       "me = acquire(__import__('pathlib').Path(sys.argv[1])); print(me.owner, flush=True); time.sleep(60)"


def test_the_runner_id_is_kept_across_restarts_and_the_incarnation_is_new(tmp_path):
    first = acquire(tmp_path)
    first.release()
    second = acquire(tmp_path)
    second.release()
    assert first.exclusive and second.exclusive
    assert first.runner_id == second.runner_id
    assert first.owner != second.owner and second.owner.startswith(second.predecessors)
    assert (tmp_path / ID_FILE).read_text().strip() == first.runner_id


def test_a_second_live_runner_on_the_same_data_dir_gets_an_id_of_its_own(tmp_path):
    first = acquire(tmp_path)
    try:
        second = acquire(tmp_path)
        assert not second.exclusive
        assert second.runner_id != first.runner_id
        assert not second.owner.startswith(first.predecessors)
    finally:
        first.release()


def test_a_killed_runner_lets_its_id_go_at_once(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        dead_owner = holder.stdout.readline().strip()  # type: ignore[union-attr]
        assert not acquire(tmp_path).exclusive  # held while it lives
        holder.kill()
        holder.wait(10)
        me = acquire(tmp_path)
        assert me.exclusive
        assert dead_owner.startswith(me.predecessors) and dead_owner != me.owner
        me.release()
    finally:
        holder.kill()
        holder.wait(10)
