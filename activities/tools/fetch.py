"""fetch_url: a web page as readable text, through the same SSRF guard as callbacks.

Every hop (the URL and each redirect target, at most `FetchLimits.max_redirects`) is resolved and checked by
`swarmkeep.netguard.resolve_safe` and the request goes to the checked address itself, so neither a redirect nor
DNS rebinding can reach an internal address. The body is read as a stream up to `max_bytes`, the whole fetch
(every hop, connect to last byte) runs under one deadline of `timeout_s`, and HTML is turned into text.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from swarmkeep.activities.tools.base import FetchLimits, Tool, ToolContext, ToolError, ToolResult
from swarmkeep.netguard import UnsafeURLError, resolve_safe

REDIRECTS = {301, 302, 303, 307, 308}
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml", "application/ld+json")
DROPPED_TAGS = ["script", "style", "noscript", "template", "svg", "iframe", "canvas", "object", "embed"]


@dataclass
class FetchedPage:
    """One downloaded page: where it ended up, its status and type, its text, and whether it was cut."""

    url: str
    status: int
    content_type: str
    text: str
    truncated: bool


def html_to_text(html: bytes | str) -> str:
    """Readable text of an HTML page: title first, scripts and styles dropped, one block per line."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(DROPPED_TAGS):
        tag.decompose()
    if soup.head:
        soup.head.decompose()
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in soup.get_text("\n").splitlines())
    body = "\n".join(line for line in lines if line)
    return f"Title: {title}\n\n{body}" if title else body


def _refusal(url: str, error: UnsafeURLError) -> ToolError:
    reason = str(error).split(" Callbacks go to")[0].replace("callback URL", "URL").replace("callback host", "host")
    return ToolError(f"fetch_url refused {url}: {reason}. Only public http(s) addresses can be fetched.")


async def fetch_page(url: str, limits: FetchLimits) -> FetchedPage:
    """Download `url` (following up to `max_redirects` redirects, each re-checked) and return it as text."""
    try:
        # httpx's timeout is per read: a server that drips bytes would hold the call for ever without this.
        async with asyncio.timeout(limits.timeout_s):
            return await _fetch(url, limits)
    except TimeoutError as error:
        raise ToolError(
            f"fetch_url gave up on {url}: no complete answer within {limits.timeout_s:g} s. The site is slow or "
            "keeps sending; try another source."
        ) from error


async def _fetch(url: str, limits: FetchLimits) -> FetchedPage:
    current = url
    async with httpx.AsyncClient(timeout=limits.timeout_s, follow_redirects=False) as http:
        for _ in range(limits.max_redirects + 1):
            try:
                target = await resolve_safe(current, limits.allow, limits.ports)
            except UnsafeURLError as error:
                raise _refusal(current, error) from error
            headers = {
                "host": target.host_header,
                "user-agent": limits.user_agent,
                "accept": "text/html,text/plain,application/json;q=0.9,*/*;q=0.5",
                "accept-encoding": "gzip",
            }
            extensions = {"sni_hostname": target.host} if current.startswith("https") else {}
            request = http.build_request("GET", target.pinned_url, headers=headers, extensions=extensions)
            response = await http.send(request, stream=True)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location:
                    current = urljoin(current, location)
                    continue
                raw, truncated = await _read_capped(response, limits.max_bytes)
            finally:
                await response.aclose()
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            return FetchedPage(current, response.status_code, content_type, _as_text(raw, response), truncated)
    raise ToolError(f"fetch_url gave up on {url}: more than {limits.max_redirects} redirects")


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of the body, decompressed here, and whether there was more; the rest is never read.

    httpx would inflate each compressed chunk whole (a 64 KiB chunk of a gzip bomb is 64 MiB); inflating with a
    size limit keeps memory to the cap whatever the server sends."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    inflate = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding in ("gzip", "x-gzip", "deflate") else None
    body = bytearray()
    async for chunk in response.aiter_raw():
        try:
            data = chunk if inflate is None else inflate.decompress(chunk, cap + 1 - len(body))
        except zlib.error as error:
            raise ToolError(f"fetch_url could not inflate the {encoding} body of {response.url}: {error}") from error
        body += data
        if len(body) > cap or (inflate is not None and inflate.unconsumed_tail):
            return bytes(body[:cap]), True
    return bytes(body), False


def _as_text(raw: bytes, response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "").lower()
    if "html" in content_type or (not content_type and raw.lstrip()[:15].lower().startswith((b"<!doctype", b"<html"))):
        return html_to_text(raw)
    if content_type and not content_type.startswith(TEXT_TYPES):
        return f"(binary content of type {content_type.split(';')[0]}, {len(raw)} bytes: not shown)"
    return raw.decode(response.charset_encoding or "utf-8", errors="replace")


async def fetch_url(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Fetch a page and return its text from `offset`, at most `max_chars` characters."""
    try:
        page = await fetch_page(arguments["url"], context.fetch)
    except httpx.HTTPError as error:
        raise ToolError(f"fetch_url could not fetch {arguments['url']}: {type(error).__name__}: {error}") from error
    offset, limit = arguments.get("offset", 0), arguments.get("max_chars", 8000)
    part = page.text[offset : offset + limit]
    notes = []
    if offset + len(part) < len(page.text):
        rest = len(page.text) - offset - len(part)
        notes.append(f"[{rest} more characters: call again with offset={offset + len(part)}]")
    if page.truncated:
        notes.append(f"[download stopped at {context.fetch.max_bytes} bytes: the page is longer]")
    header = f"URL: {page.url}\nStatus: {page.status}\nContent-Type: {page.content_type or 'unknown'}\n\n"
    return ToolResult(content=header + part + ("\n" + "\n".join(notes) if notes else ""), is_error=page.status >= 400)


FETCH_URL = Tool(
    name="fetch_url",
    description=(
        "Fetch a public web page (http or https) and return its readable text. Long pages come in parts: pass "
        "offset to read on. Internal and private addresses are refused."
    ),
    parameters={
        "type": "object",
        "properties": {
            "url": {"type": "string", "pattern": "^[hH][tT][tT][pP][sS]?://", "description": "http(s) URL"},
            "offset": {"type": "integer", "minimum": 0},
            "max_chars": {"type": "integer", "minimum": 100, "maximum": 16000},
        },
        "required": ["url"],
        "additionalProperties": False,
    },
    handler=fetch_url,
    timeout_s=60,
)
