#!/usr/bin/env bash
# Installs what the test suite needs beyond .venv: each step is idempotent and
# skipped when already done. Real parts, not mocks: sshd, Chromium, the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
