"""`breakglass init`: from nothing to a console that can reach its VM.

Creates the two key pairs (Proxmox, devvm) in DATA_DIR/keys (0700, keys
0600), pins both host keys after the operator (or an expected fingerprint)
vouched for them, writes DATA_DIR/config.toml (what every service reads
under its environment) and DATA_DIR/pve-host-install.sh for the Proxmox
node. Running it again keeps existing keys; the config file is rewritten
from the answers, which default to the current settings.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import msgspec

from events import vms
from events.config import ConfigError, Env

from . import hostkeys, pveinstall

CONFIG_NAME = "config.toml"
INSTALLER_NAME = "pve-host-install.sh"


class InitError(Exception):
    """Set-up cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Target:
    """One SSH link to set up: `role` is pve or devvm."""

    role: str
    host: str
    port: int
    user: str
    fingerprint: str | None
    accept_seen: bool


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def ensure_keypair(path: Path, comment: str) -> Path:
    """An ed25519 key pair at `path` (0600), kept when it already exists."""
    if not path.exists():
        res = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if res.returncode != 0:
            raise InitError(f"ssh-keygen could not make {path}: {res.stderr.strip()}")
    path.chmod(0o600)
    return path


def _ask(prompt: str, default: str | None) -> str:
    shown = f" [{default}]" if default else ""
    answer = input(f"{prompt}{shown}: ").strip()
    return answer or (default or "")


def pin(t: Target, known_hosts: Path, interactive: bool, out, *, append: bool = False) -> hostkeys.HostKey:  # type: ignore[no-untyped-def]
    """Scan `t`, have its key vouched for, write it to `known_hosts` (or
    add it there: one file pins the devvm of every VM)."""
    try:
        seen = hostkeys.scan(t.host, t.port)
    except hostkeys.HostKeyError as exc:
        raise InitError(f"{t.role}: {exc}") from None
    if t.fingerprint:
        chosen = hostkeys.matching(seen, t.fingerprint)
        if not chosen:
            got = ", ".join(f"{k.kind} {k.fingerprint}" for k in seen)
            raise InitError(
                f"{t.role}: {t.host}:{t.port} presented {got}, not the expected {t.fingerprint}. Nothing was pinned: "
                "check the fingerprint on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)"
            )
        key = chosen[0]
    else:
        key = next((k for k in seen if k.kind == "ssh-ed25519"), seen[0])
        print(f"{t.role}: {t.host}:{t.port} presents the host key {key.kind} {key.fingerprint}", file=out)
        if t.accept_seen:
            print(f"{t.role}: pinned as seen (--accept-{t.role}-host-key); compare it with the host's own", file=out)
        elif interactive:
            print("  compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run ON that host", file=out)
            if _ask("  Is it the same? (yes/no)", None).lower() not in {"y", "yes"}:
                raise InitError(f"{t.role}: host key not confirmed; nothing was pinned")
        else:
            raise InitError(
                f"{t.role}: the host key was seen but nobody vouched for it. Give --{t.role}-fingerprint "
                f"{key.fingerprint} after checking it on the host, or --accept-{t.role}-host-key"
            )
    line = key.known_hosts_line(t.host, t.port)
    if append and known_hosts.exists():
        kept = [old for old in known_hosts.read_text().splitlines(keepends=True) if old != line]
        line = "".join(kept) + line
    known_hosts.write_text(line)
    known_hosts.chmod(0o644)
    return key


def _value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _toml(values: dict[str, str | int], vms: list[dict[str, str | int]] = ()) -> str:  # type: ignore[assignment]
    lines = ["# Written by `breakglass init`. Environment variables win over this file.\n"]
    lines += [f"{key} = {_value(value)}\n" for key, value in values.items()]
    for vm in vms:  # the VM list, as tables after the plain settings (events.vms)
        lines.append("\n[[BREAKGLASS_VMS]]\n")
        lines += [f"{key} = {_value(value)}\n" for key, value in vm.items()]
    return "".join(lines)


def parse_vm(spec: str) -> dict[str, str | int]:
    """`name=web,vmid=103[,node=pve2][,devvm=root@10.0.0.6:22][,fingerprint=SHA256:...]`."""
    fields: dict[str, str | int] = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in {"name", "vmid", "node", "devvm", "fingerprint"} or key in fields:
            raise InitError(f"--vm {spec!r}: expected name=...,vmid=...[,node=...][,devvm=user@host[:port]]"
                            "[,fingerprint=SHA256:...]")
        fields[key] = value
    if "name" not in fields or "vmid" not in fields:
        raise InitError(f"--vm {spec!r}: name= and vmid= are needed")
    if not str(fields["vmid"]).isdigit():
        raise InitError(f"--vm {spec!r}: vmid must be a number")
    fields["vmid"] = int(fields["vmid"])
    vm = {k: v for k, v in fields.items() if k != "fingerprint"}
    vms.check(msgspec.convert(vm, vms.Vm), f"--vm {spec!r}")
    return fields


def _vm_list(args: argparse.Namespace, vmid: int, interactive: bool) -> list[dict[str, str | int]]:
    """The VMs of --vm (or asked for); none: the one VM of --pve-vmid."""
    specs = list(args.vm or [])
    if interactive and not specs:
        while spec := _ask("another VM on this console? name=...,vmid=...,devvm=user@host (empty: no more)", None):
            specs.append(spec)
        if specs:
            specs.insert(0, f"name={vms.DEFAULT_NAME},vmid={vmid}")
    found = [parse_vm(spec) for spec in specs]
    for i, vm in enumerate(found):
        if any(o["name"] == vm["name"] or o["vmid"] == vm["vmid"] for o in found[:i]):
            raise InitError(f"--vm: {vm['name']} ({vm['vmid']}) repeats a name or VMID")
    return found


def _target(args: argparse.Namespace, env: Env, role: str, default_user: str, interactive: bool) -> Target | None:
    key = role.upper()
    host = getattr(args, f"{role}_host") or env.str(f"{key}_HOST")
    if interactive:
        host = _ask(f"{role} SSH host (empty: skip)", host) or None
    if not host:
        return None
    port = getattr(args, f"{role}_port") or env.int(f"{key}_PORT", 22, minimum=1, maximum=65535)
    user = getattr(args, f"{role}_user") or env.str(f"{key}_USER", default_user) or default_user
    if interactive:
        port = int(_ask(f"{role} SSH port", str(port)))
        user = _ask(f"{role} SSH user", user)
    return Target(
        role, host, port, user, getattr(args, f"{role}_fingerprint"), getattr(args, f"accept_{role}_host_key")
    )


def run(args: argparse.Namespace, out=sys.stdout) -> int:  # type: ignore[no-untyped-def]
    """Each host is asked about, then pinned, before the next is asked
    about, and the files every service reads are written last: a key
    nobody vouched for stops `init` with the old config still in place."""
    env = Env()
    _require_deploy_dir()
    interactive = not args.yes and sys.stdin.isatty()
    data_dir = _private_dir(Path(args.data_dir or env.str("DATA_DIR", ".breakglass") or ".breakglass").resolve())
    keys, pins = _private_dir(data_dir / "keys"), _private_dir(data_dir / "known_hosts")

    pve = _target(args, env, "pve", "breakglass", interactive)
    if pve is None:
        raise InitError("the Proxmox host is needed: --pve-host (or BREAKGLASS_PVE_HOST)")
    vmid, many = _default_vm(args, env, interactive)
    pve_key = ensure_keypair(keys / "pve_ed25519", "breakglass-pve-executor")
    pin(pve, pins / "pve", interactive, out)

    devvm = _target(args, env, "devvm", "root", interactive)
    devvm_key = ensure_keypair(keys / "devvm_ed25519", "breakglass-agent")
    if devvm is not None:
        pin(devvm, pins / "devvm", interactive, out)
    if interactive and not many:
        many = _vm_list(args, vmid, True)
    shells = _pin_vm_devvms(many, args.accept_devvm_host_key, pins / "devvm", interactive, out, devvm is not None)

    values = {"BREAKGLASS_DATA_DIR": str(data_dir), **_pve_values(pve, vmid, pve_key, pins / "pve"),
              **_devvm_values(devvm, bool(shells), devvm_key, pins / "devvm")}  # fmt: skip
    config = _write_config(data_dir, values, many)
    installer = _write_installer(data_dir, keys, [int(vm["vmid"]) for vm in many] or [vmid], pve, args.pve_from)

    _tell_config(config, env, out)
    logins = ([f"{devvm.user}@{devvm.host}"] if devvm is not None else []) + shells
    _tell_hosts(pve, installer, many, logins, keys / "devvm_ed25519.pub", out)
    return 0


def _require_deploy_dir() -> None:
    """Checked before anything is written: the node's installer is made from it."""
    try:
        pveinstall.deploy_dir()
    except FileNotFoundError as exc:
        raise InitError(str(exc)) from None


def _default_vm(args: argparse.Namespace, env: Env, interactive: bool) -> tuple[int, list[dict[str, str | int]]]:
    """The VMID the console acts on by default, and the VMs of --vm (the
    first of which is the default when there are any)."""
    vmid = args.pve_vmid or env.int("PVE_VMID", 102, minimum=100, maximum=999_999_999)
    if interactive and not args.vm:
        vmid = int(_ask("VMID of the devvm on that node", str(vmid)))
    many = _vm_list(args, vmid, False)
    if many:
        vmid = int(many[0]["vmid"])
    return vmid, many


def _pin_vm_devvms(
    many: list[dict[str, str | int]], accept_seen: bool, known_hosts: Path, interactive: bool, out: TextIO,
    append: bool,
) -> list[str]:
    """Pin the devvm of each VM that names one, into the one devvm pin
    file (added to it after the first), and take the fingerprints out of
    the VM list: the config keeps VMs, not host keys. The `user@host` of
    each pinned devvm, to be told where the agent's key goes."""
    shells: list[str] = []
    for vm in many:
        if "devvm" not in vm:
            continue
        user, host, port = vms.Vm(name=str(vm["name"]), vmid=int(vm["vmid"]), devvm=str(vm["devvm"])).devvm_parts()
        fingerprint = str(vm.pop("fingerprint")) if "fingerprint" in vm else None
        pin(Target("devvm", host, port, user, fingerprint, accept_seen), known_hosts, interactive, out,
            append=append or bool(shells))
        shells.append(f"{user}@{host}")
    for vm in many:
        vm.pop("fingerprint", None)
    return shells


def _pve_values(pve: Target, vmid: int, key: Path, known_hosts: Path) -> dict[str, str | int]:
    return {
        "BREAKGLASS_PVE_HOST": pve.host, "BREAKGLASS_PVE_PORT": pve.port, "BREAKGLASS_PVE_USER": pve.user,
        "BREAKGLASS_PVE_VMID": vmid, "BREAKGLASS_PVE_KEY_FILE": str(key),
        "BREAKGLASS_PVE_KNOWN_HOSTS": str(known_hosts),
    }  # fmt: skip


def _devvm_values(devvm: Target | None, vm_devvms: bool, key: Path, known_hosts: Path) -> dict[str, str | int]:
    """The default devvm's address, and the agent's key and pins whenever
    any devvm (the default's or a VM's) was pinned."""
    values: dict[str, str | int] = {}
    if devvm is not None:
        values.update({"BREAKGLASS_DEVVM_HOST": devvm.host, "BREAKGLASS_DEVVM_PORT": devvm.port,
                       "BREAKGLASS_DEVVM_USER": devvm.user})  # fmt: skip
    if devvm is not None or vm_devvms:
        values.update({"BREAKGLASS_DEVVM_KEY_FILE": str(key), "BREAKGLASS_DEVVM_KNOWN_HOSTS": str(known_hosts)})
    return values


def _write_config(data_dir: Path, values: dict[str, str | int], many: list[dict[str, str | int]]) -> Path:
    """0600: it names the key files and hosts of the console's links."""
    config = data_dir / CONFIG_NAME
    config.write_text(_toml(values, many))
    config.chmod(0o600)
    return config


def _write_installer(data_dir: Path, keys: Path, vmids: list[int], pve: Target, pve_from: str | None) -> Path:
    """The node's script, made for the executor's public key and these
    VMs only, so the key can touch nothing else on the node."""
    pub = (keys / "pve_ed25519.pub").read_text().strip()
    installer = data_dir / INSTALLER_NAME
    installer.write_text(pveinstall.script(pub, vmids, pve.user, pve_from))
    installer.chmod(0o700)
    return installer


def _tell_config(config: Path, env: Env, out: TextIO) -> None:
    """Where the config went, and how `up` finds it when that is not the
    place it looks by default."""
    print(f"\nwrote {config}", file=out)
    if config.resolve() != (Path(".breakglass") / CONFIG_NAME).resolve() and not env.str("CONFIG"):
        print(f"    (not the default place: export BREAKGLASS_CONFIG={config} for `up` and the tools)", file=out)


def _tell_hosts(
    pve: Target, installer: Path, many: list[dict[str, str | int]], logins: list[str], devvm_pub: Path, out: TextIO,
) -> None:
    """What the operator does by hand on each host: init reaches no host
    as root, so the node's installer and the devvms' authorized keys are
    theirs to place."""
    print(f"\nOn the Proxmox node {pve.host}, as root (shows the changes, then makes them):", file=out)
    print(f"    scp {installer} root@{pve.host}:/root/ && ssh root@{pve.host}", file=out)
    print(f"    sh /root/{INSTALLER_NAME}            # shows what it would change", file=out)
    print(f"    sh /root/{INSTALLER_NAME} --apply    # changes it; safe to run again", file=out)
    if many:
        listed = ", ".join(f"{vm['name']} ({vm['vmid']})" for vm in many)
        print(f"\nVMs: {listed}; the node's script may touch these and nothing else", file=out)
    for where in logins:
        user, host = where.split("@", 1)
        print(f"\nOn the devvm {host}, append to ~{user}/.ssh/authorized_keys:", file=out)
        print(f"    {devvm_pub.read_text().strip()}", file=out)
    print("\nThen give the CLI its credential (ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN) and run: breakglass doctor",
          file=out)  # fmt: skip


def main(args: argparse.Namespace) -> int:
    try:
        return run(args)
    except (InitError, ConfigError) as exc:
        print(f"breakglass init: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("\nbreakglass init: stopped; nothing more was written", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"breakglass init: {exc}", file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "init",
        help="make the keys, pin the host keys, write DATA_DIR/config.toml and the Proxmox installer",
        description="Set up the console's SSH links. Asks on a terminal; with --yes (or no terminal) "
        "everything comes from flags and BREAKGLASS_* variables.",
    )
    p.add_argument("--yes", "-y", action="store_true", help="never ask (automation)")
    p.add_argument("--data-dir", help="default: BREAKGLASS_DATA_DIR or .breakglass")
    for role, user in (("pve", "breakglass"), ("devvm", "root")):
        p.add_argument(f"--{role}-host")
        p.add_argument(f"--{role}-port", type=int)
        p.add_argument(f"--{role}-user", help=f"default {user}")
        p.add_argument(
            f"--{role}-fingerprint", metavar="SHA256:...", help="the host key you expect; nothing else is pinned"
        )
        p.add_argument(f"--accept-{role}-host-key", action="store_true",
                       help="pin the key seen now and print its fingerprint (check it yourself)")  # fmt: skip
    p.add_argument("--pve-vmid", type=int, help="the one VM (default 102); --vm lists several")
    p.add_argument("--vm", action="append", metavar="name=...,vmid=...[,node=...][,devvm=user@host[:port]]",
                   help="a VM this console may act on (repeat for each; the first is the default). A devvm "
                        "host key needs fingerprint=SHA256:... in the spec, or --accept-devvm-host-key")
    p.add_argument("--pve-from", metavar="ADDRESS", help="only this source address may use the Proxmox key (from=)")
    p.set_defaults(func=main)


__all__ = ["add_parser", "ensure_keypair", "pin"]
