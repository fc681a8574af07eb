"""The SSRF guard for outbound requests (callbacks): http(s) to public addresses only, unless allow-listed.

The name is resolved once, every address it resolves to is checked, and the request is then sent to the checked
address itself (with the original Host header and TLS server name), so DNS rebinding cannot swap in another.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services, refused even if someone allow-lists their network by mistake.
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}
METADATA_NAMES = {"metadata.google.internal", "metadata", "instance-data"}


class UnsafeURLError(ValueError):
    """A URL swarmkeep will not send requests to; the message says why and how to allow it."""


@dataclass(frozen=True)
class SafeTarget:
    """A checked URL and the address to connect to."""

    url: str
    host: str
    address: IPAddress
    port: int

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = f"{host}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def why_not_public(address: IPAddress) -> str | None:
    """Why an address is not a public unicast address, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            reason = why_not_public(mapped)
            return f"it embeds the IPv4 address {mapped}, and {reason}" if reason else None
        if address in ipaddress.ip_network("fc00::/7"):
            return "it is an IPv6 unique-local address"
    if address in METADATA_ADDRESSES:
        return "it is a cloud metadata address"
    checks = [
        (address.is_loopback, "it is a loopback address"),
        (address.is_link_local, "it is a link-local address"),
        (address.is_multicast, "it is a multicast address"),
        (address.is_unspecified, "it is the unspecified address"),
        (address in ipaddress.ip_network("100.64.0.0/10"), "it is a carrier-grade NAT (CGNAT) address"),
        (address.is_private, "it is a private address"),
        (address.is_reserved, "it is a reserved address"),
        (not address.is_global, "it is not a public address"),
    ]
    return next((reason for failed, reason in checks if failed), None)


def _allowed(host: str, address: IPAddress, allow: Sequence[str]) -> bool:
    for entry in allow:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def check_url_syntax(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; raise UnsafeURLError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeURLError(f"callback URL {url!r} must use http or https")
    if not parts.hostname:
        raise UnsafeURLError(f"callback URL {url!r} has no host")
    if parts.username or parts.password:
        raise UnsafeURLError(f"callback URL {url!r} must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise UnsafeURLError(f"callback URL {url!r} has an invalid port") from error
    return parts.scheme, parts.hostname, port


async def resolve_safe(url: str, allow: Sequence[str] = ()) -> SafeTarget:
    """Resolve and check a URL; the result says which address to connect to."""
    _, host, port = check_url_syntax(url)
    if host.lower().rstrip(".") in METADATA_NAMES:
        raise UnsafeURLError(f"callback URL {url!r} points at a cloud metadata service")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise UnsafeURLError(f"callback host {host!r} does not resolve ({error.strerror})") from error
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        if address in METADATA_ADDRESSES:
            raise UnsafeURLError(f"callback URL {url!r} resolves to {address}: it is a cloud metadata address")
        reason = why_not_public(address)
        if reason and not _allowed(host, address, allow):
            raise UnsafeURLError(
                f"callback URL {url!r} resolves to {address}: {reason}. Callbacks go to public addresses only; "
                "to allow this host for local use, add it to SWARMKEEP_CALLBACK_ALLOW."
            )
    return SafeTarget(url=url, host=host, address=addresses[0], port=port)
