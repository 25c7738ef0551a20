# ClassOps: `make demo` runs a simulated county; `make test` runs the test suite.
# Both set up what is missing first: system packages, the virtual environment, the Python packages.

PYTHON ?= python3
# Test processes: most tests wait on brokers, VMs and servers, so two workers use both cores of a small machine.
JOBS   ?= auto
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.classops-installed

.PHONY: setup demo test test-fast lint bench bench-small clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/ensure-system.sh
	bash scripts/ensure-system.sh
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ClassOps needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/classops demo

test: setup lint
	$(BIN)/python -m pytest -n $(JOBS)

test-fast: setup
	$(BIN)/python -m pytest -n $(JOBS) -m "not slow"

lint: setup
	$(BIN)/ruff check .

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Every benchmark at a small size, so that none of them rots; CI runs this after the tests.
bench-small: setup
	@for b in bench/*.py; do echo "== $$b --small"; $(BIN)/python $$b --small || exit 1; done

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .ruff_cache .mypy_cache
