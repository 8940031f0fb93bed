# The README's commands. Each target sets up what it needs on a fresh machine with Python 3.10+:
# it uses the active virtual environment, or creates .venv; installs torch 2.13.0 only when no
# torch is present; builds and installs ssa_fast (editable, with its C++ extension).

PYTHON ?= python3
ifdef VIRTUAL_ENV
PY := python
else
PY := .venv/bin/python
endif
PIP := $(PY) -m pip
EXTRAS ?= dev

.PHONY: setup demo test bench lint clean

$(PY):
	$(PYTHON) -m venv .venv

setup: $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12" ninja cmake
	$(PIP) install --no-build-isolation -e ".[$(EXTRAS)]"

demo: setup
	$(PY) -m ssa_fast.cli demo --out demo_out

# the tests in parallel, one worker per core (TEST_WORKERS=0 runs them in this process)
TEST_WORKERS ?= auto
test: setup
	$(PY) -m pytest tests -q -n $(TEST_WORKERS)

bench: EXTRAS = dev,bench
bench: setup
	mkdir -p build
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-json build/bench.json -q
	$(PY) benchmarks/report.py build/bench.json

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf build demo_out .pytest_cache .benchmarks
