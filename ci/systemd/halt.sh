#!/usr/bin/env bash
# Shuts down a systemd booted by ci/systemd/boot.sh: `systemctl exit` (every unit stopped in order, then
# PID 1 exits and the kernel ends the namespace), SIGKILL if it is still there after 60 s.
# Usage: halt.sh PID
set -uo pipefail
pid=${1:?usage: halt.sh PID}
[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] || exit 0
nsenter -t "$pid" -a systemctl exit >/dev/null 2>&1 || true
for _ in $(seq 600); do
    [ -d "/proc/$pid" ] || exit 0
    sleep 0.1
done
printf 'ci/systemd/halt.sh: systemd %s did not exit in 60 s: killed\n' "$pid" >&2
kill -9 "$pid"
