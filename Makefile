# One entry point per task. Each target installs what it needs first, so a fresh machine needs only
# Python 3.11+ with pip (uv is bootstrapped from PyPI into ~/.local).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install run test lint bench clean

$(UV):
	python3 -m pip install --user --quiet uv

# The web UI's Alpine.js comes from npm (exact version in package-lock.json) and is served from our own
# origin: the page never loads anything from a CDN.
ALPINE_DIST := node_modules/@alpinejs/csp/dist/cdn.min.js
ALPINE_VENDOR := src/airdisplay/web/static/vendor/alpine-csp.min.js

install: $(UV)
	$(UV) sync --frozen
	npm ci --no-audit --no-fund
	mkdir -p $(dir $(ALPINE_VENDOR))
	cp $(ALPINE_DIST) $(ALPINE_VENDOR)
	cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css \
		$(dir $(ALPINE_VENDOR))

run: install
	$(UV) run airdisplay serve $(ARGS)

test: install
	$(UV) run pytest $(PYTEST_ARGS)

lint: install
	$(UV) run ruff check src tests bench
	$(UV) run ruff format --check src tests bench
	$(UV) run mypy

# The core benchmarks (bench/README.md); each waits for a quiet machine and prints Markdown tables.
bench: install
	$(UV) run python bench/submit_vs_bare.py
	$(UV) run python bench/registered_memory.py
	$(UV) run python bench/expiries.py
	$(UV) run python bench/fanout.py
	$(UV) run python bench/devices.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache data
