"""The box the Claude CLI and everything it starts run in (SPEC §5).

The agent is the untrusted part of breakglass: it reads the VM's files and
logs, so whoever can plant text on the VM steers its Bash and Read tools.
Everything the agent runs therefore lives in a bubblewrap sandbox:

- its own PID namespace and `/proc`: no other process of the machine (the
  services, their environments and command lines) is visible;
- its own mount namespace, built from the machine's root mounted read-only,
  in which the data directory, the checkout, the runner's HOME, `/home`,
  `/root`, `/tmp` and `/run` (secrets, sockets) are covered by empty
  tmpfs; only the CLI's code, the Python the verb tool's MCP server runs
  on, the session's own workspace (HOME, working and temp directories
  writable, the rest read-only) and the verb socket are put back. The devvm key, when configured, is the one secret
  inside: a read-only copy made from a descriptor, at its configured path;
- a uid of its own: as root, the runner drops to the dedicated unprivileged
  account `breakglass-agent` (created if missing) inside the box, after the
  mounts are made, with no capabilities and `no_new_privs`; as an
  unprivileged operator, the box is a user namespace of the operator's uid
  (the tmpfs covers are then what keeps the operator's files away).

Why start from `/` read-only and cover what must not be seen, rather than
build a root from nothing: a minimal root made the CLI ten times slower to
start (ANCHORS.md), and the system's files are not secrets.

Where no box can be made (no `bwrap`, user namespaces forbidden), turns are
refused with one line saying why, unless the operator sets
BREAKGLASS_ALLOW_UNSANDBOXED_AGENT=1 (logged loudly, shown by `/ready`).

This module only builds argv and checks the box works; the runner decides
when to use it (`turns`), and the CLI process code stays the same.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

AGENT_USER = "breakglass-agent"
#: Paths never covered, whatever a setting says: covering them breaks the box.
_SYSTEM = frozenset(map(Path, ("/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/opt", "/var", "/proc", "/dev")))


class Unavailable(RuntimeError):
    """No sandbox can be made here; the message says why in one line."""


@dataclass(frozen=True)
class Mounts:
    """What the box shows of one turn's session."""

    #: The session's directory: visible read-only (verb socket, MCP config, settings).
    root: Path
    #: Writable inside: the CLI's HOME, working and temp directories.
    writable: tuple[Path, ...]
    #: Secret files put in by descriptor, read-only, at these paths (path -> fd).
    files: dict[Path, int] = field(default_factory=dict)
    #: Extra paths outside `root` the turn needs (a verb socket in a private temp dir).
    extra: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Sandbox:
    bwrap: str
    #: Covered by empty tmpfs (the checkout, the runner's HOME, /tmp, ...).
    hide: tuple[Path, ...]
    #: Put back read-only after covering (the CLI's code, the Python of the MCP server).
    readable: tuple[Path, ...]
    #: Covered again after `readable`, so nothing put back reveals it.
    data_dir: Path
    #: (uid, gid) the box runs as when the runner is root; None = a user namespace of the runner's uid.
    agent: tuple[int, int] | None = None

    def argv(self, command: Sequence[str], mounts: Mounts, cwd: Path) -> list[str]:
        b = _Builder()
        b.add("--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")
        if self.agent is None:
            b.add("--unshare-user")
        b.add("--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev")
        for path in self.hide:
            b.cover(path)
        for path in self.readable:
            b.bind("--ro-bind", path)
        b.cover(self.data_dir)
        b.bind("--ro-bind", mounts.root)
        for path in mounts.writable:
            b.bind("--bind", path)
        for path in mounts.extra:
            b.bind("--ro-bind", path)
        perms = "0444" if self.agent else "0400"  # root's copy: readable by the agent uid, the only one inside
        for path, fd in mounts.files.items():
            b.parents(path)
            b.add("--perms", perms, "--ro-bind-data", str(fd), str(path))
        b.add("--chdir", str(cwd), "--")
        if self.agent is not None:
            uid, gid = self.agent
            b.add(
                "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs",
                "--inh-caps=-all", "--bounding-set=-all", "--",
            )
        return [self.bwrap, *b.args, *command]

    def hand_over(self, *paths: Path) -> None:
        """Make the turn's writable paths the agent uid's (root mode only):
        everything below them, every turn (the runner created some of it)."""
        if self.agent is None:
            return
        uid, gid = self.agent
        for top in paths:
            if not top.exists():
                continue
            os.chown(top, uid, gid, follow_symlinks=False)
            if top.is_dir() and not top.is_symlink():
                for dirpath, dirnames, filenames in os.walk(top):
                    for name in dirnames + filenames:
                        os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


class _Builder:
    """bwrap arguments, tracking what is covered so that every directory bwrap
    must create inside a cover is made 0755 (bwrap makes them 0700, which the
    agent uid could not enter when bwrap runs as root)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self._covers: list[Path] = []

    def add(self, *args: str) -> None:
        self.args.extend(args)

    def parents(self, path: Path) -> None:
        covers = [c for c in self._covers if c == path or c in path.parents]
        if not covers:
            return
        top = max(covers, key=lambda c: len(c.parts))
        for parent in reversed(path.parents):
            if top in parent.parents:
                self.add("--perms", "0755", "--dir", str(parent))

    def cover(self, path: Path) -> None:
        self.parents(path)
        self.add("--perms", "0755", "--tmpfs", str(path))
        self._covers.append(path)

    def bind(self, how: str, path: Path) -> None:
        self.parents(path)
        self.add(how, str(path), str(path))


def _existing(paths: Iterable[Path | None]) -> tuple[Path, ...]:
    out: list[Path] = []
    for path in paths:
        if path is None:
            continue
        resolved = Path(os.path.realpath(path))
        if resolved.exists() and resolved not in _SYSTEM and resolved not in out:
            out.append(resolved)
    return tuple(out)


def cli_code(claude_bin: str) -> tuple[Path, ...]:
    """Where the CLI's code lives: the npm project holding `node_modules`, or
    the directory of the binary (a single-file build, a test's stand-in)."""
    found = shutil.which(claude_bin) or claude_bin
    out: list[Path] = []
    for path in (Path(os.path.abspath(found)), Path(os.path.realpath(found))):
        parts = path.parts
        if "node_modules" in parts:
            out.append(Path(*parts[: parts.index("node_modules")]))
        else:
            out.append(path.parent)
    return tuple(out)


def python_code() -> tuple[Path, ...]:
    """What the verb tool's MCP server (`python -m agent_runner.mcp_server`)
    needs: this interpreter's environment and the source directories of the
    two packages it imports (editable installs point into the checkout)."""
    import events
    import msgspec

    from . import mcp_server

    return (
        Path(sys.prefix), Path(sys.base_prefix),
        Path(mcp_server.__file__).resolve().parents[1], Path(events.__file__).resolve().parents[1],
        Path(msgspec.__file__).resolve().parents[1],
    )


def checkout() -> Path | None:
    """The source checkout this runner runs from, if it runs from one."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / ".git").exists() or (parent / "Makefile").is_file() and (parent / "services").is_dir():
            return parent
    return None


def agent_ids() -> tuple[int, int]:
    """The dedicated account's (uid, gid), created as a system user if missing."""
    try:
        entry = pwd.getpwnam(AGENT_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        try:
            done = subprocess.run(
                [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                 "/usr/sbin/nologin", "--user-group", AGENT_USER],
                capture_output=True, text=True, timeout=30,
            )
        except OSError as exc:
            raise Unavailable(f"cannot create the account {AGENT_USER} for the agent: {exc}") from None
        if done.returncode != 0 and "already exists" not in done.stderr:
            why = (done.stderr.strip().splitlines() or ["useradd failed"])[-1]
            raise Unavailable(f"cannot create the account {AGENT_USER} for the agent: {why}")
        entry = pwd.getpwnam(AGENT_USER)
    if entry.pw_uid == 0:
        raise Unavailable(f"the account {AGENT_USER} is uid 0; it must be an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def make(data_dir: Path, claude_bin: str, *, home: str | None = None, cwd: Path | None = None) -> Sandbox:
    """The sandbox for this machine, checked by running `true` in it; raises
    Unavailable with the reason when it cannot be made."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise Unavailable("bubblewrap (`bwrap`) is not installed; as root: apt-get install bubblewrap")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        raise Unavailable("`setpriv` (util-linux) is not installed")
    agent = agent_ids() if os.geteuid() == 0 else None
    # /run: compose's secrets, and the sockets of the machine (an operator's
    # ssh-agent and session bus, docker's); only the resolver's file comes back.
    hide = _existing([checkout(), cwd or Path.cwd(), Path(home) if home else None, Path("/tmp"), Path("/var/tmp"),
                      Path("/run"), Path("/root"), Path("/home")])
    readable = [*cli_code(claude_bin), *python_code(), Path("/run/systemd/resolve")]
    box = Sandbox(
        bwrap=bwrap, hide=hide, readable=_existing(readable),
        data_dir=Path(os.path.realpath(data_dir)), agent=agent,
    )
    probe(box)
    return box


def probe(box: Sandbox) -> None:
    """Run `true` in the box (empty session dirs in a throw-away place)."""
    scratch = box.data_dir / ".sandbox-probe"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        box.hand_over(scratch)
        mounts = Mounts(root=scratch, writable=(scratch,))
        try:
            done = subprocess.run(
                box.argv(["true"], mounts, scratch), capture_output=True, text=True, timeout=30,
                stdin=subprocess.DEVNULL, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"bubblewrap cannot run: {exc}") from None
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise Unavailable(f"bubblewrap cannot make the sandbox here: {why}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
