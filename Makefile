# make test: everything (what CI runs). See scripts/test.sh.
PY := .venv/bin/python

.PHONY: test demo bench lint unit netns kernel kernel-qemu venv deb

test:
	@bash scripts/test.sh

# make demo [VARIANT=nat|dualstack|bgp] [ALL_ACTIVE=1] [PROMETHEUS=0]
demo:
	@VARIANT=$(VARIANT) ALL_ACTIVE=$(ALL_ACTIVE) bash scripts/demo.sh

bench:
	@bash scripts/bench.sh

# dist/ipvsd_<version>_<arch>.deb, checked with lintian. See scripts/deb.sh.
deb:
	@bash scripts/deb.sh

venv:
	@bash scripts/setup.sh venv

lint: venv
	.venv/bin/ruff check .
	.venv/bin/mypy ipvsd tests

unit: venv
	$(PY) -m pytest tests/unit

netns: venv
	$(PY) -m pytest tests/netns

kernel: venv
	$(PY) -m lab.uml --timeout 1200 -- $(PY) -m pytest tests/kernel -p no:cacheprovider -v

# accept_mode: false on a kernel with IPVS and nf_tables inet (Debian's, under qemu).
kernel-qemu: venv
	$(PY) -m lab.qemu --timeout 600 -- $(PY) -m pytest tests/kernel/test_no_accept.py -p no:cacheprovider -v
