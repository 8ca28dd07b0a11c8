# mlops_nb — every target installs what it needs from the pinned lock first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed
# Tests write their runs and stores to a throw-away folder, never to your runs/.
TEST_RUNS := $(CURDIR)/.test-runs

.PHONY: help run test test-fast test-slow lab docs lock export clean-nbs readme bench peers clean
help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): requirements.lock setup.py settings.ini
	@echo "== building $(VENV) from requirements.lock (first time: ~1-2 min)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null
	@$(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	@$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.lock
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@$(BIN)/python -m ipykernel install --sys-prefix --name mlops_nb --display-name "mlops_nb (.venv)" >/dev/null
	@touch $(STAMP)

run: $(STAMP)  ## run the whole pipeline on the embedded defaults (digits, SQLite store)
	$(BIN)/mlops_nb run

test: $(STAMP)  ## install, then run every test: notebook tests (nbdev_test) and pytest, PostgreSQL included
	@bash tests/system_deps.sh
	@rm -rf $(TEST_RUNS)
	MLOPS_NB_RUNS=$(TEST_RUNS)/nbdev MLOPS_NB_STORE= $(BIN)/nbdev_test --n_workers 2
	MLOPS_NB_RUNS=$(TEST_RUNS)/pytest MLOPS_NB_STORE= $(BIN)/python -m pytest tests -q -p no:cacheprovider --durations=20
	@rm -rf $(TEST_RUNS)

test-fast: $(STAMP)  ## pytest without the PostgreSQL and parallel-run tests
	MLOPS_NB_RUNS=$(TEST_RUNS) MLOPS_NB_STORE= $(BIN)/python -m pytest tests -q -m "not postgres and not slow"

test-slow: $(STAMP)  ## notebook tests including cells flagged slow
	MLOPS_NB_RUNS=$(TEST_RUNS) MLOPS_NB_STORE= $(BIN)/nbdev_test --n_workers 2 --flags slow

lab: $(STAMP)  ## open JupyterLab on the workspace with the project kernel
	$(BIN)/jupyter lab --notebook-dir=.

docs: $(STAMP)  ## build the course site into _docs/ from the notebooks and the newest run (Quarto if installed, else nbconvert)
	$(BIN)/mlops_nb docs

export: $(STAMP)  ## notebooks → mlops_nb/**/*.py, strip outputs, regenerate README.md
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export
	$(BIN)/python -c "from mlops_nb.site.docs import write_readme; write_readme()"

bench: $(STAMP)  ## run the benchmarks and print their figures
	@for b in bench/*.py; do echo "== $$b"; MLOPS_NB_RUNS=$(TEST_RUNS) MLOPS_NB_STORE= $(BIN)/python $$b || exit 1; done
	@rm -rf $(TEST_RUNS)

peers: $(STAMP)  ## build the peers' own environments for the benches (TFX 1.16, KServe) under bench/peers/, never in the project lock
	@for p in bench/peers/build_*.sh; do bash $$p || exit 1; done

lock:  ## re-resolve requirements.in into requirements.lock (needs the registry)
	$(PYTHON) -m pip install -q "uv==$(UV_VERSION)" && $(PYTHON) -m uv pip compile requirements.in -o requirements.lock \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu

clean:  ## remove the virtual environment (runs/ is kept)
	rm -rf $(VENV)
