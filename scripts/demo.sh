#!/usr/bin/env bash
# `make demo`: the reference scenario on a kernel with IPVS (User-Mode Linux when
# this kernel has none). Installs what it needs like scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
ensure_apt_packages
ensure_venv
exec .venv/bin/python -m lab.uml -- .venv/bin/python -m lab.demo "$@"
