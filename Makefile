# Two commands set everything up: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: install  ## federated predictive maintenance on the bundled C-MAPSS data, embedded Prefect
	$(BIN)/fedpipe run --config federations/cmapss.toml

test: install  ## the test suite (starts its own temporary Prefect API)
	$(BIN)/pytest

clean:
	rm -rf runs .fedpipe .pytest_cache
