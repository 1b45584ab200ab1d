"""Which address a request comes from: the peer, or what a trusted proxy says it forwarded.

`X-Forwarded-For` is only a claim. Anyone can send one, so it is believed only
when the direct peer (the TCP connection's other end) is one of the
`TRUSTED_PROXIES`; none is trusted by default. The header is read from the right
(each proxy appends the address it received the request from): trusted proxies
are skipped and the first address that is not one is the client. A value that
is not an IP address makes the whole header unbelievable, and the peer is used.

The answer replaces the ASGI scope's `client`, so the rate limiter's buckets and
the access log's `client` both follow this rule (uvicorn's own proxy-header
handling is switched off in `app/__main__.py`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

HEADER = b"x-forwarded-for"


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """IPs and CIDRs (`10.0.0.1`, `10.0.0.0/8`, `::1`) as networks; ValueError names a bad one."""
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"must be a comma-separated list of IP addresses or CIDR networks,"
                f" and {value.strip()!r} is neither"
            ) from None
    return tuple(networks)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddress:
    """Resolves a request's client address from its peer and `X-Forwarded-For`."""

    def __init__(self, trusted: Iterable[Network]) -> None:
        self.trusted = tuple(trusted)

    def is_trusted(self, host: str) -> bool:
        """Whether `host` (an address as text) lies in one of the trusted networks."""
        address = _ip(host)
        return address is not None and any(address in network for network in self.trusted)

    def forwarded_client(self, peer: str, forwarded: list[bytes]) -> str | None:
        """The client a trusted `peer` forwarded for, or None to keep the peer.

        `forwarded` holds every `X-Forwarded-For` value of the request, in order.
        """
        if not self.trusted or not forwarded or not self.is_trusted(peer):
            return None
        try:
            hops = [hop.strip() for hop in b",".join(forwarded).decode("ascii").split(",")]
        except UnicodeDecodeError:
            return None
        addresses = [_ip(hop) for hop in hops]
        if any(address is None for address in addresses):
            return None  # one forged or garbled hop: none of the chain can be believed
        for address in reversed(addresses):
            if not any(address in network for network in self.trusted):
                return str(address)
        return str(addresses[0])  # every hop is a trusted proxy: the first one sent it

    def resolve(self, scope: Any) -> None:
        """Put the forwarded client into `scope["client"]` when the peer may say so."""
        if not self.trusted:
            return
        client = scope.get("client")
        if not client:
            return
        forwarded = [value for name, value in scope["headers"] if name == HEADER]
        host = self.forwarded_client(client[0], forwarded)
        if host is not None:
            scope["client"] = (host, 0)
