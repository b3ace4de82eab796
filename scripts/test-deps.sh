#!/usr/bin/env bash
# Installs what the test suite needs beyond .venv: each step is idempotent and
# skipped when already done. Real parts, not mocks: sshd, Chromium, the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- Node: build and test only (README: Supported versions) ---
if command -v node >/dev/null 2>&1; then
    node_major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$node_major" -lt 20 ]; then
        echo "test-deps: Node $(node --version) is older than the supported 20; install Node 20 or newer" >&2
        exit 2
    fi
fi

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
        (cd "$claude_cli_dir" && npm ci --no-audit --no-fund --loglevel=error)
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

# --- A real OpenSSH sshd (tests/sshd.py; tests/pve_host drive the forced command through it) ---
# Debian's openssh-server; only the binary is used (tests start their own sshd
# with their own config, host key and port; the system service is not needed).
# sudo only for `visudo -c` on the shipped deploy/pve-host/sudoers.
# The test account breakglass-test has /bin/sh as its shell so no rc file runs
# before each forced command, and password "*" (not "!"): with UsePAM no,
# sshd treats a "!" password as a locked account and refuses even a key.
sshd_pkgs=""
[ -x /usr/sbin/sshd ] || sshd_pkgs="openssh-server"
[ -x /usr/sbin/visudo ] || sshd_pkgs="$sshd_pkgs sudo"
sshd_pkgs=${sshd_pkgs# }
if [ -n "$sshd_pkgs" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test-deps: installing $sshd_pkgs ..."
        # shellcheck disable=SC2086
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $sshd_pkgs >/dev/null; } \
            || echo "test-deps: WARNING apt-get could not install $sshd_pkgs (tests needing sshd will skip)" >&2
    else
        echo "test-deps: missing $sshd_pkgs; as root run: apt-get install $sshd_pkgs" \
            "(tests needing sshd will skip)" >&2
    fi
fi
if [ "$(id -u)" -eq 0 ]; then
    mkdir -p /run/sshd && chmod 0755 /run/sshd
    if ! id breakglass-test >/dev/null 2>&1 && command -v useradd >/dev/null 2>&1; then
        useradd --system --create-home --home-dir /var/lib/breakglass-test --shell /bin/sh breakglass-test \
            && usermod -p '*' breakglass-test \
            || echo "test-deps: WARNING could not create the account breakglass-test (sshd tests log in as root)" >&2
    fi
fi
if [ -x /usr/sbin/sshd ]; then
    echo "test-deps: sshd $(ssh -V 2>&1 | cut -d, -f1) at /usr/sbin/sshd"
fi

# --- The agent's sandbox (bubblewrap), as `make run` installs it ---
bash scripts/sandbox-deps.sh
if command -v bwrap >/dev/null 2>&1; then
    echo "test-deps: $(bwrap --version) at $(command -v bwrap)"
fi

# --- A real Prometheus Alertmanager (tests/alerts deliver alerts through it to the gateway) ---
# Debian's prometheus-alertmanager; only the binary is used (the tests start
# their own with their own config; the package's own service is not needed).
if [ ! -x /usr/bin/prometheus-alertmanager ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test-deps: installing prometheus-alertmanager ..."
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            prometheus-alertmanager >/dev/null; } \
            || echo "test-deps: WARNING apt-get could not install prometheus-alertmanager (alert tests will skip)" >&2
    else
        echo "test-deps: missing prometheus-alertmanager; as root run: apt-get install prometheus-alertmanager" \
            "(alert tests will skip)" >&2
    fi
fi
if [ -x /usr/bin/prometheus-alertmanager ]; then
    echo "test-deps: $(/usr/bin/prometheus-alertmanager --version 2>&1 | head -1)"
fi

# --- The PWA's browser tests (tests/pwa): Debian's Chromium, the frontend's node_modules ---
# Chromium from apt (never `playwright install`; the Python playwright pinned in
# requirements.lock drives /usr/bin/chromium). node_modules gives axe-core to the
# tests and Vite to the stale-build check (tests/pwa/test_build.py).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test-deps: installing chromium ..."
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
            || echo "test-deps: WARNING apt-get could not install chromium (browser tests will skip)" >&2
    else
        echo "test-deps: missing /usr/bin/chromium; as root run: apt-get install chromium (browser tests will skip)" >&2
    fi
fi
if [ ! -d frontend/node_modules ] || [ frontend/package-lock.json -nt frontend/node_modules/.package-lock.json ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "test-deps: npm ci in frontend/ ..."
        (cd frontend && npm ci --no-audit --no-fund --loglevel=error) \
            || echo "test-deps: WARNING npm ci failed in frontend/ (stale-build check and axe will skip)" >&2
    else
        echo "test-deps: npm not found; the stale-build check and axe will skip" >&2
    fi
fi
