"""The VMs this console may act on, shared by every service.

`BREAKGLASS_VMS` lists them: a JSON array of `{name, vmid, node, devvm}`
in the environment, or an array of tables in the settings file
(`[[BREAKGLASS_VMS]]`, which events.config turns into the same JSON). The
first VM is the default: the one the single-VM routes and commands that name
no VM address. Without the setting, the single-VM settings
(`BREAKGLASS_PVE_VMID`, `BREAKGLASS_DEVVM_*`) make a list of one, so older
configurations keep working unchanged.

The list is the allow-list: a VMID not in it is refused by the gateway and
pve-executor before anything is sent, and by the host script (its own list,
`VMIDS=` in /etc/breakglass-pve.conf).
"""

from __future__ import annotations

import json
import re

import msgspec

from .config import PREFIX, ConfigError, Env

VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
#: `[user@]host[:port]`: the devvm's SSH login the agent's `ssh devvm` uses.
DEVVM_TARGET = re.compile(r"^(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})@)?(?P<host>[A-Za-z0-9._\-]{1,253}|\[[0-9A-Fa-f:.]+\])"
                          r"(?::(?P<port>[0-9]{1,5}))?$")
MIN_VMID, MAX_VMID = 100, 999_999_999
DEFAULT_NAME = "devvm"
DEFAULT_NODE = "pve"


class Vm(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    vmid: int
    #: The Proxmox node the VM lives on (shown to the operator and the agent).
    node: str = DEFAULT_NODE
    #: `[user@]host[:port]` of the VM's own SSH, for the agent; None: no shell.
    devvm: str | None = None

    def devvm_parts(self, default_user: str = "root") -> tuple[str, str, int] | None:
        """(user, host, port) of `devvm`, or None when the VM has none."""
        if self.devvm is None:
            return None
        match = DEVVM_TARGET.match(self.devvm)
        assert match is not None  # checked when the list was read
        host = match["host"].strip("[]")
        return match["user"] or default_user, host, int(match["port"] or 22)


class VmList(msgspec.Struct, frozen=True):
    vms: tuple[Vm, ...]

    @property
    def default(self) -> Vm:
        return self.vms[0]

    @property
    def vmids(self) -> tuple[int, ...]:
        return tuple(vm.vmid for vm in self.vms)

    def named(self, name: str) -> Vm | None:
        return next((vm for vm in self.vms if vm.name == name), None)

    def by_vmid(self, vmid: int | None) -> Vm | None:
        """The VM with this id; None (no id given) is the default VM."""
        if vmid is None:
            return self.default
        return next((vm for vm in self.vms if vm.vmid == vmid), None)


def parse(text: str, source: str = PREFIX + "VMS") -> VmList:
    """A VM list from its JSON text; a ConfigError naming the bad entry."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} must be a JSON array of {{name, vmid, node, devvm}}: {exc.msg}") from None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source} must list at least one VM")
    vms: list[Vm] = []
    for i, item in enumerate(raw):
        try:
            vm = msgspec.convert(item, Vm)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}[{i}]: {exc}") from None
        check(vm, f"{source}[{i}]")
        if any(v.name == vm.name for v in vms):
            raise ConfigError(f"{source}[{i}]: the name {vm.name!r} is used twice")
        if any(v.vmid == vm.vmid for v in vms):
            raise ConfigError(f"{source}[{i}]: VMID {vm.vmid} is listed twice")
        vms.append(vm)
    return VmList(tuple(vms))


def check(vm: Vm, where: str) -> None:
    if not VM_NAME.match(vm.name):
        raise ConfigError(f"{where}: name {vm.name!r}: letters, digits, - and _ only (at most 64)")
    if isinstance(vm.vmid, bool) or not MIN_VMID <= vm.vmid <= MAX_VMID:
        raise ConfigError(f"{where}: vmid must be between {MIN_VMID} and {MAX_VMID}, got {vm.vmid}")
    if not NODE_NAME.match(vm.node):
        raise ConfigError(f"{where}: node {vm.node!r} is not a host name")
    if vm.devvm is not None:
        match = DEVVM_TARGET.match(vm.devvm)
        if match is None or not 1 <= int(match["port"] or 22) <= 65535:
            raise ConfigError(f"{where}: devvm {vm.devvm!r} is not [user@]host[:port]")


def from_env(env: Env) -> VmList:
    """BREAKGLASS_VMS, or the one VM of the single-VM settings."""
    text = env.raw("VMS")
    if text is not None:
        return parse(text)
    host = env.str("DEVVM_HOST")
    devvm = None
    if host is not None:
        user = env.str("DEVVM_USER", "root") or "root"
        port = env.int("DEVVM_PORT", 22, minimum=1, maximum=65535)
        devvm = f"{user}@{f'[{host}]' if ':' in host else host}" + (f":{port}" if port != 22 else "")
    vm = Vm(name=DEFAULT_NAME, vmid=env.int("PVE_VMID", 102, minimum=MIN_VMID, maximum=MAX_VMID), devvm=devvm)
    check(vm, PREFIX + "DEVVM_HOST")
    return VmList((vm,))
