"""Build hook: the package carries its web page's npm assets, or the build fails saying how to get them.

The page's Alpine.js and the API docs' Swagger UI come from npm (exact versions in package-lock.json) and
are served from the package itself, never from a CDN. In a checkout they are in node_modules after
`npm ci` (`make install` runs it); an sdist carries them under src/, where a wheel built from it finds them.
The editable install of the checkout serves src/airdisplay/web/static/vendor/, where `make install` copies
the same files, so it needs nothing from here (and `uv sync` runs before `npm ci` on a fresh clone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: npm's file -> its name in the package's vendor/ directory; the Makefile's `install` copies the same.
VENDOR_ASSETS = {
    "node_modules/@alpinejs/csp/dist/cdn.min.js": "alpine-csp.min.js",
    "node_modules/swagger-ui-dist/swagger-ui-bundle.js": "swagger-ui-bundle.js",
    "node_modules/swagger-ui-dist/swagger-ui.css": "swagger-ui.css",
}
VENDOR_DIR = "src/airdisplay/web/static/vendor"


class VendorAssetsHook(BuildHookInterface):
    """Force-includes the vendor assets into the sdist (under src/) and the wheel (in the package)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            return
        root = Path(self.root)
        missing = []
        for npm_file, name in VENDOR_ASSETS.items():
            packaged = f"{VENDOR_DIR}/{name}"
            # npm's copy first, so a checkout never packages a stale copy left in src/ by an older install.
            source = next((root / path for path in (npm_file, packaged) if (root / path).is_file()), None)
            if source is None:
                missing.append(npm_file)
                continue
            target = packaged if self.target_name == "sdist" else packaged.removeprefix("src/")
            build_data["force_include"][str(source)] = target
        if missing:
            raise FileNotFoundError(
                f"the web page's assets are missing ({', '.join(missing)}): run `npm ci` (or `make install`)"
                " in the checkout before building, or the package would serve a blank page"
            )
