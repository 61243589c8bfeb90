#!/usr/bin/env bash
# `make bench`: the benchmarks (not tests). Prints result tables; see bench/README.md.
#   SIZES=1000,10000 (default)  KEEPALIVED=0 to skip keepalived
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
ensure_apt_packages
ensure_venv
sizes=${SIZES:-1000,10000}
extra=()
[ "${KEEPALIVED:-1}" = 0 ] && extra+=(--skip-keepalived)
.venv/bin/python -m bench.netlink_cpu
.venv/bin/python -m bench.vrrp_failover
.venv/bin/python -m bench.startup                    # host: stale VIPs, BACKUP
.venv/bin/python -m bench.startup --table --sizes "$sizes"  # boots UML itself
.venv/bin/python -m lab.uml --mem 2G --timeout 3000 -- \
    .venv/bin/python -m bench.ipvs_programming --sizes "$sizes" "${extra[@]}"
.venv/bin/python -m bench.metrics_scrape --host-cpu && .venv/bin/python -m lab.uml --mem 2G --timeout 3000 -- .venv/bin/python -m bench.metrics_scrape --sizes "$sizes"
.venv/bin/python -m bench.advert_lateness  # boots UML itself; ~25 min (--quick: 3)
