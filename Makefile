# Two commands matter:  `make demo` (the main job) and `make test` (everything CI runs).
# Both set up what they need from this repository's own files; nothing is installed by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test bench lint setup setup-test label-studio redis chromium docker clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml ls_panoptic/_rlewalk.c | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml ls_panoptic/_rlewalk.c | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(VENV)/.installed $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

## The main job: the live service end to end on this machine, without Docker. Redis, Label
## Studio 1.23.2 (from .venv-labelstudio), the backend and a worker run as local processes; a
## project annotated through Label Studio's API fills the store by webhooks, and the snapshot
## from the backend is checked bit for bit against a batch conversion of Label Studio's export.
## Everything it started is stopped at the end. (Batch only, no service: `ls-panoptic demo`.)
demo: setup label-studio redis
	$(BIN)/ls-panoptic up --demo

## The whole test suite: unit tests, CLI tests, and end-to-end tests against a real
## Label Studio 1.23.2 (installed into its own virtualenv by .ci/install-label-studio), its
## editor driven in Debian's chromium (.ci/install-chromium), and docker-compose.yml built and run
## for real on a Docker engine (.ci/install-docker: Debian's docker.io and a debootstrap base image).
test: setup-test label-studio redis chromium docker
	LS_E2E_REQUIRED=1 LSP_REDIS_REQUIRED=1 LSP_REQUIRE_C_EXT=1 LSP_DOCKER_REQUIRED=1 \
		$(BIN)/python -m pytest

label-studio:
	bash .ci/install-label-studio

redis:
	bash .ci/ensure-redis

chromium:
	bash .ci/install-chromium

docker:
	bash .ci/install-docker

## Benchmarks: project vs naive baseline, RLE decoders, CLI start-up (prints ratios; no pass/fail).
bench: setup-test
	$(BIN)/python bench/convert_bench.py
	$(BIN)/python bench/rle_bench.py
	$(BIN)/python bench/startup_bench.py
	$(BIN)/python bench/agreement_bench.py

lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
