#!/bin/sh
# The container's entry: puts the mounted config into the home, then runs herald in its place.
#
# Herald refuses a herald.toml that another user owns or may write (a planted config decides what the
# gateway runs), and a Kubernetes ConfigMap is mounted as root's. So the config is mounted elsewhere
# (HERALD_CONFIG_FILE) and copied into the home, owned by this user, mode 0600, at every start.
set -eu
home=${HERALD_HOME:?HERALD_HOME is not set}
umask 077
mkdir -p "$home"
chmod 700 "$home"
if [ -n "${HERALD_CONFIG_FILE:-}" ]; then
    cp "$HERALD_CONFIG_FILE" "$home/herald.toml.new"
    chmod 600 "$home/herald.toml.new"
    mv -f "$home/herald.toml.new" "$home/herald.toml"
fi
exec "${HERALD_BIN:-/usr/local/bin/herald}" "$@"
