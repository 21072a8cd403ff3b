# shellcheck shell=bash
# Herald: prepare a Wine environment for running x86_64-pc-windows-gnu test
# binaries via `cargo test --target x86_64-pc-windows-gnu`.
#
# Usage (from a bash test script):
#
#     source ci/wine/setup.sh || exit 1
#     trap herald_wine_cleanup EXIT
#     cargo test --target x86_64-pc-windows-gnu ...
#
# Sourcing this file:
#   * installs missing prerequisites (apt packages when root, rustup target),
#   * creates a fresh WINEPREFIX in a temp dir and initialises it headless,
#   * builds the bcryptprimitives.dll shim (see README.md) into system32,
#   * exports WINEPREFIX, WINEDEBUG, WINEDLLOVERRIDES, DISPLAY and the
#     CARGO_TARGET_X86_64_PC_WINDOWS_GNU_{LINKER,RUNNER} variables.
#
# Optional environment:
#   HERALD_WINE_TEMPLATE=<dir>  cache an initialised prefix in <dir> and copy
#                               it for each run (wineboot takes ~20 s; a copy
#                               takes a couple of seconds). Unset = always
#                               wineboot a brand new prefix.
#   HERALD_WINE_KEEP=1          herald_wine_cleanup leaves the prefix on disk.
#
# The file does not change the caller's shell options (no `set -e`); every
# failure is reported on stderr and turns into a non-zero return status.

_herald_wine_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

_herald_wine_log() { printf '[herald-wine] %s\n' "$*" >&2; }
_herald_wine_die() { printf '[herald-wine] ERROR: %s\n' "$*" >&2; return 1; }

_herald_wine_prereqs() {
    local need_apt=0
    command -v wine >/dev/null 2>&1 || need_apt=1
    command -v wineserver >/dev/null 2>&1 || need_apt=1
    command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need_apt=1
    if [ "$need_apt" = 1 ]; then
        if [ "$(id -u)" != 0 ]; then
            _herald_wine_die "wine/wineserver/x86_64-w64-mingw32-gcc missing; as root run: apt-get install -y gcc-mingw-w64-x86-64 wine64 wine"
            return 1
        fi
        _herald_wine_log "installing gcc-mingw-w64-x86-64 wine64 wine (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
            || { _herald_wine_die "apt-get update failed"; return 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            gcc-mingw-w64-x86-64 wine64 wine >&2 \
            || { _herald_wine_die "apt-get install failed"; return 1; }
    fi
    command -v rustup >/dev/null 2>&1 || { _herald_wine_die "rustup not found"; return 1; }
    if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
        _herald_wine_log "rustup target add x86_64-pc-windows-gnu"
        rustup target add x86_64-pc-windows-gnu >&2 \
            || { _herald_wine_die "rustup target add failed"; return 1; }
    fi
}

# wineboot in "$1" (must be an empty/non-existent dir owned by us).
_herald_wine_boot() {
    local prefix="$1" rc=0
    # `timeout` guards against a wineboot that waits for a display/dialog.
    WINEPREFIX="$prefix" timeout 180 wineboot --init >/dev/null 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        _herald_wine_die "wineboot --init failed (rc=$rc) in $prefix"
        return 1
    fi
    WINEPREFIX="$prefix" timeout 120 wineserver -w || rc=$?
    if [ "$rc" != 0 ]; then
        _herald_wine_die "wineserver -w failed/timed out (rc=$rc)"
        return 1
    fi
    [ -f "$prefix/system.reg" ] && [ -d "$prefix/drive_c/windows/system32" ] \
        || { _herald_wine_die "prefix $prefix not initialised"; return 1; }
}

herald_wine_setup() {
    local t0=$SECONDS
    _herald_wine_prereqs || return 1

    # Headless, quiet, no Mono/Gecko install prompts, no menu/desktop entries.
    export DISPLAY=
    unset WAYLAND_DISPLAY
    export WINEDEBUG=-all
    export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
    export WINEARCH=win64

    # Sourcing twice in one shell: drop the previous prefix first.
    if [ -n "${HERALD_WINEPREFIX:-}" ] && [ -d "$HERALD_WINEPREFIX" ]; then
        herald_wine_cleanup
    fi

    local prefix
    prefix="$(mktemp -d "${TMPDIR:-/tmp}/herald-wine.XXXXXX")" \
        || { _herald_wine_die "mktemp failed"; return 1; }
    export WINEPREFIX="$prefix"
    HERALD_WINEPREFIX="$prefix"
    export HERALD_WINEPREFIX

    if [ -n "${HERALD_WINE_TEMPLATE:-}" ]; then
        if [ ! -f "$HERALD_WINE_TEMPLATE/system.reg" ]; then
            _herald_wine_log "initialising template prefix $HERALD_WINE_TEMPLATE (wineboot, ~20s)"
            rm -rf "$HERALD_WINE_TEMPLATE" && mkdir -p "$HERALD_WINE_TEMPLATE" \
                || { _herald_wine_die "cannot create $HERALD_WINE_TEMPLATE"; return 1; }
            _herald_wine_boot "$HERALD_WINE_TEMPLATE" || return 1
        fi
        _herald_wine_log "copying template prefix to $prefix"
        cp -a "$HERALD_WINE_TEMPLATE/." "$prefix/" \
            || { _herald_wine_die "copying template prefix failed"; return 1; }
    else
        _herald_wine_log "initialising fresh prefix $prefix (wineboot, ~20s)"
        _herald_wine_boot "$prefix" || return 1
    fi

    _herald_wine_log "building bcryptprimitives.dll shim"
    x86_64-w64-mingw32-gcc -shared -O2 -Wall \
        -o "$prefix/drive_c/windows/system32/bcryptprimitives.dll" \
        "$_herald_wine_dir/bcryptprimitives.c" \
        "$_herald_wine_dir/bcryptprimitives.def" -ladvapi32 >&2 \
        || { _herald_wine_die "building bcryptprimitives.dll failed"; return 1; }

    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine

    _herald_wine_log "ready: WINEPREFIX=$prefix ($((SECONDS - t0))s)"
}

herald_wine_cleanup() {
    local prefix="${HERALD_WINEPREFIX:-}"
    [ -n "$prefix" ] || return 0
    WINEPREFIX="$prefix" wineserver -k >/dev/null 2>&1 || true
    WINEPREFIX="$prefix" timeout 30 wineserver -w >/dev/null 2>&1 || true
    if [ "${HERALD_WINE_KEEP:-0}" = 1 ]; then
        _herald_wine_log "keeping prefix $prefix"
    else
        case "$prefix" in
            */herald-wine.*) rm -rf -- "$prefix" ;;
        esac
    fi
    unset HERALD_WINEPREFIX
    return 0
}

herald_wine_setup
