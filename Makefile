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
FUZZ_EXAMPLES ?= 1000
SOAK_SECONDS ?= 300
SOAK_ARGS ?=

.PHONY: install run test lint typecheck check screenshot clean fuzz soak

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

# The property and fuzz tests of make test, with FUZZ_EXAMPLES examples each and a random seed
# (a failure prints how to reproduce it); no per-test timeout.
fuzz: install
	CHAT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_properties.py \
		tests/test_fuzz_http.py --timeout=0 --hypothesis-show-statistics $(PYTEST_ARGS)

# 1,000 clients churning for SOAK_SECONDS against python -m chat; exits 1 on any failed check.
soak: install
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

lint: install
	$(BIN)/ruff check chat tests $(wildcard bench)

typecheck: install
	$(BIN)/mypy

screenshot: install
	$(BIN)/python -m tests.browser.screenshot docs/chat.png

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
