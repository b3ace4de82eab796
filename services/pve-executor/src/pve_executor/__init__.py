"""breakglass pve-executor: the only process that holds the Proxmox SSH key.

It accepts nothing but `RunVerb` commands whose verb is one of six enum
values, checks that again on arrival, and runs the bare verb over SSH
against a forced command that checks it a third time."""
