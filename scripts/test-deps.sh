#!/usr/bin/env bash
# Installs what the test suite needs beyond .venv: each step is idempotent and
# skipped when already done. Real parts, not mocks: sshd, Chromium, the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- The real Claude Code CLI (tests/fakeapi drives it against a fake Messages API) ---
# Pinned exactly in tools/claude-cli/package.json + package-lock.json. The
# native binary comes in the optional dependency @anthropic-ai/claude-code-<platform>;
# the wrapper's postinstall links it over bin/claude.exe. If an npm configuration
# skipped that postinstall, run it by hand. Fallback without npm: the same binary
# ships in the PyPI wheel claude-agent-sdk (claude_agent_sdk/_bundled/claude);
# tests/fakeapi/cli.py finds it there, or honours BREAKGLASS_CLAUDE_CLI=/path/to/claude.
claude_cli_dir=tools/claude-cli
claude_cli="$claude_cli_dir/node_modules/.bin/claude"
if ! "$claude_cli" --version >/dev/null 2>&1; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "test-deps: npm not found; cannot install the Claude Code CLI (tests that need it will skip)" >&2
    else
        echo "test-deps: installing the Claude Code CLI into $claude_cli_dir ..."
        if [ -f "$claude_cli_dir/package-lock.json" ]; then
            (cd "$claude_cli_dir" && npm ci --no-audit --no-fund --loglevel=error)
        else
            (cd "$claude_cli_dir" && npm install --no-audit --no-fund --loglevel=error)
        fi
        if ! "$claude_cli" --version >/dev/null 2>&1 \
            && [ -f "$claude_cli_dir/node_modules/@anthropic-ai/claude-code/install.cjs" ]; then
            echo "test-deps: the CLI's postinstall did not run; running it now"
            (cd "$claude_cli_dir/node_modules/@anthropic-ai/claude-code" && node install.cjs) || true
        fi
    fi
fi
if "$claude_cli" --version >/dev/null 2>&1; then
    echo "test-deps: Claude Code CLI $("$claude_cli" --version) at $(cd "$(dirname "$claude_cli")" && pwd)/claude"
else
    echo "test-deps: WARNING the Claude Code CLI does not run from $claude_cli;" \
        "fallback: pip install claude-agent-sdk (bundles the binary) or set BREAKGLASS_CLAUDE_CLI" >&2
fi
