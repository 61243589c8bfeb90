#!/usr/bin/env bash
# `make demo`: the reference scenario on a kernel with IPVS (User-Mode Linux when
# this kernel has none). Installs what it needs like scripts/test.sh.
#   VARIANT=dr (default), nat or dualstack (IPv6 VIP and service next to the IPv4
#   ones, in one sync group); ALL_ACTIVE=1 for three directors and six VIPs
#   (laid out by `ipvsd plan`, whose answer it prints first);
#   PROMETHEUS=0 without the Prometheus server that watches the two-director demo.
# Arguments are passed to `python -m lab.demo` (--variant nat|dualstack, --all-active,
# --no-prometheus).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
ensure_apt_packages
ensure_venv
args=(--variant "${VARIANT:-dr}")
[ "${ALL_ACTIVE:-0}" = 1 ] && args=(--all-active)
[ "${PROMETHEUS:-1}" = 0 ] && args+=(--no-prometheus)
exec .venv/bin/python -m lab.uml --timeout 600 -- .venv/bin/python -m lab.demo "${args[@]}" "$@"
