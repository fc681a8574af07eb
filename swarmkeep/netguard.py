"""The SSRF guard for outbound requests (callbacks, fetches): http(s) to public addresses on allowed ports only,
unless allow-listed.

The name is resolved once, every address it resolves to is checked, and the request is then sent to the checked
address itself (with the original Host header and TLS server name), so DNS rebinding cannot swap in another.
An allow-list entry is a host name, an address or a network (CIDR), optionally with a port (`host:port`,
`[v6]:port`, `10.0.0.0/8:8080`): without a port it opens every port of that host, with one only that port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
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
# Ports public destinations may use unless an allow-list entry opens another: web ports, and the 8000-9999 range
# where webhook receivers (n8n's 5678 aside) usually listen.
DEFAULT_PORTS = ("80", "443", "8000-9999")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")


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

    @property
    def host_header(self) -> str:
        """The Host header for the original URL: IPv6 literals in brackets, the port unless the scheme's own."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if urlsplit(self.url).scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def why_not_public(address: IPAddress) -> str | None:
    """Why an address is not a public unicast address, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            reason = why_not_public(mapped)
            return f"it embeds the IPv4 address {mapped}, and {reason}" if reason else None
        if address in ipaddress.ip_network("fc00::/7"):
            return "it is an IPv6 unique-local address"
        if address in SITE_LOCAL:
            return "it is a deprecated IPv6 site-local address (fec0::/10)"
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


def parse_ports(spec: Iterable[str | int]) -> list[tuple[int, int]]:
    """Port ranges from entries like 443 or "8000-9999"; raise ValueError for anything else."""
    ranges = []
    for entry in spec:
        low, _, high = str(entry).strip().partition("-")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"{entry!r} is not a port or a port range (1-65535)")
        ranges.append((first, last))
    return ranges


def split_allow_entry(entry: str) -> tuple[str, int | None]:
    """An allow-list entry's host (name, address or network) and port, if it names one."""
    entry = entry.strip().lower()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = entry.rpartition(":")
    if sep and host and ":" not in host and port.isdigit():
        return host, int(port)
    return entry, None


def _allowed(host: str, address: IPAddress, port: int, allow: Sequence[str]) -> bool:
    for entry in allow:
        name, entry_port = split_allow_entry(entry)
        if not name or (entry_port is not None and entry_port != port):
            continue
        if name == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(name, strict=False):
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


async def resolve_safe(url: str, allow: Sequence[str] = (), ports: Iterable[str | int] = DEFAULT_PORTS) -> SafeTarget:
    """Resolve and check a URL; the result says which address to connect to."""
    _, host, port = check_url_syntax(url)
    port_ranges = parse_ports(ports)
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
        except UnicodeError as error:  # a label over 63 characters, or not encodable as IDNA
            raise UnsafeURLError(f"callback host {host!r} is not a valid host name ({error})") from error
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        if address in METADATA_ADDRESSES:
            raise UnsafeURLError(f"callback URL {url!r} resolves to {address}: it is a cloud metadata address")
        if _allowed(host, address, port, allow):
            continue
        reason = why_not_public(address)
        if reason:
            raise UnsafeURLError(
                f"callback URL {url!r} resolves to {address}: {reason}. Callbacks go to public addresses only; "
                "to allow this host for local use, add it to SWARMKEEP_CALLBACK_ALLOW."
            )
        if not any(first <= port <= last for first, last in port_ranges):
            shown = ", ".join(str(entry) for entry in ports)
            raise UnsafeURLError(
                f"callback URL {url!r} uses port {port}, which outbound requests may not use (allowed: {shown}). "
                "Add the port to SWARMKEEP_OUTBOUND_PORTS, or allow host:port in SWARMKEEP_CALLBACK_ALLOW."
            )
    return SafeTarget(url=url, host=host, address=addresses[0], port=port)
