#!/usr/bin/env bash
# Boots a real systemd (the machine's own, /lib/systemd/systemd) as PID 1 of a new PID + mount namespace,
# for the tests of the systemd backend, and prints its PID (as seen from outside) on stdout. Stop it with
# ci/systemd/halt.sh PID. Usage: boot.sh STATE_DIR   (STATE_DIR survives a halt: boot it again = reboot)
# The boot is as far as multi-user.target, then root logs in (its user manager starts).
#
# Guards, each against a hazard seen when this was first tried:
#  * systemd-tmpfiles-* are masked: unmasked, the boot runs `systemd-tmpfiles --boot --remove`, which
#    EMPTIES THE WHOLE MACHINE'S /tmp AND /var/tmp (they are shared with the namespace). A canary file in
#    each is checked after the boot; if one is gone this script says so loudly and fails.
#  * /etc/systemd/system is replaced (inside the namespace only) by STATE_DIR/etc-systemd-system, so the
#    host's enabled services (a database, ...) are not started, and `herald install --system` writes into
#    the test's state, never the machine's. Every generator is masked for the same reason (the SysV
#    generator would turn /etc/init.d scripts into units). Units that write to the shared kernel or to
#    /etc (sysctl, modules, binfmt, sysusers, firstboot, ...) are masked too.
#  * /var/lib/systemd/linger is STATE_DIR/linger and the journal is volatile (in the private /run), so
#    `loginctl enable-linger` and the gateway's output never reach the machine's own state.
#  * root's user manager gets XDG_CONFIG_HOME=STATE_DIR/config: user units live in the test's state, not
#    in /root/.config/systemd/user.
#  * One such systemd at a time (flock): without a cgroup namespace, two would share /system.slice.
#  * Refused when the machine itself runs systemd as PID 1 (its cgroups would be shared).
# Everything else (/tmp, the checkout, the binaries) is the same file system inside and outside.
set -euo pipefail

state=${1:?usage: boot.sh STATE_DIR}
mkdir -p "$state"
state=$(cd "$state" && pwd)
say() { printf 'ci/systemd/boot.sh: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "needs root (a PID + mount namespace, and systemd as its PID 1)"; exit 1; }
[ -x /lib/systemd/systemd ] || { say "/lib/systemd/systemd is missing (Debian package systemd)"; exit 1; }
for tool in unshare nsenter flock; do
    command -v "$tool" >/dev/null || { say "$tool is missing (util-linux)"; exit 1; }
done
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    say "this machine runs systemd as PID 1: a second one in a namespace would share its cgroups"
    exit 1
fi

mkdir -p "$state/etc-systemd-system" "$state/linger" "$state/config"
mkdir -p /var/lib/systemd/linger   # the bind mount's target (an empty directory if it was missing)
canary_tmp=$(mktemp /tmp/herald-systemd-canary.XXXXXX)
canary_vartmp=$(mktemp /var/tmp/herald-systemd-canary.XXXXXX)

masked="systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service systemd-tmpfiles-clean.service
 systemd-tmpfiles-clean.timer systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service
 proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount systemd-sysusers.service
 systemd-firstboot.service systemd-machine-id-commit.service systemd-random-seed.service
 systemd-hwdb-update.service systemd-journal-catalog-update.service ldconfig.service
 systemd-update-done.service systemd-repart.service systemd-pcrphase.service
 systemd-pcrphase-sysinit.service systemd-remount-fs.service systemd-fsck-root.service
 systemd-update-utmp.service systemd-update-utmp-runlevel.service dev-hugepages.mount dev-mqueue.mount
 sys-fs-fuse-connections.mount sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
 getty.target console-getty.service e2scrub_reap.service"
generators=$(ls /lib/systemd/system-generators /usr/lib/systemd/system-generators 2>/dev/null | grep -v : | sort -u | tr '\n' ' ')

export HERALD_SD_STATE="$state" HERALD_SD_MASKED="$masked" HERALD_SD_GENERATORS="$generators"
# flock holds the lock for as long as unshare runs, and unshare waits for its child, systemd.
exec 8>/tmp/herald-real-systemd.lock
setsid flock -w 300 /tmp/herald-real-systemd.lock \
    unshare --pid --fork --mount --mount-proc --propagation private bash -c '
    set -e
    mount -t tmpfs -o mode=755 tmpfs /run
    mkdir -p /run/systemd/system /run/systemd/system-generators /run/systemd/journald.conf.d \
             /run/systemd/system/user@0.service.d
    for u in $HERALD_SD_MASKED; do ln -s /dev/null /run/systemd/system/$u; done
    for g in $HERALD_SD_GENERATORS; do ln -s /dev/null /run/systemd/system-generators/$g; done
    # The guard of guards: refuse to boot unless tmpfiles is masked.
    [ "$(readlink /run/systemd/system/systemd-tmpfiles-setup.service)" = /dev/null ] || exit 97
    printf "[Journal]\nStorage=volatile\n" > /run/systemd/journald.conf.d/herald-test.conf
    printf "[Service]\nEnvironment=XDG_CONFIG_HOME=%s/config\n" "$HERALD_SD_STATE" \
        > /run/systemd/system/user@0.service.d/herald-test.conf
    mount --bind "$HERALD_SD_STATE/etc-systemd-system" /etc/systemd/system
    mount --bind "$HERALD_SD_STATE/linger" /var/lib/systemd/linger
    exec /lib/systemd/systemd --system --unit=multi-user.target' \
    </dev/null >>"$state/boot.log" 2>&1 &
flock_pid=$!
exec 8>&-

# systemd is the child of unshare, the child of flock (which may first wait for another boot to end).
pid=""
for _ in $(seq 3100); do
    if ! kill -0 "$flock_pid" 2>/dev/null; then
        say "the namespace ended during boot (see $state/boot.log)"; exit 1
    fi
    unshare_pid=$(pgrep -P "$flock_pid" -x unshare || true)
    [ -n "$unshare_pid" ] && pid=$(pgrep -P "$unshare_pid" -x systemd || true)
    [ -n "$pid" ] && break
    sleep 0.1
done
[ -n "$pid" ] || { say "systemd did not start (see $state/boot.log)"; kill "$flock_pid" 2>/dev/null; exit 1; }

in_ns() { nsenter -t "$pid" -a "$@"; }
state_now=""
for _ in $(seq 300); do
    state_now=$(in_ns systemctl is-system-running 2>/dev/null || true)
    case "$state_now" in running|degraded) break ;; esac
    sleep 0.1
done

lost=""
[ -e "$canary_tmp" ] || lost="/tmp"
[ -e "$canary_vartmp" ] || lost="$lost /var/tmp"
rm -f "$canary_tmp" "$canary_vartmp"
if [ -n "$lost" ]; then
    say "!!!!! the canary in $lost DISAPPEARED during the boot: systemd-tmpfiles ran. Halting. !!!!!"
    in_ns systemctl exit >/dev/null 2>&1 || kill -9 "$pid"
    exit 1
fi
case "$state_now" in
    running) ;;
    degraded) say "booted degraded: $(in_ns systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')" ;;
    *) say "systemd did not reach running (is-system-running: ${state_now:-nothing}; see $state/boot.log)"
       in_ns systemctl exit >/dev/null 2>&1 || kill -9 "$pid"
       exit 1 ;;
esac
# A login of root: its user manager (logind already started it if root lingers). HERALD_SD_NO_LOGIN=1
# leaves that out, to show what comes back after a reboot with nobody logged in.
if [ "${HERALD_SD_NO_LOGIN:-}" = 1 ]; then
    echo "$pid"
    exit 0
fi
in_ns systemctl start user@0.service
for _ in $(seq 100); do
    in_ns env XDG_RUNTIME_DIR=/run/user/0 systemctl --user is-system-running >/dev/null 2>&1 && break
    sleep 0.1
done
echo "$pid"
