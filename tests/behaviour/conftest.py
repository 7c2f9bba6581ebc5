"""The runtimes every behaviour test runs on (test_banner_behaviour.py says what each is)."""

from __future__ import annotations

import pytest

RUNTIMES = ["embedded", "dapr", "dapr-real"]


@pytest.fixture(params=RUNTIMES)
def start_service(request, start_server):
    """Start a server on the parametrized runtime."""

    async def start(**settings):
        return await start_server(runtime=request.param, **settings)

    return start


@pytest.fixture
async def service(start_service):
    return await start_service(message_seconds=60)
