#!/usr/bin/env bash
# The agent's sandbox (README: Threat model): Debian's bubblewrap, and
# setpriv (util-linux) to drop to the agent's uid when the runner is root.
# Idempotent; `make run` and scripts/test-deps.sh call it. Without root it
# only says what to install: agent-runner then refuses turns and says why.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "sandbox-deps: installing bubblewrap ..."
    { apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }; } \
        || echo "sandbox-deps: WARNING apt-get could not install bubblewrap (agent-runner will refuse turns)" >&2
else
    echo "sandbox-deps: bubblewrap is missing; as root run: apt-get install bubblewrap (agent-runner refuses turns without it)" >&2
fi
