# One entry point per task. Each target installs what it needs first, so a fresh machine needs only
# Python 3.11+ with pip (uv is bootstrapped from PyPI into ~/.local).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install run test lint bench clean dapr

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

# Dapr's daprd, placement and scheduler, built from its Go module once per version into a cache
# (deploy/dapr/build/build.sh); the real-daprd tests and `airdisplay dapr local` use them.
dapr:
	bash deploy/dapr/build/build.sh

run: install
	$(UV) run airdisplay serve $(ARGS)

# The real-daprd tests need Dapr's binaries: built here when Go is installed (instant once cached); without
# Go they skip and say why (in CI, where CI=true, they fail instead).
test: install
	bash deploy/dapr/build/build.sh --if-go
	$(UV) run pytest $(PYTEST_ARGS)

lint: install
	$(UV) run ruff check src tests bench
	$(UV) run ruff format --check src tests bench
	$(UV) run mypy

# The benchmark suite (bench/README.md): every scenario, each waiting for a quiet machine, then the report
# docs/benchmarks/README.md with its charts. BENCH_ARGS go to bench/report.py, e.g. BENCH_ARGS="--no-wait".
bench: install
	$(UV) run python bench/report.py $(BENCH_ARGS)

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache data
