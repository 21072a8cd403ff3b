#!/usr/bin/env bash
# Installs the Synapse test peer (the Matrix reference homeserver, PyPI package matrix-synapse) at a
# pinned version into a virtual environment at ci/peers/synapse-venv, and prints the absolute path of
# that environment's python (run `python ci/peers/synapse_server.py DIR PORT` with it). tests/matrix.rs
# finds it there, or through HERALD_SYNAPSE_PYTHON=<path>.
#
# Idempotent: when that version is already installed it only prints the path. Needs python3 with venv
# and pip (Debian: python3-venv). Everything else it says goes to stderr.
set -euo pipefail

version=1.163.2
peers="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$peers/synapse-venv"
python="$venv/bin/python"

log() { printf '[synapse] %s\n' "$*" >&2; }
# shellcheck source=ci/peers/venv.sh
source "$peers/venv.sh"

installed_version() {
    [ -x "$python" ] || return 0
    "$python" -c 'import importlib.metadata as m; print(m.version("matrix-synapse"), end="")' 2>/dev/null || true
}

if [ "$(installed_version)" != "$version" ]; then
    make_venv "$venv"
    log "installing matrix-synapse==$version into $venv"
    "$python" -m pip install --quiet --disable-pip-version-check "matrix-synapse==$version" >&2
    if [ "$(installed_version)" != "$version" ]; then
        log "installation failed: $python does not import synapse $version"
        exit 1
    fi
fi
printf '%s\n' "$python"
