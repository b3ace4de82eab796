"""The VM list (events.vms): read from BREAKGLASS_VMS or the settings
file's `[[BREAKGLASS_VMS]]` tables, or made of the single-VM settings; a bad
entry is one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from events import vms
from events.config import ConfigError, Env, layered_environ


def test_without_a_list_the_single_vm_settings_make_one():
    listed = vms.from_env(Env({"BREAKGLASS_PVE_VMID": "4242", "BREAKGLASS_DEVVM_HOST": "devvm.lan",
                               "BREAKGLASS_DEVVM_USER": "Ops", "BREAKGLASS_DEVVM_PORT": "2222"}))
    assert listed.vms == (vms.Vm(name="devvm", vmid=4242, node="pve", devvm="Ops@devvm.lan:2222"),)
    assert listed.default.devvm_parts() == ("Ops", "devvm.lan", 2222)
    assert vms.from_env(Env({})).vmids == (102,)


def test_the_list_is_the_allow_list_and_the_first_is_the_default():
    listed = vms.parse(json.dumps([{"name": "web", "vmid": 102}, {"name": "db", "vmid": 103, "node": "pve2",
                                                                  "devvm": "10.0.0.6"}]))
    assert listed.default.name == "web" and listed.vmids == (102, 103)
    assert listed.by_vmid(None) is listed.default and listed.by_vmid(103).name == "db"
    assert listed.by_vmid(104) is None and listed.named("mail") is None
    assert listed.named("db").devvm_parts() == ("root", "10.0.0.6", 22)


@pytest.mark.parametrize(("text", "message"), [
    ("{", "must be a JSON array"),
    ("[]", "at least one VM"),
    ('{"name": "web", "vmid": 102}', "at least one VM"),
    ('[{"name": "web"}]', "vmid"),
    ('[{"name": "web", "vmid": "102"}]', "Expected `int`"),
    ('[{"name": "web", "vmid": 99}]', "between 100 and 999999999"),
    ('[{"name": "web", "vmid": true}]', "vmid"),
    ('[{"name": "we b", "vmid": 102}]', "letters, digits"),
    ('[{"name": "web", "vmid": 102, "node": "a;b"}]', "not a host name"),
    ('[{"name": "web", "vmid": 102, "devvm": "root@host; reboot"}]', "not [user@]host[:port]"),
    ('[{"name": "web", "vmid": 102, "devvm": "root@host:99999"}]', "not [user@]host[:port]"),
    ('[{"name": "web", "vmid": 102, "extra": 1}]', "unknown field"),
    ('[{"name": "web", "vmid": 102}, {"name": "web", "vmid": 103}]', "used twice"),
    ('[{"name": "web", "vmid": 102}, {"name": "db", "vmid": 102}]', "listed twice"),
])
def test_a_bad_list_is_one_line_naming_the_entry(text: str, message: str):
    with pytest.raises(ConfigError, match="BREAKGLASS_VMS") as caught:
        vms.parse(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_settings_file_takes_the_list_as_tables(tmp_path: Path):
    path = tmp_path / "config.toml"
    path.write_text('BREAKGLASS_PVE_HOST = "pve1"\n\n[[BREAKGLASS_VMS]]\nname = "web"\nvmid = 102\n\n'
                    '[[BREAKGLASS_VMS]]\nname = "db"\nvmid = 103\nnode = "pve2"\n')
    env = Env(layered_environ({"BREAKGLASS_CONFIG": str(path)}))
    assert [(vm.name, vm.vmid, vm.node) for vm in vms.from_env(env).vms] == [("web", 102, "pve"), ("db", 103, "pve2")]
    # the environment still wins over the file
    env = Env(layered_environ({"BREAKGLASS_CONFIG": str(path), "BREAKGLASS_VMS": '[{"name": "x", "vmid": 200}]'}))
    assert vms.from_env(env).vmids == (200,)
