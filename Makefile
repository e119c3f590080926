# senti: `make run` builds what is missing and serves; `make test` runs the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUNDLE ?= bundles/e5-small
PORT ?= 50051
HTTP_PORT ?= 8080
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install lock model modelscope-venv modelscope-lock run test proto proto-check bench batch-bench clean help

help:
	@echo "make run     build the environment and default model if missing, then serve gRPC on :$(PORT), HTTP on :$(HTTP_PORT)"
	@echo "make test    run the test suite (builds what it needs)"
	@echo "make model   build the default model bundle into $(BUNDLE) (cached)"
	@echo "make proto   regenerate the gRPC stubs (client/v1) and server/http/openapi.json from protos/senti/v1/senti.proto"
	@echo "make bench   run the load suite (see loadtest/README.md)"
	@echo "make lock    re-resolve requirements/*.in into requirements/lock.txt (hashes; LOCK_ARGS=--upgrade)"

# Every environment installs its subset of the one lock, hash-checked: requirements/subset.py prints it.
$(VENV)/.installed: requirements/lock.txt requirements/subset.py pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) requirements/subset.py dev > $(VENV)/requirements-dev.txt
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(VENV)/requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e ./client -e .
	$(PY) -m pip check
	touch $@

install: $(VENV)/.installed

# One resolution of bench.in (which includes every other .in file) into requirements/lock.txt, with hashes; then
# the inputs' fingerprint, which tests/test_lock.py checks. Keeps the existing pins: LOCK_ARGS=--upgrade (or
# --upgrade-package NAME) moves them. torch must stay the CPU build (2.13.0+cpu): pip needs an index or
# find-links that serves it (PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS), else this stops rather than lock CUDA.
# Needs only pip-compile in the venv, not a venv in step with the .in files being locked.
LOCK_ARGS ?=
lock:
	@[ -x $(VENV)/bin/pip-compile ] || $(MAKE) install
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras \
	  --allow-unsafe --no-emit-index-url --no-emit-find-links --annotation-style=split $(LOCK_ARGS) \
	  --output-file requirements/lock.txt requirements/bench.in
	@if grep -qiE '^(nvidia-|triton==)' requirements/lock.txt || ! grep -q '^torch==2\.13\.0+cpu ' requirements/lock.txt; \
	  then echo "make lock: torch did not resolve to the CPU build 2.13.0+cpu (see above)" >&2; exit 1; fi
	$(PY) requirements/fingerprint.py --stamp requirements/lock.txt

model: install
	$(VENV)/bin/senti-model default --out $(BUNDLE)

run: model
	$(VENV)/bin/senti-server --bundle $(BUNDLE) --port $(PORT) --http-port $(HTTP_PORT)

# ModelScope's own pipeline, in a venv of its own (transformers 4.x), for the StructBERT parity tests; cached.
modelscope-venv:
	$(PYTHON) scripts/modelscope_venv.py >/dev/null

modelscope-lock:
	$(PYTHON) scripts/modelscope_venv.py --lock

test: model modelscope-venv
	$(PY) -m pytest -q tests

proto: install
	$(PY) protos/generate.py

proto-check: install
	$(PY) -m pytest -q tests/test_protos.py

clean:
	rm -rf $(VENV) bundles .pytest_cache .cache

batch-bench: model
	$(PY) requirements/subset.py bench > $(VENV)/requirements-bench.txt
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(VENV)/requirements-bench.txt
	$(PY) -m loadtest.batch_bench $(BATCH_BENCH_ARGS)

bench: model
	$(PY) requirements/subset.py bench > $(VENV)/requirements-bench.txt
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(VENV)/requirements-bench.txt
	$(PY) -m pip check
	$(PY) -m loadtest.bench $(BENCH_ARGS)
