#!/usr/bin/env bash
# Lints what Herald ships for containers: the Dockerfile (hadolint) and the Kubernetes manifests
# (kubernetes-validate --strict: the API's schemas, unknown fields refused). No container engine runs
# here, so the image itself is not built; tests/deploy.rs checks that the ConfigMap's herald.toml is a
# config this herald accepts. Usage: ci/lint-deploy.sh BIN (the folder install-deploy-linters.sh prints).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: ci/lint-deploy.sh BIN}
"$bin/hadolint" --failure-threshold info Dockerfile
for manifest in deploy/kubernetes/*.yaml; do
    "$bin/kubernetes-validate" --strict --quiet "$manifest"
done
echo "deploy files: Dockerfile and $(ls deploy/kubernetes/*.yaml | wc -l) manifest(s) pass" >&2
