# genserve: `make up` starts everything on the embedded defaults; `make test` runs every test.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint typecheck proto-lint proto bench install clean

# The client distribution (./clients) first, so the servers find genserve-client already satisfied.
# An install from before the split owns bin/genserve: uninstalling it first keeps the client's.
$(STAMP): pyproject.toml clients/pyproject.toml constraints.txt package.json
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip uninstall -q -y genserve 2>/dev/null || true
	$(BIN)/pip install -q -c constraints.txt -e ./clients
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	npm ci --no-audit --no-fund --silent
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/genserve up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

proto-lint: $(STAMP)
	npx --no-install buf lint

proto: $(STAMP)
	$(BIN)/python -m genserve.codegen

test: lint typecheck proto-lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) node_modules data/test-models
