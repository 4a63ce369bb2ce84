# One command per target. Everything installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8888
STORE ?= memory
WORKERS ?= 1
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck check screenshot clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,speed,redis,gunicorn]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m chat --host $(HOST) --port $(PORT) --store $(STORE) --workers $(WORKERS)

test: install lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check chat tests $(wildcard bench)

typecheck: install
	$(BIN)/mypy

screenshot: install
	$(BIN)/python -m tests.browser.screenshot docs/chat.png

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
