"""Which VM an alert is about: ordered label rules, then a default.

`BREAKGLASS_ALERT_VMS` is a comma-separated list of `VM:LABEL=VALUE`
rules, tried in order; the first whose label has that value names the VM.
An alert no rule matches goes to `BREAKGLASS_ALERT_DEFAULT_VM` (`none`:
it is acknowledged and ignored). The name keys the triage window; when
BREAKGLASS_VMS lists it, the triage session is bound to that VM (its agent
and verbs act there), else to the default VM.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from events.config import ConfigError

VM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_VM = "devvm"


@dataclass(frozen=True)
class VmRule:
    vm: str
    label: str
    value: str


@dataclass(frozen=True)
class VmMap:
    rules: tuple[VmRule, ...] = ()
    default: str | None = DEFAULT_VM

    def vm_for(self, labels: Mapping[str, str]) -> str | None:
        for rule in self.rules:
            if labels.get(rule.label) == rule.value:
                return rule.vm
        return self.default

    @classmethod
    def parse(cls, rules: str | None, default: str | None) -> "VmMap":
        """From the two settings; a malformed rule is a ConfigError naming it."""
        if default is not None and default != "" and not VM_NAME.match(default):
            raise ConfigError(f"BREAKGLASS_ALERT_DEFAULT_VM {default!r}: letters, digits, - and _ only")
        parsed = []
        for raw in (rules or "").split(","):
            rule = raw.strip()
            if not rule:
                continue
            vm, colon, match = rule.partition(":")
            label, equals, value = match.partition("=")
            if not colon or not equals or not VM_NAME.match(vm) or not label.strip():
                raise ConfigError(f"BREAKGLASS_ALERT_VMS: {rule!r} is not VM:LABEL=VALUE")
            parsed.append(VmRule(vm=vm, label=label.strip(), value=value.strip()))
        return cls(tuple(parsed), default or None)
