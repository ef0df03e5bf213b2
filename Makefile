# Two commands on a fresh machine: `make demo` and `make test`. Everything else is optional.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
STAMP := $(VENV)/.installed

.PHONY: deps test test-image fuzz demo lint bench bench-inventory bench-disks bench-boot bench-controller bench-convert-guest bench-warm bench-migrate image clean

deps: $(STAMP)

$(STAMP): pyproject.toml scripts/install-deps.sh
	bash scripts/install-deps.sh
	touch $@

# tests/guest (virt-v2v under TCG) runs as a second pytest process beside the rest: scripts/run_tests.py
test: deps
	$(PY) scripts/run_tests.py

lint: deps
	$(VENV)/bin/ruff check core migrator converters runtime testbed tests benchmarks
	$(VENV)/bin/ruff format --check core migrator converters runtime testbed tests benchmarks
	$(VENV)/bin/lint-imports  # the import contract in pyproject.toml

# The parsers fuzzed for longer than `make test` does (tests/fuzz; examples found are kept in ~/.cache/migrator)
fuzz: deps
	HYPOTHESIS_PROFILE=fuzz $(PYTEST) -q tests/fuzz

demo: deps
	$(PY) -m testbed.demo

bench: bench-inventory bench-disks bench-boot bench-controller bench-warm bench-migrate

bench-inventory: deps
	$(PY) -m benchmarks.bench_inventory

bench-disks: deps
	$(PY) -m benchmarks.bench_disks

bench-boot: deps
	$(PY) -m benchmarks.bench_boot

bench-controller: deps
	$(PY) -m benchmarks.bench_controller

bench-migrate: deps
	$(PY) -m benchmarks.bench_migrate

bench-warm: deps
	$(PY) -m benchmarks.bench_warm

bench-convert-guest: deps
	$(PY) -m benchmarks.bench_convert_guest

image: deps
	bash runtime/image/build.sh

# Builds the image (mmdebstrap: several minutes, ~400 MB of Debian packages) and starts the agents in it: opt-in,
# it does not fit the default suite's time budget.
test-image: deps
	MIGRATOR_TEST_IMAGE=1 $(PYTEST) -q -ra tests/runtime/test_image.py

clean:
	rm -rf $(VENV) build demo-out bench-out .pytest_cache
