"""Whose address a request carries: the peer's, unless a trusted proxy forwarded it."""

from __future__ import annotations

import pytest

from app.transport.proxies import ClientAddress, parse_networks

PROXIES = ClientAddress(parse_networks(["10.0.0.0/8", "127.0.0.1", "::1"]))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.5", [b"198.51.100.1"], None),  # an untrusted peer says nothing
        ("127.0.0.1", [b"198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", [b"198.51.100.1, 10.2.3.4"], "198.51.100.1"),  # trusted hops skipped
        ("127.0.0.1", [b"6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # right-most untrusted
        ("127.0.0.1", [b"6.6.6.6", b"198.51.100.1"], "198.51.100.1"),  # two header lines
        ("127.0.0.1", [b"10.9.9.9, 10.1.1.1"], "10.9.9.9"),  # all trusted: the first
        ("::1", [b"2001:db8::7"], "2001:db8::7"),
        ("127.0.0.1", [b"::ffff:198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", [b"not-an-ip"], None),  # garbage: the whole header is ignored
        ("127.0.0.1", [b"198.51.100.1, <script>"], None),
        ("127.0.0.1", [b"198.51.100.1:443"], None),
        ("127.0.0.1", [b""], None),
        ("127.0.0.1", [b"\xff\xfe"], None),
        ("127.0.0.1", [], None),
        ("testclient", [b"198.51.100.1"], None),  # a peer that is no address
    ],
)
def test_forwarded_client(peer: str, forwarded: list[bytes], client: str | None) -> None:
    assert PROXIES.forwarded_client(peer, forwarded) == client


def test_nobody_is_trusted_by_default() -> None:
    scope = {"client": ("127.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"1.2.3.4")]}
    ClientAddress(()).resolve(scope)
    assert scope["client"] == ("127.0.0.1", 5000)
    PROXIES.resolve(scope)
    assert scope["client"] == ("1.2.3.4", 0)


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is neither"):
        parse_networks(["10.0.0.1", "10.0.0.300"])
