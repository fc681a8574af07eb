"""The SSRF guard refuses internal addresses, by literal or by name, unless allow-listed."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from swarmkeep.netguard import UnsafeURLError, parse_ports, resolve_safe


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "embeds the IPv4 address 127.0.0.1"),
        ("http://[fd12::1]/hook", "unique-local"),
        ("http://100.64.1.1/hook", "CGNAT"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://192.168.1.10/hook", "private"),
        ("http://localhost:9000/hook", "loopback"),
        ("http://metadata.google.internal/computeMetadata", "metadata"),
        ("ftp://example.com/hook", "http or https"),
        ("http://user:pw@example.com/hook", "credentials"),
        ("http:///nohost", "no host"),
    ],
)
async def test_internal_targets_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURLError, match=reason):
        await resolve_safe(url)


async def test_public_literal_is_allowed_and_pinned() -> None:
    target = await resolve_safe("https://93.184.215.14/hooks/x?y=1")
    assert target.pinned_url == "https://93.184.215.14:443/hooks/x?y=1"


async def test_allow_list_opens_named_hosts_and_networks() -> None:
    assert (await resolve_safe("http://localhost:9000/h", ["localhost"])).address.is_loopback
    assert str((await resolve_safe("http://10.1.2.3/h", ["10.0.0.0/8"])).address) == "10.1.2.3"
    pinned = (await resolve_safe("http://[::1]:81/h", ["::1"])).pinned_url
    assert pinned == "http://[::1]:81/h"
    with pytest.raises(UnsafeURLError, match="metadata"):
        await resolve_safe("http://169.254.169.254/", ["169.254.0.0/16"])


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://1.1.1.1:25/", False),  # SMTP: not a port outbound requests may use
        ("http://1.1.1.1:6379/", False),
        ("http://1.1.1.1/", True),
        ("https://1.1.1.1/", True),
        ("http://1.1.1.1:8080/hook", True),
        ("https://1.1.1.1:9999/hook", True),
        ("https://1.1.1.1:10000/hook", False),
    ],
)
async def test_public_addresses_only_on_allowed_ports(url: str, allowed: bool) -> None:
    if allowed:
        assert (await resolve_safe(url)).port == (urlsplit(url).port or (443 if url.startswith("https") else 80))
    else:
        with pytest.raises(UnsafeURLError, match="SWARMKEEP_OUTBOUND_PORTS"):
            await resolve_safe(url)


async def test_the_port_setting_replaces_the_defaults() -> None:
    assert (await resolve_safe("http://1.1.1.1:25/", ports=["25"])).port == 25
    with pytest.raises(UnsafeURLError, match="port 443"):
        await resolve_safe("https://1.1.1.1/", ports=["80"])
    with pytest.raises(ValueError, match="port range"):
        parse_ports(["0-70000"])


async def test_deprecated_site_local_ipv6_is_refused() -> None:
    with pytest.raises(UnsafeURLError, match="site-local"):
        await resolve_safe("http://[fec0::1]/hook")
    with pytest.raises(UnsafeURLError, match="site-local"):
        await resolve_safe("http://[feff:ffff::1]/hook")


@pytest.mark.parametrize(
    ("entry", "url", "allowed"),
    [
        ("127.0.0.1:9000", "http://127.0.0.1:9000/h", True),
        ("127.0.0.1:9000", "http://127.0.0.1:9001/h", False),
        ("localhost:5678", "http://localhost:5678/h", True),
        ("localhost:5678", "http://localhost/h", False),
        ("[::1]:81", "http://[::1]:81/h", True),
        ("[::1]:81", "http://[::1]:82/h", False),
        ("10.0.0.0/8:8080", "http://10.9.9.9:8080/h", True),
        ("10.0.0.0/8:8080", "http://10.9.9.9:8081/h", False),
        ("1.1.1.1:25", "http://1.1.1.1:25/", True),  # opens a port the defaults refuse, for that host only
        ("1.1.1.1:25", "http://1.0.0.1:25/", False),
    ],
)
async def test_allow_list_entries_may_name_a_port(entry: str, url: str, allowed: bool) -> None:
    if allowed:
        await resolve_safe(url, [entry])
    else:
        with pytest.raises(UnsafeURLError):
            await resolve_safe(url, [entry])


async def test_unencodable_host_names_are_refused_not_crashed() -> None:
    with pytest.raises(UnsafeURLError, match="not a valid host name"):
        await resolve_safe("https://" + "a" * 300 + ".example/")


@pytest.mark.parametrize(
    ("url", "header"),
    [
        ("http://[2606:4700::1111]:8443/h", "[2606:4700::1111]:8443"),
        ("https://[2606:4700::1111]/h", "[2606:4700::1111]"),
        ("http://1.1.1.1:443/h", "1.1.1.1:443"),  # 443 is not http's own port
        ("https://1.1.1.1/h", "1.1.1.1"),
    ],
)
async def test_host_header_brackets_ipv6_literals(url: str, header: str) -> None:
    assert (await resolve_safe(url)).host_header == header
