#!/usr/bin/env bash
# The project's test command (`make test`, `.ci/run`).
#
# Installs what it needs, then runs every step even when an earlier one fails:
#   ruff, mypy, the unit + netns tiers on this kernel, the Debian package (built,
#   installed and purged on this machine), the kernel tier on a kernel with
#   IPVS (User-Mode Linux, booted once, when this kernel has none), and
#   accept_mode's test once more on a kernel with IPVS *and* nf_tables inet
#   (Debian's kernel under qemu, software-emulated: about a minute).
# The kernel tier runs in User-Mode Linux on one CPU while the host tiers run
# beside it on the other (its output is printed when it ends): the two are
# independent (the kernel tier runs the venv's ipvsd in UML's own namespaces),
# and one after the other they took 23 of the 30 minutes CI allows.
# Ends with a summary table and a closing `N passed, N failed` line; exits
# non-zero when any step failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
ensure_apt_packages
ensure_venv

RESULTS=build/test-results
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
: >"$RESULTS/steps.tsv"

# step NAME JUNIT_XML|- CMD...: run CMD, record its status, time and JUnit report.
step() {
    local name=$1 junit=$2 rc=0 start=$SECONDS
    shift 2
    printf '\n=== %s: %s\n' "$name" "$*"
    "$@" || rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$junit" >>"$RESULTS/steps.tsv"
}

# background_step NAME JUNIT_XML|- CMD...: `step` in the background, its output
# in $RESULTS/NAME.log until `finish_background` prints it.
BACKGROUND_PID=
BACKGROUND_LOG=
background_step() {
    BACKGROUND_LOG="$RESULTS/$(printf '%s' "$1" | tr -c 'A-Za-z0-9' '-').log"
    printf '\n=== %s: started in the background (output: %s)\n' "$1" "$BACKGROUND_LOG"
    step "$@" >"$BACKGROUND_LOG" 2>&1 &
    BACKGROUND_PID=$!
}

finish_background() {
    [[ -n $BACKGROUND_PID ]] || return 0
    wait "$BACKGROUND_PID" || true
    cat "$BACKGROUND_LOG"
}

background_step "pytest kernel (IPVS)" "$RESULTS/kernel.xml" \
    .venv/bin/python -m lab.uml --timeout 1500 -- \
    .venv/bin/python -m pytest tests/kernel -p no:cacheprovider -v --junitxml="$RESULTS/kernel.xml"
step ruff - .venv/bin/ruff check .
step mypy - .venv/bin/mypy ipvsd tests
step "pytest unit+netns" "$RESULTS/host.xml" \
    .venv/bin/python -m pytest tests/unit tests/netns --junitxml="$RESULTS/host.xml"
# The Debian package: make deb (lintian-checked), dpkg -i, checks, dpkg --purge.
step "pytest package (deb)" "$RESULTS/package.xml" \
    .venv/bin/python -m pytest tests/package -p no:cacheprovider -v --junitxml="$RESULTS/package.xml"
# UML has no nf_tables inet: accept_mode: false's drops after IPVS are shown here.
step "pytest kernel (IPVS + nf_tables, qemu)" "$RESULTS/kernel-qemu.xml" \
    .venv/bin/python -m lab.qemu --timeout 600 -- \
    .venv/bin/python -m pytest tests/kernel/test_no_accept.py -p no:cacheprovider -v \
    --junitxml="$RESULTS/kernel-qemu.xml"
finish_background

echo
exec .venv/bin/python scripts/summarize_steps.py "$RESULTS/steps.tsv"
