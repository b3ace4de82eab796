"""The SSH adapter: one connection, one bare verb, bytes back.

Threat model. The key this module holds can do six things on the Proxmox
host, and only through the forced command there; the host key is what stops
it being handed to anyone else. So:

- The host key is pinned: the known_hosts file is required, and an unknown or
  changed key ends the attempt before authentication (nothing is sent). It is
  never accepted unseen, never learned, never updated. (asyncssh, unlike
  OpenSSH, also accepts a port-less `host KEY` entry for a non-22 port when
  no `[host]:port` entry exists: the key must still match.)
- Only the configured key (or, when none is configured, the keys of the
  ssh-agent at SSH_AUTH_SOCK) is offered: no ~/.ssh/config, no default
  identity files, no password or keyboard-interactive, no GSSAPI, no agent
  forwarding, no pty, no environment.
- The command is the bare verb and nothing else; the forced command on the
  host reads it from SSH_ORIGINAL_COMMAND and checks it again.
- What comes back is untrusted bytes (see `output`): capped while read,
  decoded leniently, cut marked.

Every failure becomes a `Completed` with an exit code and a sentence, never
an exception: 124 for a time-out, 255 for SSH-level failures (as ssh(1)),
78 for a local configuration problem. `started` tells whether the command
reached the host at all, i.e. whether the host may have acted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncssh

from .output import Capped

logger = logging.getLogger("pve-executor.ssh")

EX_TIMEOUT = 124
EX_SSH = 255
EX_CONFIG = 78

READ_CHUNK = 64 * 1024

BeforeSend = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    known_hosts: str
    key_file: str | None = None
    agent_socket: str | None = None
    connect_timeout: float = 10.0

    @property
    def address(self) -> str:
        return self.host if self.port == 22 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Completed:
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    #: The command reached the host (it may have acted, even on a time-out).
    started: bool = False


class Refused(Exception):
    """A failure before the command was sent, with its exit code."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


class SshRunner:
    """Runs one command per connection on the pinned host."""

    def __init__(self, target: Target, output_cap: int) -> None:
        self.target = target
        self.output_cap = output_cap

    async def run(self, command: str, timeout: float, before_send: BeforeSend | None = None) -> Completed:
        """Connect, authenticate, await `before_send` (if it raises, nothing
        is sent and the exception propagates), then run `command`."""
        try:
            known_hosts = self._known_hosts()
            async with contextlib.AsyncExitStack() as stack:
                keys = await self._client_keys(stack)
                conn = await self._connect(known_hosts, keys)
        except Refused as exc:
            return Completed(exit_code=exc.exit_code, stderr=exc.message)
        try:
            if before_send is not None:
                await before_send()
        except BaseException:
            conn.abort()
            raise
        return await self._run(conn, command, timeout)

    def _known_hosts(self) -> asyncssh.SSHKnownHosts:
        path = self.target.known_hosts
        try:
            return asyncssh.read_known_hosts(path)
        except Exception as exc:  # missing, unreadable or malformed: same answer, fail closed
            raise Refused(EX_CONFIG, f"BREAKGLASS_PVE_KNOWN_HOSTS={path} cannot be read: {_reason(exc)}") from None

    async def _client_keys(self, stack: contextlib.AsyncExitStack) -> Sequence[asyncssh.SSHKeyPair]:
        t = self.target
        if t.key_file:
            try:
                return asyncssh.load_keypairs([t.key_file])
            except (OSError, asyncssh.KeyImportError, ValueError) as exc:
                why = f"BREAKGLASS_PVE_KEY_FILE={t.key_file} cannot be used: {_reason(exc)}"
                raise Refused(EX_CONFIG, why) from None
        if not t.agent_socket:
            raise Refused(EX_CONFIG, "no client key: set BREAKGLASS_PVE_KEY_FILE or run with an ssh-agent")
        # The agent's keys are fetched here and passed as client keys, so
        # asyncssh never falls back to ~/.ssh/id_* as it would with no keys.
        try:
            agent = await stack.enter_async_context(asyncssh.connect_agent(t.agent_socket))
            keys = await agent.get_keys()
        except (OSError, asyncssh.Error) as exc:
            raise Refused(EX_CONFIG, f"the ssh-agent at {t.agent_socket} cannot be used: {_reason(exc)}") from None
        if not keys:
            raise Refused(EX_CONFIG, f"the ssh-agent at {t.agent_socket} holds no keys")
        return keys

    async def _connect(self, known_hosts: asyncssh.SSHKnownHosts,
                       keys: Sequence[asyncssh.SSHKeyPair]) -> asyncssh.SSHClientConnection:
        t = self.target
        try:
            async with asyncio.timeout(t.connect_timeout):
                return await asyncssh.connect(
                    t.host, t.port, username=t.user, known_hosts=known_hosts,
                    client_keys=keys, agent_path=None, config=None, password=None,
                    preferred_auth="publickey", kbdint_auth=False, password_auth=False,
                    gss_auth=False, gss_kex=False, agent_forwarding=False, x509_trusted_certs=None,
                )
        except TimeoutError:
            why = f"could not connect to {t.address}: timed out after {t.connect_timeout:g} s"
            raise Refused(EX_TIMEOUT, why) from None
        except asyncssh.HostKeyNotVerifiable as exc:
            logger.error("host key of %s rejected: %s", t.address, exc.reason)
            raise Refused(EX_SSH, (
                f"host key verification failed for {t.host}: the Proxmox host key does not match "
                f"BREAKGLASS_PVE_KNOWN_HOSTS ({t.known_hosts}); nothing was run"
            )) from None
        except asyncssh.PermissionDenied:
            raise Refused(EX_SSH, (
                f"the Proxmox host {t.address} refused the key for {t.user}: is its public key in that "
                "account's authorized_keys, with the breakglass forced command?"
            )) from None
        except asyncssh.Error as exc:
            raise Refused(EX_SSH, f"ssh to {t.address} failed: {_reason(exc)}") from None
        except OSError as exc:
            raise Refused(EX_SSH, f"could not connect to {t.address}: {_reason(exc)}") from None

    async def _run(self, conn: asyncssh.SSHClientConnection, command: str, timeout: float) -> Completed:
        out, err = Capped(self.output_cap), Capped(self.output_cap)
        try:
            async with asyncio.timeout(timeout):
                process = await conn.create_process(command, encoding=None, term_type=None)
                process.stdin.write_eof()
                await asyncio.gather(_drain(process.stdout, out), _drain(process.stderr, err))
                done = await process.wait()
        except TimeoutError:
            conn.abort()
            note = (f"pve-executor: timed out after {timeout:g} s "
                    "(the verb may still be running on the host; check with `status`)")
            return Completed(EX_TIMEOUT, out.text(), _note(err.text(), note), started=True)
        except (asyncssh.Error, OSError) as exc:
            conn.abort()
            note = f"pve-executor: the connection to {self.target.address} broke while the verb ran: {_reason(exc)}"
            return Completed(EX_SSH, out.text(), _note(err.text(), note), started=True)
        except BaseException:  # cancelled (the service stops) or a bug: never leave the connection open
            conn.abort()
            raise
        conn.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await conn.wait_closed()
        code, note = _exit_code(done.exit_status, done.exit_signal)
        return Completed(code, out.text(), _note(err.text(), note) if note else err.text(), started=True)


async def _drain(stream: asyncssh.SSHReader[bytes], into: Capped) -> None:
    while chunk := await stream.read(READ_CHUNK):
        into.feed(chunk)


def _exit_code(status: int | None, exit_signal: tuple | None) -> tuple[int, str | None]:
    """The remote exit code; a signal or a missing status is never success."""
    if status is not None and status >= 0:
        return status, None
    if exit_signal:
        name = str(exit_signal[0])
        try:
            number = signal.Signals[f"SIG{name}"].value
        except KeyError:
            return EX_SSH, f"pve-executor: the command on the host was killed by signal {name}"
        return 128 + number, f"pve-executor: the command on the host was killed by signal SIG{name}"
    return EX_SSH, "pve-executor: the host closed the session without an exit status"


def _note(text: str, note: str) -> str:
    if not text:
        return note
    return text + ("" if text.endswith("\n") else "\n") + note


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return str(reason) or type(exc).__name__
