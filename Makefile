# Two commands on a fresh machine with Python 3.11, Node 20 and npm:
#   make run    install what is needed, start Azurite (in memory) and the app on http://localhost:7071
#   make test   install the same and run the whole test suite (it starts its own Azurite; as root it also
#               installs Debian's Chromium for the browser tests, see `browser`)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 7071
# Test processes: each starts its own Azurite; a file's tests stay in one process (module fixtures).
TEST_WORKERS ?= 2

.PHONY: install browser run test lint format clean bench chaos dashboards

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

local.settings.json:
	cp local.settings.json.example $@

run: install local.settings.json
	$(BIN)/python -m tools.run_local --port $(PORT)

# Chromium for the browser tests (tests/e2e/test_docs.py): Debian's package, installed with apt-get
# when it is missing and we are root; otherwise it says what to do and those tests skip, saying why.
browser: install
	$(BIN)/python -m tools.chromium

test: install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench.pipeline --out bench/out/pipeline.json $(BENCH_ARGS)

chaos: install
	$(BIN)/python -m bench.chaos --jobs 2000 --instances 3 --azurite-restart --out bench/out/chaos.json $(CHAOS_ARGS)

dashboards: install
	$(BIN)/python -m tools.dashboards

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
