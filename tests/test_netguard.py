"""The SSRF guard refuses internal addresses, by literal or by name, unless allow-listed."""

from __future__ import annotations

import pytest

from swarmkeep.netguard import UnsafeURLError, resolve_safe


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
