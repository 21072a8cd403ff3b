#!/usr/bin/env bash
# Builds the second Herald that tests/upgrade.rs installs over the first: this very tree with another
# version string (HERALD_BUILD_VERSION=<package version>-upgrade.1), so no binary is checked in. Its
# herald and heraldw are copied to <target dir>[/<triple>]/upgrade-candidate/, where the tests find them;
# the path of herald is printed.
#
#   bash ci/build-upgrade-candidate.sh [TARGET_TRIPLE]
#
# Only the workspace's own crates are rebuilt (the version is read with option_env!, which cargo
# tracks), and the next plain build rebuilds them back: seconds, not a second dependency tree.
set -euo pipefail
cd "$(dirname "$0")/.."
triple="${1:-}"
target_dir="${CARGO_TARGET_DIR:-target}"
package_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
args=()
out="$target_dir"
ext=""
if [ -n "$triple" ]; then
    args=(--target "$triple")
    out="$target_dir/$triple"
    case "$triple" in *windows*) ext=".exe" ;; esac
fi
# With the PostgreSQL journal, so tests/upgrade.rs can upgrade a home whose journal is a database.
HERALD_BUILD_VERSION="$package_version-upgrade.1" \
    cargo build --locked -p herald --features postgres --bin herald --bin heraldw "${args[@]}" >&2
mkdir -p "$out/upgrade-candidate"
for program in herald heraldw; do
    cp "$out/debug/$program$ext" "$out/upgrade-candidate/$program$ext"
done
echo "$out/upgrade-candidate/herald$ext"
