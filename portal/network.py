"""The client's address: the socket peer, or, behind reverse proxies listed in ``TRUSTED_PROXIES``, the address the
nearest trusted proxy saw (docs/design.md, "The client's address").

Every place that reads an address (conditional access at token issuance, the sign-in log, per-address rate limits,
login throttling, runs) calls ``client_ip`` instead of reading ``REMOTE_ADDR`` or ``X-Forwarded-For`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[Network, ...]:
    """``TRUSTED_PROXIES`` entries (addresses or CIDR networks, IPv4 or IPv6) as networks; a bad entry stops the
    process at start-up rather than quietly trusting nothing, or everything."""
    networks = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError as error:
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES: {entry!r} is not an IP address or network ({error}). Give comma-separated "
                "addresses or CIDR networks, e.g. TRUSTED_PROXIES=10.0.0.5,2001:db8::/64") from None
    return tuple(networks)


def _address(text: str | None) -> Address | None:
    """An address as written by a proxy or the server, or None when it is not one (garbage stops a walk)."""
    try:
        address = ip_address((text or "").strip())
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; compare and record them as the IPv4 they are.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: tuple[Network, ...]) -> bool:
    return any(address in network for network in proxies)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, or None when the server gave none.

    The socket peer (``REMOTE_ADDR``) is the answer unless it is a trusted proxy. Then ``X-Forwarded-For`` is read
    from the right: each trusted hop's entry names who connected to it, so the walk skips trusted hops and stops at
    the first address that is not one (the rightmost untrusted: everything left of it was written by the client and
    may be forged). A malformed entry ends the walk at the last trusted hop, which is then the answer. A peer that is
    not a trusted proxy cannot set the address by sending the header: it is never read.
    """
    peer = _address(request.META.get("REMOTE_ADDR"))
    proxies = settings.TRUSTED_PROXIES
    if peer is None or not proxies or not _trusted(peer, proxies):
        return None if peer is None else str(peer)
    nearest = peer
    for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        hop = _address(entry)
        if hop is None:
            break
        nearest = hop
        if not _trusted(hop, proxies):
            break
    return str(nearest)


def is_loopback_host(hostname: str | None) -> bool:
    """Whether a URL's host is this machine: ``localhost`` or a loopback address (127.0.0.0/8, ``::1``; an IPv6
    literal's brackets are ignored). The one test behind every "plain http only on loopback" rule (client
    registration, client metadata documents, resource servers, manifests, federated issuers)."""
    host = (hostname or "").lower().strip("[]")
    if host == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback
