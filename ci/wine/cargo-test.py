#!/usr/bin/env python3
"""Runs the Windows tests under Wine: `cargo test ARGS --no-fail-fast`, its output passed through as it
comes. A test target that failed because Wine itself broke under it -- the wineserver died, and its
clients say `wine client error` -- is run once more (on a new wineserver, which the next `wine` starts);
any other failure fails at once, and so does a target that fails again.

    python3 ci/wine/cargo-test.py --workspace --locked --target x86_64-pc-windows-gnu [...]

Why: Wine 8's wineserver has been seen to die in CI between two test binaries, taking a whole run down
for a fault of the emulator. Only the broken targets are run again, with the same arguments (so nothing
is rebuilt), and only when Wine said it broke: a failing Herald test is never retried here.
"""

import re
import subprocess
import sys
import threading

# What Wine prints when its server went away under a client.
WINE_BROKE = ("wine client error",)
# `     Running tests/records.rs (target/…/records-….exe)`, `   Doc-tests herald_home`.
SECTION = re.compile(r"^\s+(Running \S+.*|Doc-tests \S+)$")
RERUN = re.compile(r"to rerun pass `([^`]*)`")


def run(args):
    """Runs `cargo test ARGS`, echoing its output; returns the exit code and the lines.

    The output is read by a thread and the process waited for here: a wineserver the tests started
    outlives cargo holding the pipe open, so its end never comes."""
    proc = subprocess.Popen(
        ["cargo", "test", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines = []

    def pump():
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    code = proc.wait()
    reader.join(timeout=5)
    return code, list(lines)


def failed_targets(lines):
    """Each failed target: (its rerun filter, whether Wine broke in its section)."""
    sections, current = [], None
    for line in lines:
        if SECTION.match(line.rstrip("\n")):
            current = []
            sections.append(current)
        if current is not None:
            current.append(line)
    failed = []
    for section in sections:
        text = "".join(section)
        found = RERUN.search(text)
        if found:
            failed.append((found.group(1), any(sign in text for sign in WINE_BROKE)))
    return failed


def target_filter(rerun):
    """`-p herald --test records` -> `--test records`: the package stays as the arguments select it."""
    words = rerun.split()
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word in ("-p", "--package"):
            skip = True
            continue
        out.append(word)
    return out


def main():
    args = sys.argv[1:]
    code, lines = run([*args, "--no-fail-fast"])
    if code == 0:
        return 0
    failed = failed_targets(lines)
    if not failed:
        return code
    real = [rerun for rerun, wine_broke in failed if not wine_broke]
    if real:
        print(f"cargo-test.py: failed, not because of Wine: {', '.join(real)}", flush=True)
        return code
    for rerun, _ in failed:
        print(f"cargo-test.py: Wine broke under `{rerun}`: running it once more", flush=True)
        again, _ = run([*args, *target_filter(rerun)])
        if again != 0:
            return again
    return 0


if __name__ == "__main__":
    sys.exit(main())
