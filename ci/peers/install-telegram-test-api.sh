#!/usr/bin/env bash
# Installs the telegram-test-api test peer (a Telegram Bot API emulator, npm package telegram-test-api)
# at a pinned version into ci/peers/node_modules, and prints the absolute path of the package directory.
# The Telegram tests start it with `node ci/peers/telegram-test-api-server.js 0` (that wrapper
# requires it from here), or find it through HERALD_TELEGRAM_TEST_API=<package dir>.
#
# Idempotent: when that version is already installed it only prints the path. Needs node and npm; as
# root it installs them through apt when they are missing. Everything else it says goes to stderr.
set -euo pipefail

version=4.2.1
peers="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
package="$peers/node_modules/telegram-test-api"

log() { printf '[telegram-test-api] %s\n' "$*" >&2; }

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

if [ "$(installed_version)" != "$version" ]; then
    log "installing telegram-test-api@$version into $peers/node_modules"
    # Installed next to the other peers; --no-save keeps any earlier peer (mock-llm) in place.
    existing=()
    if [ -f "$peers/node_modules/@dwmkerr/mock-llm/package.json" ]; then
        existing+=("@dwmkerr/mock-llm@$(node -e 'process.stdout.write(String(require(process.argv[1]).version))' "$peers/node_modules/@dwmkerr/mock-llm/package.json")")
    fi
    npm install --prefix "$peers" --no-save --no-audit --no-fund --loglevel=error \
        "telegram-test-api@$version" "${existing[@]}" >&2
    if [ "$(installed_version)" != "$version" ]; then
        log "installation failed: $package (version $version) is not there"
        exit 1
    fi
fi

printf '%s\n' "$package"
