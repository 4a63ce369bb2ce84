# One command per target. Everything installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8888
STORE ?= sqlite:///var/chat.db
WORKERS ?= 1
PYTEST_ARGS ?=
FUZZ_EXAMPLES ?= 1000
SOAK_SECONDS ?= 300
SOAK_ARGS ?=

.PHONY: install run test lint typecheck check screenshot clean fuzz soak bench bench-quick bench-plot \
	bench-profile bench-post bench-memory bench-redis

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,speed,redis,gunicorn]'
	touch $(STAMP)

install: $(STAMP)

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $(BENCH_STAMP)

run: install
	$(BIN)/python -m chat --host $(HOST) --port $(PORT) --store $(STORE) --workers $(WORKERS)

test: install lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The property and fuzz tests of make test, with FUZZ_EXAMPLES examples each and a random seed
# (a failure prints how to reproduce it); no per-test timeout.
fuzz: install
	CHAT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -m "not browser" -k \
		"properties or fuzz or test_forms or xsrf" tests --timeout=0 \
		--hypothesis-show-statistics $(PYTEST_ARGS)

# 1,000 clients churning for SOAK_SECONDS against python -m chat; exits 1 on any failed check.
soak: install
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

# ruff, and the architecture: layers run one way and no package has an import cycle (setup.cfg).
lint: install
	$(BIN)/ruff check chat tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# The load benchmark (bench/README.md). `make bench` is self-contained: it starts and stops a
# server per run and rewrites bench/results/matrix.jsonl, the table and docs/bench.png.
BENCH_OUT ?= bench/results/matrix.jsonl
REPEAT ?= 3
QUIET ?= 30
BENCH_ARGS ?=

bench: $(BENCH_STAMP)
	rm -f $(BENCH_OUT).tmp
	$(BIN)/python -m bench matrix --repeat $(REPEAT) --quiet $(QUIET) --out $(BENCH_OUT).tmp $(BENCH_ARGS)
	mv $(BENCH_OUT).tmp $(BENCH_OUT)
	$(BIN)/python -m bench report $(BENCH_OUT)

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench run sse -S 1000 -M 100 -R 20 --repeat $(REPEAT) --quiet $(QUIET) \
		--out bench/results/quick.jsonl $(BENCH_ARGS)

# The other sets (bench/README.md), each REPEAT runs interleaved, into bench/results/SET.jsonl and
# bench/results/SET.md: posting with 4,096-character bodies (~2 min), memory per held message
# (~1 min), memory vs Redis incl. the reconnect storm (~8 min), the transport bypass (~6 min).
bench-post bench-memory bench-redis: bench-%: $(BENCH_STAMP)
	rm -f bench/results/$*.jsonl.tmp
	$(BIN)/python -m bench matrix --set $* --repeat $(REPEAT) --quiet $(QUIET) \
		--out bench/results/$*.jsonl.tmp $(BENCH_ARGS)
	mv bench/results/$*.jsonl.tmp bench/results/$*.jsonl
	$(BIN)/python -m bench report bench/results/$*.jsonl --table bench/results/$*.md --table-only

bench-plot: $(BENCH_STAMP)
	$(BIN)/python -m bench report $(BENCH_OUT)

bench-profile: $(BENCH_STAMP)
	$(BIN)/python -m bench run sse -S 1000 -M 200 --profile bench/results/profile-sse.svg $(BENCH_ARGS)
	$(BIN)/python -m bench run poll -S 1000 -M 200 --profile bench/results/profile-poll.svg $(BENCH_ARGS)

screenshot: install
	$(BIN)/python -m tests.browser.screenshot docs/chat.png

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
