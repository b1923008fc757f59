# locksmith — two commands matter: `make test` and `make demo` (README.md).
# Both set themselves up from nothing on a Debian machine with Python 3.11: apt packages when
# run as root, then a virtual environment with the pinned Python dependencies.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := .apt-installed
APT_PACKAGES := gnupg sq procps

.PHONY: test demo build apt venv lint typecheck unit clean bench

test: apt venv lint typecheck unit

unit: venv
	$(PY) -m pytest -q -n 2 --dist loadfile

# Pyflakes-class mistakes only (unused or undefined names, redefinitions): no style opinions.
lint: venv
	$(PY) -m ruff check --select F locksmith tests

typecheck: venv
	$(PY) -m mypy

build: venv
	./build.sh

# A full 2-of-3 quorum unlock on loopback with the real programs (demo/demo.sh says each step).
demo: apt venv build
	PYTHON=$(abspath $(PY)) bash demo/demo.sh dist/locksmith.pyz

# Speed and memory targets (bench/README.md): results in bench/results/<UTC timestamp>.json.
bench: venv build
	$(PY) bench/run.py

# System packages: the GnuPG and Sequoia interop oracles. Installed only when we are root and
# apt exists; otherwise we check that the tools are there and say what is missing.
apt: $(APT_STAMP)
$(APT_STAMP):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	    if [ -n "$$missing" ]; then \
	        export DEBIAN_FRONTEND=noninteractive; \
	        apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	    fi; \
	else \
	    for t in gpg sq pkill; do command -v $$t >/dev/null || { echo "missing $$t: install Debian packages: $(APT_PACKAGES)" >&2; exit 1; }; done; \
	fi
	@touch $@

venv: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "python3.11 not found" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	    { echo "Python 3.11 is required (PGPy does not import on 3.13); found $$($(PYTHON) --version)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

clean:
	rm -rf $(VENV) dist build *.egg-info $(APT_STAMP)
