"""`breakglass doctor`: every link the console needs, checked end to end.

One check per function, each returning a Verdict: one line saying what was
found and, when it is not fine, the one thing to do about it. A check looks
at the real thing (connects, logs in, asks), never just at a setting, so a
green doctor means a verb or a turn can actually run. `fail` is a link the
console needs; `warn` is one it can do without; `skip` could not be checked
because an earlier link is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec

from events import vms
from events.config import ConfigError, Env

Status = Literal["ok", "warn", "fail", "skip"]
#: Below this much free space the NATS store and CLI homes may stop writing.
MIN_FREE_BYTES = 512 * 1024 * 1024
MAX_SKEW_SECONDS = 30.0
PROBE = "breakglass-doctor-probe"
EX_REFUSED, EX_CONFIG = 64, 78


class Verdict(msgspec.Struct, frozen=True):
    check: str
    status: Status
    summary: str
    fix: str = ""


def ok(check: str, summary: str) -> Verdict:
    return Verdict(check, "ok", summary)


def fail(check: str, summary: str, fix: str) -> Verdict:
    return Verdict(check, "fail", summary, fix)


class Context:
    """Settings every check reads, plus what earlier checks learnt."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.data_dir = Path(env.str("DATA_DIR", ".breakglass") or ".breakglass").resolve()
        self.api_date: float | None = None
        self.api_checked_at: float | None = None
        self.pve_login_ok = False


# --- the bus ---------------------------------------------------------------


def check_nats(ctx: Context) -> Verdict:
    """NATS answers and holds the streams: both looked at with the user
    doctor has, which may see fewer than every stream."""
    from eventbus.bus import redact
    from eventbus.topology import Topology

    from .audit import _nats_url

    url = _nats_url()
    streams = Topology.from_env(ctx.env)
    try:
        missing, hidden = asyncio.run(
            asyncio.wait_for(_look_at_streams(url, (streams.events_stream, streams.commands_stream)), 20))
    except Exception as exc:
        return fail("nats", f"cannot reach NATS at {redact(url)} ({type(exc).__name__})",
                    "start the console: `breakglass up` (or fix BREAKGLASS_NATS_URL)")  # fmt: skip
    if missing:
        return fail("nats", f"NATS answers but the streams {', '.join(missing)} are missing", "run `breakglass setup`")
    if len(hidden) == 2:
        return fail("nats", f"NATS at {redact(url)} answers but shows this user no stream",
                    "run doctor next to `breakglass up` (it reads the reader password) or give BREAKGLASS_NATS_URL a user that may")  # fmt: skip
    seen = (
        "its streams"
        if not hidden
        else f"the stream {streams.events_stream} ({', '.join(hidden)} not visible to this user)"
    )
    return ok("nats", f"NATS at {redact(url)} with {seen}")


async def _look_at_streams(url: str, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Which of `names` are missing, and which this user may not look at:
    next to `up` doctor is the `reader` user, which may not look at all."""
    import nats
    from nats.js.errors import NotFoundError

    from eventbus import access
    from eventbus.bus import role_of, servers

    async def quiet(exc: Exception) -> None:
        pass

    role = role_of(url)
    prefix = {"inbox_prefix": access.inbox_prefix(role)} if role else {}
    nc = await nats.connect(servers(url), name="breakglass-doctor", connect_timeout=3, allow_reconnect=False,
                            error_cb=quiet, **prefix)  # fmt: skip
    try:
        js = nc.jetstream(timeout=3)
        missing, hidden = [], []
        for name in names:
            try:
                await js.stream_info(name)
            except NotFoundError:
                missing.append(name)
            except Exception:
                hidden.append(name)
        return missing, hidden
    finally:
        await nc.close()


# --- the agent's CLI and model ---------------------------------------------


def check_cli(ctx: Context) -> Verdict:
    binary = ctx.env.str("CLAUDE_BIN", "claude") or "claude"
    path = shutil.which(binary)
    if path is None:
        return fail("claude-cli", f"the Claude Code CLI {binary!r} is not found",
                    "install it (npm i -g @anthropic-ai/claude-code) or set BREAKGLASS_CLAUDE_BIN")  # fmt: skip
    try:
        res = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return fail("claude-cli", f"{path} --version did not answer: {exc}", "reinstall the CLI")
    if res.returncode != 0:
        return fail("claude-cli", f"{path} --version exited {res.returncode}", "reinstall the CLI")
    return ok("claude-cli", f"{path} {res.stdout.strip()}")


def check_model_api(ctx: Context) -> Verdict:
    """One tiny request with the credential the CLI will use."""
    base = (os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com").rstrip("/")
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if os.environ.get("ANTHROPIC_API_KEY"):
        headers["x-api-key"] = os.environ["ANTHROPIC_API_KEY"]
    elif os.environ.get("CLAUDE_CODE_OAUTH_TOKEN"):
        headers["authorization"] = "Bearer " + os.environ["CLAUDE_CODE_OAUTH_TOKEN"]
        headers["anthropic-beta"] = "oauth-2025-04-20"
    else:
        return fail("model-api", "no credential for the model API",
                    "export ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`)")  # fmt: skip
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "ok"}]})
    request = urllib.request.Request(base + "/v1/messages", data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            date, status = resp.headers.get("Date"), resp.status
    except urllib.error.HTTPError as exc:
        date, status = exc.headers.get("Date"), exc.code
        if status in (401, 403):
            return fail("model-api", f"{base} refused the credential (HTTP {status})",
                        "renew ANTHROPIC_API_KEY / CLAUDE_CODE_OAUTH_TOKEN")  # fmt: skip
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return fail("model-api", f"cannot reach {base} ({reason})",
                    "check the network/proxy to the API, or ANTHROPIC_BASE_URL")  # fmt: skip
    ctx.api_checked_at = time.time()
    if date:
        parsed = email.utils.parsedate_to_datetime(date)
        ctx.api_date = parsed.timestamp() if parsed else None
    if 200 <= status < 300:
        return ok("model-api", f"{base} accepted the credential (HTTP {status})")
    # 400/404/429/529 come after authentication: the link and the credential work.
    return ok("model-api", f"{base} answered HTTP {status} and did not refuse the credential")


def check_clock(ctx: Context) -> Verdict:
    if ctx.api_date is None or ctx.api_checked_at is None:
        return Verdict("clock", "skip", "no server time to compare with (the model API gave no Date)")
    skew = ctx.api_checked_at - ctx.api_date
    if abs(skew) > MAX_SKEW_SECONDS:
        return fail("clock", f"this clock is {skew:+.0f}s off the API's",
                    "enable time sync (timedatectl set-ntp true); tokens and audit times need it")  # fmt: skip
    return ok("clock", f"within {MAX_SKEW_SECONDS:.0f}s of the API's clock ({skew:+.1f}s)")


# --- SSH links --------------------------------------------------------------


def _ssh(env: Env, role: str, command: str, *, logged_in: bool = False, name: str = "",
         target: tuple[str, str, int] | None = None) -> subprocess.CompletedProcess[str] | Verdict:
    """Run `command` over ssh to `role`'s host (or `target`: user, host,
    port) with only its pinned key. Exit 255 is ssh's own failure unless an
    earlier call `logged_in` (then it is the remote command's, e.g. qm's)."""
    key = role.upper()
    name = name or f"{role}-ssh"
    host = target[1] if target else env.str(f"{key}_HOST")
    if not host:
        return fail(name, f"BREAKGLASS_{key}_HOST is not set", "run `breakglass init`")
    known, key_file = env.str(f"{key}_KNOWN_HOSTS"), env.str(f"{key}_KEY_FILE")
    if not known or not Path(known).is_file():
        return fail(name, f"the {role} host key is not pinned (BREAKGLASS_{key}_KNOWN_HOSTS)", "run `breakglass init`")
    if not key_file or not Path(key_file).is_file():
        return fail(name, f"no {role} client key (BREAKGLASS_{key}_KEY_FILE)", "run `breakglass init`")
    port = target[2] if target else env.int(f"{key}_PORT", 22, minimum=1, maximum=65535)
    user = target[0] if target else env.str(f"{key}_USER", "breakglass" if role == "pve" else "root") or "root"
    argv = [
        "ssh", "-F", "/dev/null", "-T", "-p", str(port), "-l", user, "-i", key_file,
        "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=10",
        "-o", "LogLevel=ERROR", host, "--", command,
    ]  # fmt: skip
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return fail(name, f"ssh to {host}:{port} hung for 60s", "check the host and the network")
    if res.returncode == 255 and not res.stdout and not logged_in:
        err = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "ssh failed"
        if "Host key verification failed" in res.stderr or "REMOTE HOST IDENTIFICATION" in res.stderr:
            return fail(name, f"{host}:{port} presents a host key other than the pinned one",
                        f"verify the host's key ON the host; if it really changed, `breakglass init --{role}-host {host}` again")  # fmt: skip
        if "Permission denied" in res.stderr:
            return fail(name, f"{host}:{port} refused the key for {user}",
                        "install the key: run the installer `breakglass init` wrote (or its authorized_keys line)")  # fmt: skip
        return fail(
            name, f"cannot connect to {host}:{port}: {err}", f"check BREAKGLASS_{key}_HOST/PORT and the network"
        )
    return res


def check_devvm(ctx: Context) -> list[Verdict]:
    """SSH to each VM's devvm target (the agent's `ssh devvm`)."""
    listed = vms.from_env(ctx.env).vms
    shells = [(vm, vm.devvm_parts()) for vm in listed if vm.devvm is not None]
    if not shells:
        return [Verdict("devvm-ssh", "warn", "no devvm configured: the agent can use only the Proxmox verbs",
                        "`breakglass init --devvm-host ...`")]  # fmt: skip
    out = []
    for vm, target in shells:
        name = "devvm-ssh" if len(listed) == 1 else f"devvm-ssh:{vm.name}"
        res = _ssh(ctx.env, "devvm", "id -un", name=name, target=target)
        if isinstance(res, Verdict):
            out.append(res)
        elif res.returncode != 0:
            out.append(fail(name, f"logged in, but `id -un` exited {res.returncode}", "check the account's shell"))
        else:
            out.append(ok(name, f"host key pinned, logged in as {res.stdout.strip()}"))
    return out


def check_pve_refusal(ctx: Context) -> Verdict:
    res = _ssh(ctx.env, "pve", PROBE)
    if isinstance(res, Verdict):
        return res
    ctx.pve_login_ok = True
    if res.returncode == EX_REFUSED and "refused" in res.stderr:
        return ok("pve-forced-command", "the key runs only breakglass-pve (a non-verb was refused)")
    return fail("pve-forced-command", f"the Proxmox key ran {PROBE!r} (exit {res.returncode}): it is not bound to the forced command",
                'the authorized_keys line must start with command="/usr/local/sbin/breakglass-pve /etc/breakglass-pve.conf",restrict')  # fmt: skip


def check_pve_status(ctx: Context) -> list[Verdict]:
    """`status` on each VM through the forced command (the verb alone while
    there is one VM, else the verb and its id, as pve-executor sends it)."""
    listed = vms.from_env(ctx.env).vms
    if not ctx.pve_login_ok:
        return [Verdict("pve-status", "skip", "no SSH to the Proxmox host (see pve-ssh)")]
    return [_pve_status(ctx, vm, len(listed) > 1) for vm in listed]


def _pve_status(ctx: Context, vm: vms.Vm, many: bool) -> Verdict:
    name = f"pve-status:{vm.name}" if many else "pve-status"
    res = _ssh(ctx.env, "pve", f"status {vm.vmid}" if many else "status", logged_in=True, name=name)
    if isinstance(res, Verdict):
        return res
    last = (res.stderr.strip().splitlines() or [""])[-1]
    if res.returncode == 0:
        return ok(name, f"VM {vm.vmid}: {res.stdout.strip()}")
    if res.returncode == EX_CONFIG:
        fix = "install qm / fix QM= in /etc/breakglass-pve.conf" if "QM=" in last else "fix /etc/breakglass-pve.conf"
        return fail(name, f"the host script's config is broken: {last}", fix)
    if res.returncode == EX_REFUSED and "not one this key may act on" in last:
        return fail(name, f"the node refuses VM {vm.vmid}: it is not in its VMIDS",
                    "rerun the installer `breakglass init` wrote (it lists every VM) on the node")  # fmt: skip
    if "does not exist" in last:
        return fail(name, f"qm does not know the configured VM: {last}",
                    "set VMID= in /etc/breakglass-pve.conf (and sudoers) to the devvm's id")  # fmt: skip
    return fail(name, f"`status` failed (exit {res.returncode}): {last}", "read the node's syslog (breakglass-pve)")


# --- this machine ------------------------------------------------------------


def check_data_dir(ctx: Context) -> Verdict:
    d = ctx.data_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-"):
            pass
    except OSError as exc:
        return fail(
            "data-dir",
            f"{d} is not writable ({exc.strerror})",
            f"chown/chmod {d} for this user, or set BREAKGLASS_DATA_DIR",
        )
    free = shutil.disk_usage(d).free
    if free < MIN_FREE_BYTES:
        return fail("data-dir", f"{d}: only {free // 2**20} MiB free", "free disk space; the audit log needs room")
    return ok("data-dir", f"{d} writable, {free // 2**30} GiB free")


def check_sandbox(ctx: Context) -> Verdict:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Verdict("sandbox", "warn", "bubblewrap (bwrap) is not installed", "apt-get install bubblewrap")
    res = subprocess.run([bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    if res.returncode != 0:
        return Verdict("sandbox", "warn", f"bwrap cannot make a namespace: {res.stderr.strip()[:120]}",
                       "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")  # fmt: skip
    return ok("sandbox", f"{bwrap} can make a namespace")


CHECKS: list[Callable[[Context], Verdict | list[Verdict]]] = [
    check_nats, check_cli, check_model_api, check_clock, check_devvm,
    check_pve_refusal, check_pve_status, check_data_dir, check_sandbox,
]  # fmt: skip


def diagnose() -> list[Verdict]:
    try:
        ctx = Context(Env())
    except ConfigError as exc:
        return [fail("settings", str(exc), "fix the variable or DATA_DIR/config.toml")]
    verdicts: list[Verdict] = []
    for check in CHECKS:
        try:
            found = check(ctx)
            verdicts.extend(found if isinstance(found, list) else [found])
        except ConfigError as exc:
            verdicts.append(fail(check.__name__.removeprefix("check_"), str(exc), "fix that setting"))
    return verdicts


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def main(args: argparse.Namespace) -> int:
    verdicts = diagnose()
    broken = any(v.status == "fail" for v in verdicts)
    if args.json:
        sys.stdout.write(msgspec.json.encode({"ok": not broken, "checks": verdicts}).decode() + "\n")
    else:
        for v in verdicts:
            print(f"{_MARK[v.status]} {v.check:<19} {v.summary}" + (f"\n     {'':<19} fix: {v.fix}" if v.fix else ""))
    return 1 if broken else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("doctor", help="check every link end to end: a verdict and the fix for each",
                       description="Exit status 1 when a link the console needs is broken.")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object, for monitoring")
    p.set_defaults(func=main)
