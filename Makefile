# One target per thing a person does. `make demo` and `make test` set everything up on a
# fresh clone: a virtual environment in .venv, the Python packages, and (as root) the few
# Debian packages the processors and tests need.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Re-install when the package metadata or this file changes.
STAMP := $(VENV)/.installed-$(shell cat setup.cfg setup.py Makefile | sha1sum | cut -c1-12)
# CPU build of torch, installed before anything that depends on it (a plain `torch`
# requirement would pull a multi-GB CUDA build). Hosts with GPUs install their own.
TORCH ?= torch==2.13.0
EXTRAS ?= all,test,bench,models
APT_PACKAGES := tesseract-ocr tesseract-ocr-eng espeak-ng sox ffmpeg fonts-dejavu-core \
                systemd prometheus nginx g++ chromium
export OMP_NUM_THREADS ?= 1
export OMP_THREAD_LIMIT ?= 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1

.PHONY: install system-deps demo test test-fast lint bench chaos clean

install: $(STAMP)

$(STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel 'setuptools<81'
	$(PIP) install -q '$(TORCH)'
	$(PIP) install -q -e '.[$(EXTRAS)]' '$(TORCH)' 'setuptools<81'
	@rm -f $(VENV)/.installed-*
	@touch $@

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	else echo "missing Debian packages (install them as root): $$missing"; fi

demo: system-deps install
	$(VENV)/bin/morag demo

test: system-deps install
	$(PY) -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check morag_worker tests bench scripts
	$(VENV)/bin/ruff format --check morag_worker
	$(VENV)/bin/mypy morag_worker

bench: system-deps install
	$(PY) bench/dispatch.py
	$(PY) bench/fleet.py  # 64 simulated workers vs 1 and 2 PostgreSQL replicas and SQLite: about 3 min
	$(PY) bench/asr.py
	$(PY) bench/speakers.py  # the docs/speech.md figures: about 20 min on two idle cores
	$(PY) bench/embed.py
	$(PY) bench/supervisor_overhead.py
	$(PY) bench/doc_limits.py
	$(PY) bench/dashboard_queries.py
	$(PY) bench/search.py
	$(PY) bench/hybrid.py
	$(PY) bench/transfer.py  # upload/download vs SHA-256 speed, 512 MB: about a minute
	$(PY) bench/pipeline.py  # processors alone vs the whole system: about 10 min

# The fault campaign (docs/operations.md, Chaos campaign): real server and supervisor
# processes killed, cut off and starved of disk; not part of `make test` or `make bench`.
# CHAOS_ARGS='--trials 50' or '--kinds drain,sighup'; needs root for the full-disk kinds.
CHAOS_ARGS ?=
chaos: system-deps install
	$(PY) bench/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
