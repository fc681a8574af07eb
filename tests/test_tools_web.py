"""fetch_url through the SSRF guard (redirects re-checked, size capped, HTML as text) and web_search."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from swarmkeep.activities.tools import FetchLimits, SearxngSearch, ToolContext, toolset_for

PAGE = (
    b"<!doctype html><html><head><title>Tides of Brest</title><style>p{color:red}</style>"
    b"<script>alert('hidden')</script></head><body><h1>High tide</h1><p>At   06:12,\n 7.1 m.</p>"
    b"<noscript>enable js</noscript><ul><li>Low tide: 12:30</li></ul></body></html>"
)


class Handler(BaseHTTPRequestHandler):
    """Routes for the tests: a page, redirects, a big body, an image and a SearxNG-style search."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        port = self.server.server_address[1]  # type: ignore[index]
        if parts.path == "/page":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif parts.path.startswith("/hop/"):
            left = int(parts.path.rsplit("/", 1)[1])
            target = "/page" if left == 0 else f"/hop/{left - 1}"
            self._send(302, b"", "text/plain", {"location": target})
        elif parts.path == "/to-metadata":
            self._send(302, b"", "text/plain", {"location": "http://169.254.169.254/latest/meta-data/"})
        elif parts.path == "/to-private":
            self._send(301, b"", "text/plain", {"location": f"http://10.0.0.7:{port}/page"})
        elif parts.path == "/big":
            self._send(200, b"a" * 50_000, "text/plain")
        elif parts.path == "/image":
            self._send(200, b"\x89PNG\r\n" + b"\x00" * 100, "image/png")
        elif parts.path == "/missing":
            self._send(404, b"not here", "text/plain")
        elif parts.path == "/search":
            query = parse_qs(parts.query)
            assert query["format"] == ["json"]
            results = [
                {"title": f"{query['q'][0]} result {i}", "url": f"https://example.org/{i}", "content": f"snippet {i}"}
                for i in range(8)
            ]
            self._send(200, json.dumps({"results": results}).encode(), "application/json")
        else:
            self._send(404, b"", "text/plain")


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _context(tmp_path: Path, **fetch: Any) -> ToolContext:
    limits = FetchLimits(**{"allow": ["127.0.0.1"], **fetch})
    return ToolContext(job_id="job-1", scratch_dir=tmp_path, fetch=limits)


async def _fetch(context: ToolContext, url: str, **arguments: Any) -> tuple[str, bool]:
    result = await toolset_for("researcher").call("fetch_url", {"url": url, **arguments}, context)
    return result.content, result.is_error


async def test_html_page_comes_back_as_readable_text(site: str, tmp_path: Path) -> None:
    content, is_error = await _fetch(_context(tmp_path), f"{site}/page")
    assert not is_error, content
    assert "Status: 200" in content and "Content-Type: text/html" in content
    assert "Title: Tides of Brest" in content
    assert "High tide\nAt 06:12,\n7.1 m.\nLow tide: 12:30" in content
    assert "alert" not in content and "color:red" not in content and "enable js" not in content


async def test_internal_addresses_are_refused_without_the_allow_list(site: str, tmp_path: Path) -> None:
    context = ToolContext(job_id="job-1", scratch_dir=tmp_path)
    for url in [f"{site}/page", "http://169.254.169.254/latest/meta-data/", "http://localhost/", "file:///etc/passwd"]:
        content, is_error = await _fetch(context, url)
        assert is_error, url
        assert "refused" in content or "invalid arguments" in content, content


async def test_public_addresses_only_on_the_outbound_ports(tmp_path: Path) -> None:
    for ports in [FetchLimits().ports, ("443",)]:
        context = ToolContext(job_id="job-1", scratch_dir=tmp_path, fetch=FetchLimits(ports=ports))
        content, is_error = await _fetch(context, "http://1.1.1.1:25/")  # refused before any connection is made
        assert is_error and "refused" in content and "port" in content, content
    content, is_error = await _fetch(_context(tmp_path, ports=("443",)), "http://8.8.8.8:80/")
    assert is_error and "port" in content, content


async def test_redirects_are_followed_and_each_target_rechecked(site: str, tmp_path: Path) -> None:
    content, is_error = await _fetch(_context(tmp_path), f"{site}/hop/2")
    assert not is_error and "High tide" in content and content.startswith(f"URL: {site}/page")
    content, is_error = await _fetch(_context(tmp_path), f"{site}/hop/3")
    assert is_error and "more than 3 redirects" in content
    content, is_error = await _fetch(_context(tmp_path), f"{site}/to-metadata")
    assert is_error and "refused http://169.254.169.254/latest/meta-data/" in content and "metadata" in content
    content, is_error = await _fetch(_context(tmp_path), f"{site}/to-private")
    assert is_error and "10.0.0.7" in content and "private address" in content


async def test_download_is_size_capped_and_text_comes_in_parts(site: str, tmp_path: Path) -> None:
    content, is_error = await _fetch(_context(tmp_path, max_bytes=10_000), f"{site}/big", max_chars=4000)
    assert not is_error
    assert content.count("a") >= 4000 and "[6000 more characters: call again with offset=4000]" in content
    assert "[download stopped at 10000 bytes: the page is longer]" in content
    rest, _ = await _fetch(_context(tmp_path, max_bytes=10_000), f"{site}/big", offset=8000, max_chars=4000)
    assert "more characters" not in rest


async def test_binary_and_error_pages(site: str, tmp_path: Path) -> None:
    content, is_error = await _fetch(_context(tmp_path), f"{site}/image")
    assert not is_error and "binary content of type image/png" in content
    content, is_error = await _fetch(_context(tmp_path), f"{site}/missing")
    assert is_error and "Status: 404" in content


async def test_unreachable_host_is_an_error_result(tmp_path: Path) -> None:
    content, is_error = await _fetch(_context(tmp_path, timeout_s=2), "http://127.0.0.1:9/")
    assert is_error and "could not fetch" in content


async def test_web_search_without_provider_says_so(tmp_path: Path) -> None:
    result = await toolset_for("researcher").call("web_search", {"query": "tides"}, ToolContext("j", tmp_path))
    assert not result.is_error
    assert "No web search provider is configured" in result.content


async def test_web_search_through_a_searxng_endpoint(site: str, tmp_path: Path) -> None:
    context = ToolContext("j", tmp_path, search=SearxngSearch(site))
    result = await toolset_for("researcher").call("web_search", {"query": "tides", "max_results": 3}, context)
    assert not result.is_error, result.content
    assert "1. tides result 0\n   https://example.org/0\n   snippet 0" in result.content
    assert "3. tides result 2" in result.content and "result 3" not in result.content
    broken = ToolContext("j", tmp_path, search=SearxngSearch(f"{site}/nowhere"))
    failed = await toolset_for("researcher").call("web_search", {"query": "tides"}, broken)
    assert failed.is_error and "search provider failed" in failed.content
