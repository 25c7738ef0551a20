"""The few calls of the cloud's REST API that the simulator makes, as a signed-in user."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx

TIMEOUT_S = 30.0
PAGE = 1000


class CloudApiError(RuntimeError):
    """The cloud answered with an error, or could not be reached."""


class CloudApi:
    """A signed-in session on the cloud's /api/v1."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._client = httpx.Client(base_url=self.base_url + "/api/v1", timeout=TIMEOUT_S)
        self._token: str | None = None

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def _login(self) -> None:
        try:
            resp = self._client.post("/auth/login", json={"username": self.username, "password": self._password})
        except httpx.HTTPError as exc:
            raise CloudApiError(f"cannot reach the cloud at {self.base_url}: {exc}") from exc
        if resp.status_code != 200:
            raise CloudApiError(f"login as {self.username} failed: {resp.status_code} {resp.text}")
        self._token = resp.json()["access_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call; signs in (again) when needed; CloudApiError on any failure."""
        for attempt in range(2):
            if self._token is None:
                self._login()
            try:
                resp = self._client.request(method, path, headers={"Authorization": f"Bearer {self._token}"},
                                            **kwargs)
            except httpx.HTTPError as exc:
                raise CloudApiError(f"{method} {path}: {exc}") from exc
            if resp.status_code == 401 and attempt == 0:
                # The cloud restarted or the session expired: sign in once more.
                self._token = None
                continue
            if resp.status_code >= 400:
                raise CloudApiError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
            return resp.json() if resp.content else None
        raise CloudApiError(f"{method} {path}: not signed in")

    def get(self, path: str, **params: Any) -> Any:
        """GET with query parameters."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        """POST a JSON body."""
        return self.request("POST", path, json=body)

    def pages(self, path: str, limit: int = PAGE, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paged list ({"items", "total"}), page by page."""
        offset = 0
        while True:
            body = self.get(path, limit=limit, offset=offset, **params)
            items = body["items"]
            yield from items
            offset += len(items)
            if not items or offset >= body["total"]:
                return

    def import_devices(self, rows: list[dict[str, str]]) -> dict[str, Any]:
        """Register devices and bind them to classrooms (created as needed) from rows of the import's columns."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        files = {"file": ("devices.csv", out.getvalue().encode(), "text/csv")}
        report = self.request("POST", "/imports/devices", params={"create_rooms": "true"}, files=files)
        if report.get("errors"):
            raise CloudApiError(f"device import refused rows: {report['errors'][:5]}")
        return dict(report)
