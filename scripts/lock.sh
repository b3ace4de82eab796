#!/usr/bin/env bash
# `make lock`: resolve every Python dependency into requirements.lock (exact
# versions, sha256 hashes, every platform's wheels), then derive each image's
# subset from it line for line, so an image installs exactly what CI tested.
# uv does the resolving; nothing at run or test time needs uv, only pip.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-.venv/bin/uv}"
locals=(breakglass-events breakglass-eventbus breakglass breakglass-gateway breakglass-agent-runner breakglass-pve-executor breakglass-notifier)
no_emit=()
for name in "${locals[@]}"; do no_emit+=(--no-emit-package "$name"); done

compile() {
    "$uv" pip compile --quiet --universal --python-version 3.11 --custom-compile-command "make lock" "$@"
}

# ${UPGRADE:-}: `make lock UPGRADE="--upgrade-package msgspec"` moves one
# dependency; plain `make lock` keeps every pin the lock already has.
# shellcheck disable=SC2086
compile requirements/all.in --generate-hashes "${no_emit[@]}" ${UPGRADE:-} -o requirements.lock
compile requirements/uv.in --generate-hashes ${UPGRADE:-} -o requirements/uv.txt

for service in gateway agent-runner pve-executor; do
    printf -- '-e ./libs/events\n-e ./libs/eventbus\n-e ./libs/cli\n-e ./services/%s\nsetuptools\n' "$service" > "requirements/.image-$service.in"
    compile "requirements/.image-$service.in" -c requirements.lock --no-header --no-annotate "${no_emit[@]}" \
        | .venv/bin/python scripts/lock_subset.py requirements.lock "$service" > "requirements/image-$service.txt"
    rm -f "requirements/.image-$service.in"
done
echo "lock: requirements.lock and requirements/image-*.txt written; review with git diff"
