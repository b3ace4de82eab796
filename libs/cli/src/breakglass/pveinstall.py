"""The one-file installer `breakglass init` writes for the Proxmox node.

It carries everything deploy/pve-host/README.md asks for (the forced command,
its config, the sudoers file, the account and its authorized_keys line),
filled in for this console's key and its VMs (the host's allow-list). Run without arguments it only
shows what it would change; with `--apply` it changes exactly that. Every
step compares first, so a second run changes nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

SCRIPT_PATH = "/usr/local/sbin/breakglass-pve"
CONF_PATH = "/etc/breakglass-pve.conf"
SUDOERS_PATH = "/etc/sudoers.d/breakglass-pve"


def deploy_dir() -> Path:
    """deploy/pve-host of this checkout (the installer embeds its files)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "deploy" / "pve-host"
        if (candidate / "breakglass-pve").is_file():
            return candidate
    raise FileNotFoundError("deploy/pve-host/breakglass-pve is not next to this installation")


def _conf(vmids: Sequence[int]) -> str:
    """The shipped config with this console's VMs: the first is the one a
    bare verb acts on, all of them are the allow-list."""
    text = (deploy_dir() / "breakglass-pve.conf").read_text()
    values = {"VMID": str(vmids[0]), "VMIDS": " ".join(str(v) for v in vmids)}
    return "".join(
        f"{line.split('=', 1)[0]}={values[line.split('=', 1)[0]]}\n" if line.split("=", 1)[0] in values else line + "\n"
        for line in text.splitlines()
    )


def _sudoers(vmids: Sequence[int]) -> str:
    """The shipped sudoers file with its eight `qm` lines once per VM."""
    text = (deploy_dir() / "sudoers").read_text()
    head, sep, rest = text.partition("Cmnd_Alias BREAKGLASS_PVE = \\\n")
    calls, blank, tail = rest.partition("\n\n")
    lines = [line.strip().rstrip(",").rstrip("\\").rstrip().rstrip(",") for line in calls.splitlines()]
    every = [line.replace(" 102", f" {vmid}") for vmid in vmids for line in lines]
    body = ", \\\n".join(f"    {line}" for line in every)
    return head.replace("VMIDS=102", "VMIDS=" + " ".join(map(str, vmids))) + sep + body + blank + tail


def authorized_keys_line(public_key: str, source: str | None = None) -> str:
    fence = f'from="{source}",' if source else ""
    return f'{fence}command="{SCRIPT_PATH} {CONF_PATH}",restrict {public_key.strip()}\n'


_BODY = r"""
set -eu
apply=0
[ "${1-}" = --apply ] && apply=1
root=${BREAKGLASS_PVE_DESTDIR-}   # tests only: stage into a directory instead of /
changes=0

# put PATH MODE NAME: install the here-document on stdin at PATH unless it is already there.
put() {
    new=$(mktemp); cat >"$new"
    case $1 in /etc/sudoers.d/*)  # a broken sudoers file would break sudo for everyone: check before installing
        if [ -z "$root" ] && ! visudo -c -q -f "$new"; then echo "refusing $1: visudo rejects it" >&2; exit 1; fi ;;
    esac
    if [ -f "$root$1" ] && cmp -s "$new" "$root$1"; then
        echo "unchanged  $1"
    else
        changes=$((changes + 1))
        if [ -f "$root$1" ]; then echo "update     $1 ($3):"; diff -u "$root$1" "$new" | sed 's/^/    /' || :
        else echo "create     $1 ($3, mode $2)"; fi
        if [ "$apply" = 1 ]; then
            mkdir -p "$(dirname "$root$1")"
            install -m "$2" "$new" "$root$1"
        fi
    fi
    rm -f "$new"
}

if [ -z "$root" ]; then
    if id "$ACCOUNT" >/dev/null 2>&1; then echo "unchanged  account $ACCOUNT"
    else
        changes=$((changes + 1)); echo "create     account $ACCOUNT (system user, no password)"
        [ "$apply" = 1 ] && useradd --system --create-home --shell /bin/sh "$ACCOUNT"
    fi
    home=$(getent passwd "$ACCOUNT" | cut -d: -f6); home=${home:-/home/$ACCOUNT}
else
    home=/home/$ACCOUNT
fi
"""

_TAIL = r"""
if [ "$apply" = 1 ] && [ -z "$root" ]; then
    chown -R "$ACCOUNT:" "$home/.ssh"; chmod 0700 "$home/.ssh"
fi
if [ "$apply" = 1 ]; then echo "done: $changes change(s)"
elif [ "$changes" = 0 ]; then echo "nothing to change"
else echo "$changes change(s) shown; run again with --apply to make them"; fi
"""


def _heredoc(path: str, mode: str, what: str, text: str) -> str:
    marker = "BREAKGLASS_EOF"
    assert marker not in text
    return f"put {shlex.quote(path)} {mode} {shlex.quote(what)} <<'{marker}'\n{text}{marker}\n"


def script(public_key: str, vmids: int | Sequence[int], account: str = "breakglass", source: str | None = None) -> str:
    """The installer's text, for the VMs `vmids` (the first: a bare verb's)."""
    ids = [vmids] if isinstance(vmids, int) else list(vmids)
    if not ids:
        raise ValueError("the installer needs at least one VMID")
    listed = " ".join(map(str, ids))
    forced = (deploy_dir() / "breakglass-pve").read_text()
    parts = [
        "#!/bin/sh\n",
        "# Written by `breakglass init`: installs the breakglass forced command on this\n",
        "# Proxmox node. Run as root. Without arguments it shows what it would change;\n",
        "# `--apply` makes the changes. Safe to run again: unchanged files stay as they are.\n",
        f"ACCOUNT={shlex.quote(account)}\n",
        _BODY,
        _heredoc(SCRIPT_PATH, "0755", "the forced command", forced),
        _heredoc(CONF_PATH, "0644", f"VMIDS={listed}", _conf(ids)),
        _heredoc(SUDOERS_PATH, "0440", f"qm calls for VMs {listed}", _sudoers(ids)),
        'put "$home/.ssh/authorized_keys" 0600 "the console key, bound to the forced command" <<\'BREAKGLASS_EOF\'\n',
        authorized_keys_line(public_key, source),
        "BREAKGLASS_EOF\n",
        _TAIL,
    ]
    return "".join(parts)


__all__ = ["authorized_keys_line", "script"]
