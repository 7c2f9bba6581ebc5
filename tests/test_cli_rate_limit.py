"""`airdisplay serve --rate-limit-ipv6-prefix`: the IPv6 network a client's submits are counted by."""

from __future__ import annotations

import secrets

import httpx

from tests.conftest import free_port, spawn, stop, wait_ready

#: Random, as a server behind a proxy requires of an operator key.
OPERATOR_KEY = secrets.token_hex(32)
OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}


def test_the_option_sets_the_ipv6_network_a_client_is_counted_by(tmp_path):
    """A /48 instead of the default /64: two /64s of one /48 are one client. The server trusts the test as
    its proxy, so the requests carry the IPv6 client addresses a real proxy would forward."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn(
        *("--port", str(port), "--data-dir", str(tmp_path / "data"), "--forwarded-allow-ips", "127.0.0.1"),
        *("--submit-rate", "1", "--submit-burst", "1", "--rate-limit-ipv6-prefix", "48"),
        env={"AIRDISPLAY_OPERATOR_KEY": OPERATOR_KEY},
    )
    try:
        wait_ready(proc, url)
        codes = []
        for n, client in enumerate(["2001:db8:1:1::1", "2001:db8:1:2::1", "2001:db8:2:1::1"]):
            banner = {"id": f"v{n}", "name": "IPv6"}
            assert httpx.post(f"{url}/api/v1/banners", json=banner, headers=OPERATOR).status_code == 201
            submit = httpx.post(
                f"{url}/api/v1/banners/v{n}/message", json={"text": "hi"}, headers={"X-Forwarded-For": client}
            )
            codes.append(submit.status_code)
        assert codes == [201, 429, 201]
    finally:
        stop(proc)
