# senti: `make run` builds what is missing and serves; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUNDLE ?= bundles/e5-small
PORT ?= 50051
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install model run test proto proto-check bench clean help

help:
	@echo "make run     build the environment and default model if missing, then serve on :$(PORT)"
	@echo "make test    run the test suite (builds what it needs)"
	@echo "make model   build the default model bundle into $(BUNDLE) (cached)"
	@echo "make proto   regenerate the gRPC stubs (client/v1) from protos/senti/v1/senti.proto"
	@echo "make bench   run the load suite (see loadtest/README.md)"

$(VENV)/.installed: requirements/serve.txt requirements/build.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e ./client -e .
	touch $@

install: $(VENV)/.installed

model: install
	$(VENV)/bin/senti-model default --out $(BUNDLE)

run: model
	$(VENV)/bin/senti-server --bundle $(BUNDLE) --port $(PORT)

test: model
	$(PY) -m pytest -q tests

proto: install
	$(PY) protos/generate.py

proto-check: install
	$(PY) -m pytest -q tests/test_protos.py

clean:
	rm -rf $(VENV) bundles .pytest_cache

bench: model
	$(PY) -m pip install --quiet -r requirements/bench.txt
	$(PY) -m loadtest.bench $(BENCH_ARGS)
