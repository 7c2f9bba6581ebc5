"""The web UI's files: hand-written pages in static/; vendor assets from npm (`make install` copies them
for a checkout, hatch_build.py packs them into the wheel)."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"
DOCS_HTML = STATIC_DIR / "docs.html"
FAVICON_SVG = STATIC_DIR / "favicon.svg"
#: Alpine.js, copied from node_modules at set-up time (never fetched from a CDN at run time).
VENDOR_DIR = STATIC_DIR / "vendor"

__all__ = ["DOCS_HTML", "FAVICON_SVG", "INDEX_HTML", "STATIC_DIR", "VENDOR_DIR"]
