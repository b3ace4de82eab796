"""The alert receiver's settings: the label -> VM map, and its secret file."""

from __future__ import annotations

import pytest

from events.config import ConfigError, Env
from gateway.alerts.vms import VmMap
from gateway.settings import Settings


def settings(tmp_path, **env: str) -> Settings:  # type: ignore[no-untyped-def]
    return Settings.from_env(Env({"BREAKGLASS_NATS_URL": "nats://127.0.0.1:4222", **env}))


def test_rules_are_tried_in_order_then_the_default():
    vms = VmMap.parse("web:instance=web01:9100, db:job=postgres,web:job=postgres", "devvm")
    assert vms.vm_for({"instance": "web01:9100", "job": "postgres"}) == "web"
    assert vms.vm_for({"job": "postgres"}) == "db"
    assert vms.vm_for({"job": "other"}) == "devvm"
    assert VmMap.parse(None, None).vm_for({"job": "x"}) is None


@pytest.mark.parametrize("rules", ["web", "web:instance", ":a=b", "we b:a=b", "web:=b"])
def test_a_malformed_rule_names_itself(rules):
    with pytest.raises(ConfigError, match="BREAKGLASS_ALERT_VMS"):
        VmMap.parse(rules, "devvm")


def test_the_default_vm_and_none(tmp_path):
    assert settings(tmp_path).alert_vms.default == "devvm"
    assert settings(tmp_path, BREAKGLASS_ALERT_DEFAULT_VM="none").alert_vms.default is None
    with pytest.raises(ConfigError, match="BREAKGLASS_ALERT_DEFAULT_VM"):
        settings(tmp_path, BREAKGLASS_ALERT_DEFAULT_VM="dev vm")


def test_the_secret_comes_from_its_file_and_must_be_its_own(tmp_path):
    secret = tmp_path / "alert"
    secret.write_text("s3cret-of-the-alert-receiver\n")
    assert settings(tmp_path, BREAKGLASS_ALERT_TOKEN_FILE=str(secret)).alert_token == "s3cret-of-the-alert-receiver"
    assert settings(tmp_path).alert_token is None
    with pytest.raises(ConfigError, match="cannot read"):
        settings(tmp_path, BREAKGLASS_ALERT_TOKEN_FILE=str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ConfigError, match="at least 16"):
        settings(tmp_path, BREAKGLASS_ALERT_TOKEN_FILE=str(short))
    with pytest.raises(ConfigError, match="of its own"):
        settings(tmp_path, BREAKGLASS_ALERT_TOKEN_FILE=str(secret), BREAKGLASS_API_TOKEN="s3cret-of-the-alert-receiver")
