# The README's two commands: `make demo` and `make test`. Both set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
# The interpreter behind any active virtual environment (`python3` may be a venv's, even
# .venv's): the project's environment is built from it, and a uv installed with `pip --user`
# lives in its user site, which no virtual environment sees.
BASE_PYTHON := $(shell $(PYTHON) -c 'import sys; print(getattr(sys, "_base_executable", "") or sys.executable)')
# uv from PATH when there is one; otherwise as a module of that interpreter (`make setup`
# installs it with pip when missing), so a copy installed with `pip --user` works without PATH
# changes.
UV := $(shell command -v uv 2>/dev/null || echo "$(BASE_PYTHON) -m uv")
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON := $(BASE_PYTHON)
# uv works in the project's .venv whatever environment is active (it would only warn).
unexport VIRTUAL_ENV
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
# Prefect's ephemeral server gets 20 s to start by default, which a busy machine (CI, a shared
# 2-core box) overruns: `RuntimeError: Timed out while attempting to connect to ephemeral
# Prefect API server`. Give it two minutes (docs/architecture.md, Traps).
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: demo test lint bench setup uv browser clean axe-core work-pool deploy

setup: uv .venv/.synced

# uv is checked on every run, not only when the environment is built: a uv installed with
# `pip --user` belongs to one HOME, and the same checkout may be used from another.
uv:
	@$(UV) --version >/dev/null 2>&1 || $(BASE_PYTHON) -m pip install --quiet --user uv \
		|| $(BASE_PYTHON) -m pip install --quiet --user --break-system-packages uv \
		|| $(BASE_PYTHON) -m pip install --quiet uv

.venv/.synced: pyproject.toml uv.lock | uv
	$(UV) sync --frozen
	@touch $@

demo: setup
	$(UV) run --frozen cohortshare demo

# The anonymisation report is tested in a real browser: Debian's chromium, and poppler-utils
# (pdfinfo) to count the pages it prints, installed when missing (as root, or with
# passwordless sudo).
browser:
	@{ command -v chromium && command -v pdfinfo; } >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium poppler-utils \
			>/dev/null; }

# axe-core checks the residents' notice in Chromium. It is vendored (MPL-2.0) so that tests never
# download; this refreshes it from npm: `make axe-core AXE_VERSION=x.y.z`.
AXE_VERSION ?= 4.14.1
axe-core:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && \
		tar xzf axe-core-$(AXE_VERSION).tgz && \
		cp package/axe.min.js package/LICENSE $(CURDIR)/tests/accessibility/axe-core/ && \
		sha256sum $(CURDIR)/tests/accessibility/axe-core/axe.min.js && rm -rf $$tmp

# Two pytest-xdist workers, one per core of the CI machine: the serial suite keeps one core busy
# and the other idle. `loadfile` keeps each test file on one worker, so a module's fixture (a
# whole demo council run, a Prefect server) is built once; each worker has its own Prefect test
# server and PREFECT_HOME (tests/conftest.py). pytest-cov combines the workers' coverage.
test: setup browser
	$(UV) run --frozen pytest -q -n 2 --dist loadfile --cov --cov-report=term:skip-covered

lint: setup
	$(UV) run --frozen ruff check .

# Each benchmark prints one JSON object; sizes here are the issues' headline sizes.
bench: setup
	$(UV) run --frozen python -m benchmarks generate --residents 100000
	$(UV) run --frozen python -m benchmarks validate
	$(UV) run --frozen python -m benchmarks pseudonymise
	$(UV) run --frozen python -m benchmarks link
	$(UV) run --frozen python -m benchmarks anonymise
	$(UV) run --frozen python -m benchmarks release --residents 2000000
	$(UV) run --frozen python -m benchmarks end_to_end --rows 1000000

# Prefect deployments (docs/operations.md). The work pool once per server; then deploy from a
# clean checkout: workers clone COHORTSHARE_REPOSITORY (default: this checkout's origin) at the
# commit deployed, so uncommitted changes would never run.
work-pool: setup
	$(UV) run --frozen prefect work-pool create council-data-pool --type process

deploy: setup
	@git diff --quiet HEAD && test -z "$$(git status --porcelain)" || { \
		echo "deploy: commit or stash your changes first (workers run the deployed commit)" >&2; \
		exit 1; }
	COHORTSHARE_REPOSITORY=$${COHORTSHARE_REPOSITORY:-$$(git remote get-url origin 2>/dev/null || pwd)} \
	COHORTSHARE_COMMIT=$$(git rev-parse HEAD) \
	$(UV) run --frozen prefect --no-prompt deploy --all

clean:
	rm -rf .venv data
