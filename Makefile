# The README's two commands: `make demo` and `make test`. Both set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
# uv is run as a module so that a copy installed with `pip --user` works without PATH changes.
UV := $(PYTHON) -m uv
export UV_PYTHON_DOWNLOADS := never
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false

.PHONY: demo test lint bench setup browser clean work-pool deploy

setup: .venv/.synced

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --user uv \
		|| $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

demo: setup
	$(UV) run --frozen cohortshare demo

# The anonymisation report is tested in a real browser: Debian's chromium, installed when
# missing (as root, or with passwordless sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(UV) run --frozen pytest -q

lint: setup
	$(UV) run --frozen ruff check .

# Each benchmark prints one JSON object; sizes here are the issues' headline sizes.
bench: setup
	$(UV) run --frozen python -m benchmarks generate --residents 100000
	$(UV) run --frozen python -m benchmarks validate
	$(UV) run --frozen python -m benchmarks pseudonymise
	$(UV) run --frozen python -m benchmarks link
	$(UV) run --frozen python -m benchmarks anonymise
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
