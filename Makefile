# Two commands set everything up: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean up bench-quality

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: install  ## federated predictive maintenance on the bundled C-MAPSS data, embedded Prefect
	$(BIN)/fedpipe run --config federations/cmapss.toml
	$(BIN)/fedpipe report runs/latest  # writes runs/<run>/report.html and prints its path

test: install  ## the test suite (starts its own temporary Prefect API)
	$(BIN)/pytest

bench-quality: install  ## every strategy vs local-only and pooled, every use case -> benchmarks/results/quality.{csv,md}
	$(BIN)/python benchmarks/quality.py

up: install  ## local Prefect server + the demo federation deployed + an agent per market; Ctrl-C stops all
	$(BIN)/fedpipe up --config federations/cmapss.toml

clean:
	rm -rf runs .fedpipe .pytest_cache
