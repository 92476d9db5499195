"""The CLI's HTTP client of the daemon."""

from __future__ import annotations

from typing import Any

from aima.errors import AimaError, DaemonUnreachable


class Client:
    def __init__(self, url: str, api_key: str | None, timeout: float | None = None):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)
        self._httpx = httpx

    def call(self, op: str, data: dict[str, Any]) -> Any:
        return self.request("POST", f"/api/v1/ops/{op}", json=data)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except self._httpx.ConnectError:
            raise DaemonUnreachable(
                f"no aima daemon at {self.url}; start one with `aima start --detach` "
                f"(or set --url / AIMA_URL)") from None
        except self._httpx.HTTPError as e:
            raise DaemonUnreachable(f"the daemon at {self.url} did not answer: {type(e).__name__} {e}") from None
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if r.status_code >= 400:
            raise AimaError.from_dict(r.status_code, body)
        return body

    def close(self) -> None:
        self._http.close()
