# genserve: `make up` starts everything on the embedded defaults; `make test` runs every test.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# What running needs (`make up`, `make install`): the client, the servers, their dependencies.
STAMP  := $(VENV)/.installed
# What testing adds (`make test`, `make install-dev`): the dev extra (pytest, linters, type
# checkers, Playwright, the openai client, grpcio-tools) and npm's pinned buf (proto lint).
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: up test test-fast codegen-check lint typecheck proto-lint proto bench load soak \
	install install-dev clean gpu-bundle gpu-check

# The client distribution (./clients) first, so the servers find genserve-client already satisfied.
# An install from before the split owns bin/genserve: uninstalling it first keeps the client's.
$(STAMP): pyproject.toml clients/pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip uninstall -q -y genserve 2>/dev/null || true
	$(BIN)/pip install -q -c constraints.txt -e ./clients
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) package.json package-lock.json
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	npm ci --no-audit --no-fund --silent
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

up: $(STAMP)
	$(BIN)/genserve up

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

proto-lint: $(DEV_STAMP)
	npx --no-install buf lint

proto: $(DEV_STAMP)
	$(BIN)/python -m genserve.codegen

# The generated stubs and the generated synchronous SDK (genserve/client.py) are fresh.
codegen-check: $(DEV_STAMP)
	$(BIN)/python -m genserve.codegen --check

test: lint typecheck proto-lint codegen-check
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The fast lane: lint, types and the tests that need no server, no browser and no database
# server (markers set in tests/conftest.py; tests/utils/lanes.py fails an unmarked one).
FAST_MARKERS := not server and not browser and not database and not fleet
test-fast: lint typecheck codegen-check
	GENSERVE_TEST_LANE=fast $(BIN)/python -m pytest -q -p no:cacheprovider -m "$(FAST_MARKERS)"

# One table of figures; on a GPU machine: make bench BENCH_ARGS="--device cuda --fp8".
BENCH_ARGS ?=
bench: $(DEV_STAMP)
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

# 60 s at a fixed rate against a bridge and an inference server it starts on loopback;
# other figures with `make load LOAD_ARGS="--rate 8 --seconds 120"` (see bench/load.py).
LOAD_ARGS ?=
load: $(DEV_STAMP)
	$(BIN)/python -m bench.load $(LOAD_ARGS)

# A lent GPU machine (no network; Python 3.12, torch 2.11; see README, Benchmarks). Here, before
# the lease: `make gpu-bundle` downloads the wheels its image lacks into .gpu-bundle/ (ignored,
# under 50 MiB). There, as one command: `make gpu-check` installs them into .gpu-target/ with
# pip --no-index and prints one table of every GPU figure, written to $OUT (else gpu-results/).
# Neither uses .venv: gpu-check runs on the image's own python3. A rehearsal on a CPU:
# make gpu-check PYTHON3=/path/to/py3.12/bin/python GPU_CHECK_ARGS="--device cpu --scale small"
PYTHON3 ?= python3
GPU_CHECK_ARGS ?=
gpu-bundle:
	$(PYTHON3) -m tools.gpu_bundle download .gpu-bundle

gpu-check:
	$(PYTHON3) -m tools.gpu_bundle install .gpu-bundle --target .gpu-target \
		--report "$${OUT:-gpu-results}/gpu-install.json"
	PYTHONPATH=.gpu-target:.:clients PYTHONUNBUFFERED=1 $(PYTHON3) -m bench.gpu_check \
		--out "$${OUT:-gpu-results}" $(GPU_CHECK_ARGS)

# Ten minutes of generations with previews, then big bodies, the bridge's memory printed
# as it goes (see bench/soak.py); shorter with SOAK_ARGS="--seconds 120".
SOAK_ARGS ?=
soak: $(DEV_STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) node_modules data/test-models
