"""The gateway's local status page, JSON status and Prometheus `/metrics`, for the school's IT admin.

They are served from the gateway process itself, so they work while the school's internet is down.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse


@dataclass(frozen=True)
class GatewayStatus:
    """What `classops gateway status` and the status page show, as the gateway saw it at one moment.

    `store` is the store's health and, in `error`, why the store did not answer (the devices and
    backlog are then empty)."""

    school: str
    store: dict[str, Any]
    gateway_id: str | None
    broker_connected: bool
    cloud_last_ok_s_ago: float | None
    backlog_records: int
    backlog_age_s: float
    devices: list[dict[str, Any]]
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """The status as /api/status serves it."""
        return {
            "school": self.school,
            "store": self.store,
            "gateway_id": self.gateway_id,
            "broker_connected": self.broker_connected,
            "cloud_last_ok_s_ago": self.cloud_last_ok_s_ago,
            "backlog_records": self.backlog_records,
            "backlog_age_s": self.backlog_age_s,
            "devices": self.devices,
            "devices_online": sum(1 for d in self.devices if d["presence"] == "online"),
            "metrics": self.metrics,
        }


def _page(status: dict) -> str:
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td class='{}'>{}</td><td>{}</td></tr>".format(
            html.escape(d["id"]), html.escape(d["role"] or "?"), html.escape(d["presence"]),
            html.escape(d["presence"]),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["last_seen"])) if d["last_seen"] else "never",
        )
        for d in status["devices"]
    )
    cloud = status["cloud_last_ok_s_ago"]
    cloud_text = "never reached" if cloud is None else f"last reached {cloud:.0f} s ago"
    store = status["store"]
    store_text = "" if store["writable"] and not store["error"] else (
        "<p class='offline'><b>"
        + (f"The store cannot write (for {store['unwritable_for_s']} s): nothing new is acknowledged, samples"
           " are refused, devices keep their events. Free space in the data folder; it recovers by itself."
           if not store["writable"] else "The store did not answer.")
        + f"</b> {html.escape(store['detail'] or store['error'])}</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta http-equiv="refresh" content="5"><title>ClassOps gateway {html.escape(status["school"])}</title>
<style>body{{font-family:sans-serif;margin:1em}}td,th{{padding:.2em .6em;text-align:left}}
.online{{color:#070}}.offline{{color:#b00}}.unknown{{color:#777}}</style></head><body>
<h1>School {html.escape(status["school"])} gateway</h1>
{store_text}<p>Broker: {"connected" if status["broker_connected"] else "<b>not connected</b>"}.
Cloud: {cloud_text}. Waiting for the cloud: {status["backlog_records"]} records,
oldest {status["backlog_age_s"]:.0f} s.</p>
<p>Devices online: {status["devices_online"]} of {len(status["devices"])}.</p>
<table><tr><th>device</th><th>role</th><th>presence</th><th>last heard</th></tr>{rows}</table>
<p><a href="/metrics">metrics</a> · <a href="/api/status">status as JSON</a></p>
</body></html>"""


def create_status_app(school: str, status: Callable[[], Awaitable[GatewayStatus]],
                      metrics_text: Callable[[], str]) -> FastAPI:
    """The status web app over a gateway's `status` snapshots and its metrics in Prometheus' format."""
    app = FastAPI(title=f"ClassOps gateway {school}", docs_url=None, redoc_url=None)

    @app.get("/api/status")
    async def api_status() -> dict:
        return (await status()).as_dict()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return _page((await status()).as_dict())

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        return metrics_text()

    return app
