"""web_search: a pluggable search provider; SearxNG's JSON API is the one built in, off unless configured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from swarmkeep.activities.tools.base import Tool, ToolContext, ToolError, ToolResult

NOT_CONFIGURED = (
    "No web search provider is configured on this deployment, so web_search cannot answer. "
    "Work from what you know, or use fetch_url on a page whose address you know."
)


@dataclass(frozen=True)
class SearchHit:
    """One search result."""

    title: str
    url: str
    snippet: str = ""


@runtime_checkable
class SearchProvider(Protocol):
    """Anything that answers a query with a list of hits."""

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        """Up to `max_results` hits for `query`."""
        ...


class SearxngSearch:
    """A SearxNG-compatible endpoint (`GET {base_url}/search?q=...&format=json`), set up by the operator.

    The operator's URL is trusted (it is often a private address), so it does not go through the SSRF guard;
    redirects are not followed.
    """

    def __init__(self, base_url: str, timeout_s: float = 15.0, headers: dict[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = headers or {}

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        """Query the endpoint and map its `results` to hits."""
        params = {"q": query, "format": "json"}
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
            response = await http.get(f"{self.base_url}/search", params=params, headers=self.headers)
        response.raise_for_status()
        results = response.json().get("results", [])
        return [
            SearchHit(str(r.get("title", "")), str(r.get("url", "")), str(r.get("content", "")))
            for r in results[:max_results]
            if isinstance(r, dict) and r.get("url")
        ]


def search_provider_for(url: str | None) -> SearchProvider | None:
    """The provider for a configured search URL, or None (search off) when the URL is empty."""
    return SearxngSearch(url) if url else None


async def web_search(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    """Search the web through the configured provider; say so plainly when there is none."""
    if context.search is None:
        return ToolResult(content=NOT_CONFIGURED)
    query, count = arguments["query"], arguments.get("max_results", 5)
    try:
        hits = await context.search.search(query, count)
    except (httpx.HTTPError, ValueError) as error:
        raise ToolError(f"the search provider failed: {type(error).__name__}: {error}; try again later") from error
    if not hits:
        return ToolResult(content=f"No results for {query!r}.")
    lines = [f"{i}. {hit.title}\n   {hit.url}\n   {hit.snippet}".rstrip() for i, hit in enumerate(hits, 1)]
    return ToolResult(content=f"Results for {query!r}:\n" + "\n".join(lines))


WEB_SEARCH = Tool(
    name="web_search",
    description="Search the web; returns titles, URLs and snippets. Read a result with fetch_url.",
    parameters={
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 400},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    handler=web_search,
    timeout_s=30,
)
