# One entry point per task. Each target installs what it needs first, so a fresh machine needs only
# Python 3.11+ with pip, Node.js with npm, and make (uv is bootstrapped from PyPI into ~/.local/bin).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
export UV_PYTHON_DOWNLOADS := never

.PHONY: install runtime assets run test lint bench clean dapr

# Debian's and Ubuntu's Python refuse `pip install --user` (PEP 668, "externally managed"); uv is one
# self-contained program in ~/.local/bin that replaces no system package, so the refusal does not apply.
$(UV):
	PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --user --quiet uv

# The web page's Alpine.js and the API docs' Swagger UI come from npm (exact versions in package-lock.json)
# and are served from our own origin: the page never loads anything from a CDN. npm runs again only when
# the lock changes; the editable install serves the copies in vendor/, a built package carries them
# straight from node_modules (hatch_build.py, which names the same three files).
VENDOR := src/airdisplay/web/static/vendor
NPM_INSTALLED := node_modules/.package-lock.json

# --ignore-scripts: we take three static files; swagger-ui-dist's dependency @scarf/scarf would otherwise
# report the install to its vendor from a postinstall script.
$(NPM_INSTALLED): package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts

$(VENDOR)/alpine-csp.min.js: $(NPM_INSTALLED)
	mkdir -p $(@D) && cp node_modules/@alpinejs/csp/dist/cdn.min.js $@

$(VENDOR)/swagger-%: $(NPM_INSTALLED)
	mkdir -p $(@D) && cp node_modules/swagger-ui-dist/swagger-$* $@

assets: $(VENDOR)/alpine-csp.min.js $(VENDOR)/swagger-ui-bundle.js $(VENDOR)/swagger-ui.css

# Everything: the runtime and the dev toolchain (pytest, ruff, mypy, Playwright, matplotlib), as locked.
install: $(UV) assets
	$(UV) sync --frozen

# Only what serving needs. --inexact keeps the dev toolchain when `make install` put it there, so switching
# between `make run` and `make test` reinstalls nothing.
runtime: $(UV) assets
	$(UV) sync --frozen --no-dev --inexact

# Dapr's daprd, placement and scheduler, built from its Go module once per version into a cache
# (deploy/dapr/build/build.sh); the real-daprd tests and `airdisplay dapr local` use them.
dapr:
	bash deploy/dapr/build/build.sh

# .venv/bin, not `uv run`: that would sync the dev group back in first.
run: runtime
	.venv/bin/airdisplay serve $(ARGS)

# The real-daprd tests need Dapr's binaries: built here when Go is installed (instant once cached); without
# Go they skip and say why (in CI, where CI=true, they fail instead).
test: install
	bash deploy/dapr/build/build.sh --if-go
	$(UV) run pytest $(PYTEST_ARGS)

lint: install
	$(UV) run ruff check src tests bench hatch_build.py
	$(UV) run ruff format --check src tests bench hatch_build.py
	$(UV) run mypy

# The benchmark suite (bench/README.md): every scenario, each waiting for a quiet machine, then the report
# docs/benchmarks/README.md with its charts. BENCH_ARGS go to bench/report.py, e.g. BENCH_ARGS="--no-wait".
bench: install
	$(UV) run python bench/report.py $(BENCH_ARGS)

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache data
