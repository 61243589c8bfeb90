# shellcheck shell=bash
# Installs what the test bed needs, idempotently and quietly. Sourced by
# scripts/test.sh and scripts/demo.sh; `bash scripts/setup.sh [apt|venv]` runs it alone.
#
#   ensure_apt_packages [PKG...]  Debian packages, APT_PACKAGES unless named (as root;
#                        apt-get update only when one is missing)
#   ensure_venv          .venv with python3 >= 3.11 and `pip install -e '.[test]'`
#                        (re-run when pyproject.toml is newer than the venv's stamp)

APT_PACKAGES=(
    user-mode-linux kmod ipvsadm iproute2 iputils-ping curl keepalived nginx-light systemd
    # lab.qemu: a Debian kernel with IPVS *and* nf_tables inet (UML has no nf_tables
    # inet), booted under qemu (TCG) for tests/kernel/test_no_accept.py
    qemu-system-x86 linux-image-amd64 busybox-static
    prometheus-node-exporter
    prometheus  # promtool (tests of contrib/prometheus) and the lab's Prometheus server
    bird2  # BGP mode's speaker (ipvsd/bgp/), and the router of its netns tests
    make python3 python3-venv
    man-db groff-base bash-completion
)
VENV_STAMP=.venv/.ipvsd-installed

setup_log() { printf 'setup: %s\n' "$*"; }

ensure_apt_packages() {
    local missing=() available=() pkg
    [ $# -gt 0 ] || set -- "${APT_PACKAGES[@]}"
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        setup_log "warning: missing Debian packages: ${missing[*]} (install them as root)"
        return 0
    fi
    setup_log "installing Debian packages: ${missing[*]}"
    local log
    log=$(mktemp)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq >"$log" 2>&1; then
        cat "$log"; rm -f "$log"; return 1
    fi
    for pkg in "${missing[@]}"; do
        if apt-cache show "$pkg" >/dev/null 2>&1; then
            available+=("$pkg")
        else
            setup_log "warning: this Debian has no package $pkg"
        fi
    done
    [ ${#available[@]} -eq 0 ] && { rm -f "$log"; return 0; }
    # Package scripts must not start nginx/keepalived on the host: the tests start
    # their own, inside namespaces. policy-rc.d exit 101 = "do not start services".
    (
        policy=/usr/sbin/policy-rc.d
        if [ ! -e "$policy" ]; then
            trap 'rm -f "$policy"' EXIT
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 755 "$policy"
        fi
        apt-get install -y -qq --no-install-recommends "${available[@]}" >>"$log" 2>&1
    ) || { cat "$log"; rm -f "$log"; return 1; }
    rm -f "$log"
}

find_python() {
    local candidate
    for candidate in python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [ ! -x .venv/bin/python ]; then
        local python
        python=$(find_python) || { setup_log "error: need python3 >= 3.11"; return 1; }
        setup_log "creating .venv with $python"
        "$python" -m venv .venv
        rm -f "$VENV_STAMP"
    fi
    if [ ! -e "$VENV_STAMP" ] || [ pyproject.toml -nt "$VENV_STAMP" ]; then
        setup_log "pip install -e '.[test]'"
        .venv/bin/python -m pip install -qq --disable-pip-version-check -e '.[test]'
        touch "$VENV_STAMP"
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    case "${1:-all}" in
        apt) ensure_apt_packages ;;
        venv) ensure_venv ;;
        all) ensure_apt_packages; ensure_venv ;;
        *) echo "usage: $0 [apt|venv|all]" >&2; exit 2 ;;
    esac
fi
