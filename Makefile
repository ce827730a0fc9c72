# medattn: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?= -m "not slow"

.PHONY: install install-dev demo test test-all bench bench-real lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch/torchvision are pinned in pyproject.toml (torch==2.14.1, torchvision==0.29.1).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[serve,search,export,slide]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/medattn demo

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: install-dev
	$(BIN)/python -m pytest -m ""

bench: install-dev
	$(BIN)/python benchmarks/run_all.py

bench-real: install-dev
	$(BIN)/python benchmarks/real/run_all.py

lint: install-dev
	$(BIN)/ruff check src tests benchmarks

format: install-dev
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache build *.egg-info src/*.egg-info
