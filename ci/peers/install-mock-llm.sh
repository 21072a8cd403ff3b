#!/usr/bin/env bash
# Installs the mock-llm test peer (an OpenAI-compatible mock server, npm package @dwmkerr/mock-llm) at a
# pinned version into ci/peers/node_modules, and prints the absolute path of its entry script (run it with
# `node <path>`; it listens on $PORT, and on $HOST, default 0.0.0.0). herald-openai's integration tests
# find it there, or through HERALD_MOCK_LLM=<path>.
#
# Idempotent: when that version is already installed it only prints the path. Needs node and npm; as
# root it installs them through apt when they are missing. Everything else it says goes to stderr.
set -euo pipefail

version=0.1.29
peers="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
package="$peers/node_modules/@dwmkerr/mock-llm"
entry="$package/dist/main.js"

log() { printf '[mock-llm] %s\n' "$*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        log "node and npm are needed; install them (Debian: apt-get install nodejs npm)"
        exit 1
    fi
    log "installing nodejs and npm (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
fi

installed_version() {
    [ -f "$package/package.json" ] || return 0
    node -e 'process.stdout.write(String(require(process.argv[1]).version))' "$package/package.json" 2>/dev/null || true
}

if [ "$(installed_version)" != "$version" ] || [ ! -f "$entry" ]; then
    log "installing @dwmkerr/mock-llm@$version into $peers/node_modules"
    npm install --prefix "$peers" --no-save --no-audit --no-fund --loglevel=error \
        "@dwmkerr/mock-llm@$version" >&2
    if [ "$(installed_version)" != "$version" ] || [ ! -f "$entry" ]; then
        log "installation failed: $entry (version $version) is not there"
        exit 1
    fi
fi

printf '%s\n' "$entry"
