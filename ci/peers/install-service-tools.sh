#!/usr/bin/env bash
# Installs the real service-manager tools the install tests run against (idempotent):
#   systemd-analyze (Debian package systemd)        -> crates/herald-install/tests/install_systemd.rs
#   plistutil       (Debian package libplist-utils) -> crates/herald-install/tests/install_launchd.rs
#   a bootable systemd: systemd, dbus (logind needs the system bus), libpam-systemd (root's user manager
#   and linger), util-linux (unshare, nsenter, flock), procps (pgrep)
#                                                    -> ci/systemd/boot.sh, crates/herald/tests/systemd_real.rs
# Does nothing when all are present. Installing needs root and apt-get; otherwise it says what is missing
# and exits 1 (the tests then fail under CI=true, or skip loudly without it).
set -euo pipefail

missing=()
for package in systemd libplist-utils dbus libpam-systemd util-linux procps; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    printf 'install-service-tools: missing %s; install them as root with apt-get\n' "${missing[*]}" >&2
    exit 1
fi
printf 'install-service-tools: installing %s\n' "${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# (nothing here boots systemd: ci/systemd/boot.sh does, with systemd-tmpfiles masked)
command -v systemd-analyze >/dev/null && command -v plistutil >/dev/null && [ -x /lib/systemd/systemd ]
