"""breakglass agent-runner: runs one Claude Code CLI process per turn,
detached from any browser, and records what it prints as session events.
It holds the devvm SSH key (the agent needs a shell there) and never the
Proxmox key."""
