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

.PHONY: demo test lint bench setup browser clean

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
	$(UV) run --frozen pytest -q --cov --cov-report=term:skip-covered

lint: setup
	$(UV) run --frozen ruff check .

# Each benchmark prints one JSON object; sizes here are the issues' headline sizes.
bench: setup
	$(UV) run --frozen python -m benchmarks generate --residents 100000
	$(UV) run --frozen python -m benchmarks validate
	$(UV) run --frozen python -m benchmarks pseudonymise
	$(UV) run --frozen python -m benchmarks link
	$(UV) run --frozen python -m benchmarks anonymise

clean:
	rm -rf .venv data
