# Two commands on a fresh machine: `make demo` and `make test`. Everything else is optional.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
STAMP := $(VENV)/.installed

.PHONY: deps test demo lint bench bench-inventory bench-disks bench-boot bench-controller image clean

deps: $(STAMP)

$(STAMP): pyproject.toml scripts/install-deps.sh
	bash scripts/install-deps.sh
	touch $@

test: deps
	$(PYTEST) -q -ra tests

lint: deps
	$(VENV)/bin/ruff check core migrator converters runtime testbed tests benchmarks
	$(VENV)/bin/ruff format --check core migrator converters runtime testbed tests benchmarks
	$(VENV)/bin/lint-imports  # the import contract in pyproject.toml

demo: deps
	$(PY) -m testbed.demo

bench: bench-inventory bench-disks bench-boot bench-controller

bench-inventory: deps
	$(PY) -m benchmarks.bench_inventory

bench-disks: deps
	$(PY) -m benchmarks.bench_disks

bench-boot: deps
	$(PY) -m benchmarks.bench_boot

bench-controller: deps
	$(PY) -m benchmarks.bench_controller

image: deps
	bash runtime/image/build.sh

clean:
	rm -rf $(VENV) build demo-out bench-out .pytest_cache
