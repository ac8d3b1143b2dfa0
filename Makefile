# rke2ha: `make demo` brings up the local lab and verifies it; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make demo` needs the package and its runtime dependencies only; `make test`,
# `make lint` and `make bench` add the development extras (pytest, moto, mypy, ruff, stubs).
RUNTIME := $(VENV)/.runtime-stamp
DEV := $(VENV)/.dev-stamp
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
PIP_LOG := $(VENV)/pip.log
# uv (https://docs.astral.sh/uv/) resolves and installs the runtime dependencies in ~1.5 s
# where pip takes ~15 s (most of it walking boto3's and botocore's release pages). It is
# pip-installed into the venv itself. uv does not read pip's configuration
# (https://docs.astral.sh/uv/pip/compatibility/), so pip keeps the job when pip has an
# index-url of its own (a mirror instead of PyPI), and when uv cannot be installed or fails.
INSTALL = { test -x $(BIN)/uv && $(BIN)/uv pip install -q --python $(BIN)/python $(1) >>$(PIP_LOG) 2>&1; } || \
	  { test ! -x $(BIN)/uv || echo "make: uv failed (log: $(PIP_LOG)); installing with pip instead (slower)"; \
	    $(PIP) $(1) >>$(PIP_LOG) 2>&1; } || { tail -n 20 $(PIP_LOG); exit 1; }

.PHONY: venv system-deps test demo bench lint spec-reference clean

venv: $(DEV)

# Reinstall only when pyproject.toml changed; the package itself is installed editable.
# pip's output goes to $(PIP_LOG), shown only when it fails.
$(RUNTIME): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "make: rke2ha needs Python >= 3.11 as '$(PYTHON)' (apt-get install python3, or make PYTHON=python3.11 ...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
	  { echo "make: '$(PYTHON)' cannot create a virtualenv: apt-get install python3-venv"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing rke2ha and its runtime dependencies into $(VENV) (log: $(PIP_LOG))"
	@if [ -x $(BIN)/uv ]; then :; \
	elif $(BIN)/python -m pip config list 2>/dev/null | grep -Eq '\.index-url='; then \
	  echo "make: pip has an index-url of its own, which uv would not read: pip installs (slower)"; \
	elif ! $(PIP) uv >$(PIP_LOG) 2>&1; then \
	  echo "make: could not install uv into $(VENV); pip installs instead (slower)"; fi
	@$(call INSTALL,-e .)
	@# git keeps modes 0644/0755 only: the examples' secrets are made 0600, as rke2ha requires.
	@chmod 600 examples/secrets/tsig.secret examples/certs/*.key 2>/dev/null || true
	@touch $@

$(DEV): $(RUNTIME)
	@echo "installing the test and lint tools into $(VENV) (log: $(PIP_LOG))"
	@$(call INSTALL,-e '.[dev]')
	@touch $@

system-deps:
	@scripts/system-deps.sh

test: $(DEV) system-deps
	@scripts/test.sh

demo: $(RUNTIME)
	@scripts/demo.sh

bench: $(DEV) system-deps
	$(BIN)/python -m bench

lint: $(DEV)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# docs/spec-reference.md from the spec's models (a test fails when the two differ).
spec-reference: $(RUNTIME)
	$(BIN)/python -m rke2ha.specdoc

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
