# Sourced by the PyPI peer installers: `make_venv DIR` makes a Python virtual environment at DIR unless
# one is there, installing Debian's python3-venv first when that is what is missing and this is root.
# The caller defines `log`.
make_venv() {
    local venv=$1
    [ -x "$venv/bin/python" ] && return 0
    python3 -m venv "$venv" >&2 && return 0
    if [ "$(id -u)" = 0 ]; then
        log "installing python3-venv (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
        python3 -m venv "$venv" >&2
    else
        log "python3 -m venv failed; install python3-venv"
        return 1
    fi
}
