# The README's two commands: `make demo` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Three pytest-xdist workers on the 2-core box: much of the suite waits on real-time video and
# subprocesses. Groups (tests/xdist_groups.py) keep latency-measuring tests from overlapping.
TEST_WORKERS ?= 3
PARALLEL := -n $(TEST_WORKERS) --dist loadgroup

.PHONY: demo test test-quick lint typecheck peers bench clean

$(PY):
	$(PYTHON) -m venv $(VENV) || { echo "Could not create a virtualenv: install python3-venv (apt-get install python3-venv)"; exit 1; }

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/appliance demo

peers:
	./scripts/ensure-test-peers.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check appliance tests bench
	$(VENV)/bin/ruff format --check appliance tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy appliance

test: $(STAMP) peers lint typecheck
	$(PY) -m pytest -q -rs $(PARALLEL)

test-quick: $(STAMP) lint typecheck
	$(PY) -m pytest -q -rs $(PARALLEL) -m "not slow"

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
