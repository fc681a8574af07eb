"""The CLI's HTTP client for the swarmkeep API."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(RuntimeError):
    """The API answered with an error, or could not be reached; the message says which and what to do."""


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def _request(self, method: str, path: str, raw: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ApiError(
                f"Could not reach the swarmkeep API at {self.base_url} ({error}). Start it with `swarmkeep up`, "
                "or point SWARMKEEP_API_URL at a running one."
            ) from error
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            hint = ""
            if response.status_code == 401:
                hint = " Set SWARMKEEP_API_KEY to a key from `swarmkeep keys create` (or run `swarmkeep up` locally)."
            raise ApiError(f"{method} {path} answered {response.status_code}: {detail}{hint}")
        return response.content if raw else response.json()

    def reachable(self) -> bool:
        try:
            return self._http.get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def create_job(self, task: str, max_parallel: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"task": task}
        if max_parallel:
            body["max_parallel"] = max_parallel
        return self._request("POST", "/v1/jobs", json=body)  # type: ignore[no-any-return]

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}")  # type: ignore[no-any-return]

    def list_jobs(self, status: str | None, limit: int, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        return self._request("GET", "/v1/jobs", params=params)  # type: ignore[no-any-return]

    def timeline_svg(self, job_id: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{job_id}/timeline.svg", raw=True)  # type: ignore[no-any-return]

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel")  # type: ignore[no-any-return]
