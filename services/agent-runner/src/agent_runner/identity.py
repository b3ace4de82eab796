"""Who this runner is, across restarts.

A turn lock names the runner that owns it (`<runner id>/<incarnation>`).
The runner id is kept in the data directory, so a runner restarted by `up`
or by its container keeps it; the incarnation is new with every process.
The file is held with an exclusive `flock` for the life of the process,
and the kernel drops that lock the moment the process dies (kill -9
included): a runner that holds it knows that every lock naming its runner
id and another incarnation belongs to a dead predecessor, and ends those
turns at once instead of waiting out their lease.

Two runners sharing one data directory cannot both hold the file: the
second gets a fresh id of its own (and so never ends the first one's
turns), and says so.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("agent-runner.identity")

ID_FILE = "runner-id"


@dataclass(frozen=True)
class Identity:
    #: Stable across restarts on this data directory (when `exclusive`).
    runner_id: str
    #: This process: what turn locks name as their owner.
    owner: str
    #: The held id file (None: `runner_id` is this process's alone).
    fd: int | None = None

    @property
    def exclusive(self) -> bool:
        """True when this process holds the id file, i.e. proves every other
        incarnation of `runner_id` dead."""
        return self.fd is not None

    def release(self) -> None:
        """Let the id file go (a clean stop; death lets it go too)."""
        if self.fd is not None:
            os.close(self.fd)

    @property
    def predecessors(self) -> str:
        """The owner prefix of every incarnation of this runner id."""
        return f"{self.runner_id}/"


def acquire(data_dir: Path) -> Identity:
    """This process's identity, holding the id file's lock until `release`
    or the process's end."""
    incarnation = uuid.uuid4().hex[:6]
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / ID_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        logger.warning("cannot keep a runner id in %s (%s); a restart will wait out its turns' lease", data_dir, exc)
        return _fresh(incarnation)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        logger.warning("another agent-runner uses %s; this one takes an id of its own", data_dir)
        return _fresh(incarnation)
    runner_id = os.read(fd, 200).decode(errors="replace").strip()
    if not runner_id or "/" in runner_id:
        runner_id = _new_id()
        os.ftruncate(fd, 0)
        os.pwrite(fd, runner_id.encode() + b"\n", 0)
        os.fsync(fd)
    return Identity(runner_id=runner_id, owner=f"{runner_id}/{incarnation}", fd=fd)


def _new_id() -> str:
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"


def _fresh(incarnation: str) -> Identity:
    runner_id = _new_id()
    return Identity(runner_id=runner_id, owner=f"{runner_id}/{incarnation}")
