# locksmith — two commands matter: `make test` and `make demo` (README.md).
# Both set themselves up from nothing on a Debian machine with Python 3.11: apt packages when
# run as root, then a virtual environment with the pinned Python dependencies.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := .apt-installed
# Debian packages: the GnuPG and Sequoia interop oracles (gnupg, sq; procps for pkill); the
# smart-card test stack (pcscd, the vsmartcard-vpcd virtual reader, GnuPG's scdaemon); and what pip
# needs to compile pyscard, which has no Linux wheel (swig, libpcsclite-dev, gcc, pkg-config).
# `make image-test` builds the Containerfile with podman from Debian bases made by mmdebstrap.
APT_PACKAGES := gnupg sq procps pcscd vsmartcard-vpcd scdaemon libpcsclite-dev swig gcc pkg-config podman mmdebstrap
# pyscard also needs $(PYTHON)'s C headers, and the venv step its venv module: Debian's own python3
# (3.11 on Debian 12) has them in packages; another build of Python (pyenv's) brings both.
# Without any python3 yet, Debian's is installed (PYTHON is looked up again afterwards).
PYTHON_EXE = $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print(sys.executable)' 2>/dev/null))
PYTHON_APT_PACKAGES = $(if $(PYTHON),$(if $(filter /usr/bin/% /bin/%,$(PYTHON_EXE)),python3-dev python3-venv),python3 python3-dev python3-venv)
# `make install-cli` / `make install-cli-untrusted` (cli.md §9, install-cli.sh) install `caution` here.
CLI_INSTALL_DIR ?= $(HOME)/.local/bin
CLI_UNTRUSTED_INSTALL_DIR ?= $(HOME)/.local/bin

.PHONY: test demo build apt venv lint typecheck unit clean bench install-cli install-cli-untrusted

test: apt venv lint typecheck unit

unit: venv
	$(PY) -m pytest -q -n 2 --dist loadfile -m 'not image'

# Pyflakes-class mistakes only (unused or undefined names, redefinitions): no style opinions.
lint: venv
	$(PY) -m ruff check --select F locksmith tests

typecheck: venv
	$(PY) -m mypy

# build.sh sets up its own pinned build environment (README "The zipapp"): no venv needed.
build:
	PYTHON="$(PYTHON)" ./build.sh

# A full 2-of-3 quorum unlock on loopback with the real programs (demo/demo.sh says each step).
demo: apt venv build
	PYTHON=$(abspath $(PY)) bash demo/demo.sh dist/locksmith.pyz

# Speed and memory targets (bench/README.md): results in bench/results/<UTC timestamp>.json.
bench: venv build
	$(PY) bench/run.py

# System packages (APT_PACKAGES above). As root with apt, the missing ones are installed; otherwise
# the missing ones are named (dpkg), or on a system without dpkg the missing tools. The stamp
# depends on this Makefile so that a package added here is installed on the next run.
apt: $(APT_STAMP)
$(APT_STAMP): Makefile
	@packages="$(APT_PACKAGES) $(PYTHON_APT_PACKAGES)"; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    missing=""; for p in $$packages; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	    if [ -n "$$missing" ]; then \
	        echo "installing Debian packages:$$missing" >&2; \
	        export DEBIAN_FRONTEND=noninteractive; \
	        apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	    fi; \
	elif command -v dpkg >/dev/null; then \
	    missing=""; for p in $$packages; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	    if [ -n "$$missing" ]; then \
	        echo "missing Debian packages:$$missing (run make as root, or: sudo apt-get install$$missing)" >&2; exit 1; \
	    fi; \
	else \
	    missing=""; for t in gpg sq pkill pcscd scdaemon swig gcc pkg-config; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	    pkg-config --exists libpcsclite 2>/dev/null || missing="$$missing libpcsclite(headers)"; \
	    if [ -n "$$missing" ]; then \
	        echo "missing:$$missing (the Debian packages are: $$packages)" >&2; exit 1; \
	    fi; \
	fi
	@touch $@

venv: $(STAMP)
# After the apt step (order-only: a newer apt stamp alone does not reinstall the venv): pip compiles
# pyscard (the `card` extra) from source with the packages it installs.
$(STAMP): pyproject.toml constraints.txt | $(APT_STAMP)
	@test -n "$(PYTHON)" || { echo "python3.11 not found" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	    { echo "Python 3.11 is required for the development venv (constraints.txt pins its tools; the zipapp runs on 3.11-3.13); found $$($(PYTHON) --version)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,card]'
	@touch $@

# The holder CLI as `caution` (cli.md §9; README "Installing the holder CLI"). Neither needs the
# apt step or the venv: install-cli.sh checks what it needs and builds in a throw-away venv.
install-cli:
	@PYTHON="$(PYTHON)" ./install-cli.sh reproducible "$(CLI_INSTALL_DIR)"

install-cli-untrusted:
	@PYTHON="$(PYTHON)" ./install-cli.sh untrusted "$(CLI_UNTRUSTED_INSTALL_DIR)"

clean:
	rm -rf $(VENV) dist build *.egg-info $(APT_STAMP)

# The enclave images (Containerfile) built with podman from mmdebstrap bases and booted with chroot
# (tests/test_image.py; root only). Not part of `make test`: .ci/run runs both.
.PHONY: image-test
image-test: apt venv
	$(PY) -m pytest -q tests/test_image.py

# Long fuzzing of every parser (tests/fuzz; issue 10): `make test` runs the same suites at a small
# derandomised budget, this one draws FUZZ_EXAMPLES fresh random examples per test (failures are
# kept in .hypothesis/ and replayed first next time).
.PHONY: fuzz
FUZZ_EXAMPLES ?= 5000
fuzz: venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -n auto tests/fuzz

# Abuse run (bench/abuse.py; issue 10): a real locksmithd on 127.0.0.1 under garbage, slowloris,
# idle and oversize peers, replays, wrongly signed floods and a rogue holder while honest holders
# unlock; bounded (10 rounds, ~2 minutes), stops by itself. JSON result on stdout.
.PHONY: abuse
abuse: venv
	$(PY) bench/abuse.py
