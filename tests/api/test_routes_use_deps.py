"""Routes get the app's parts (settings, runtime, hub, device links, access) through the dependency aliases
of api/deps.py, never from `app.state` themselves: read from the source, so it stays true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import airdisplay.api.routes

ROUTES = sorted(Path(airdisplay.api.routes.__file__).parent.glob("*.py"))


def _app_state_uses(source: str) -> list[int]:
    """Lines that read `<anything>.app.state` or `app.state`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "state":
            owner = node.value
            if (isinstance(owner, ast.Attribute) and owner.attr == "app") or (
                isinstance(owner, ast.Name) and owner.id == "app"
            ):
                lines.append(node.lineno)
    return sorted(lines)


def test_the_check_finds_app_state_however_it_is_reached():
    found = _app_state_uses(
        "a = request.app.state.hub\nb = websocket.app.state\napp = x\nc = app.state.settings\n"
    )
    assert found == [1, 2, 4]
    assert _app_state_uses("state = 1\nd = link.state\ne = self.app_state\n") == []


@pytest.mark.parametrize("module", ROUTES, ids=lambda path: path.name)
def test_route_modules_use_the_dependency_aliases_not_app_state(module: Path):
    assert len(ROUTES) > 5  # the glob found the route modules
    lines = _app_state_uses(module.read_text())
    assert not lines, f"{module.name} reads app.state on lines {lines}: use an alias of api/deps.py instead"
