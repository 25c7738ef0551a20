"""The gateway's local status page, JSON status and Prometheus `/metrics`, for the school's IT admin.

They are served from the gateway process itself, so they work while the school's internet is down.
"""

from __future__ import annotations

import asyncio
import html
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse

from gateway.errors import StoreUnwritable, StoreWorkerError

if TYPE_CHECKING:
    from gateway.app import Gateway

STORE_ANSWER_S = 2.0


def status_snapshot(gateway: Gateway, devices: list[dict[str, Any]], backlog: tuple[int, float],
                    store_error: str = "") -> dict:
    """What `classops gateway status` and the status page show; `store_error` says why the store did not
    answer (the devices and backlog are then empty)."""
    count, age = backlog
    sync = gateway.sync
    return {
        "school": gateway.settings.school,
        "store": {**gateway.store_health.snapshot(), "error": store_error},
        "gateway_id": sync.gateway_id if sync else None,
        "broker_connected": gateway.broker.connected.is_set(),
        "cloud_last_ok_s_ago": (
            round(time.monotonic() - sync.last_ok, 1) if sync and sync.last_ok is not None else None
        ),
        "backlog_records": count,
        "backlog_age_s": round(age, 1),
        "devices": devices,
        "devices_online": sum(1 for d in devices if d["presence"] == "online"),
        "metrics": gateway.metrics.snapshot(),
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


def create_status_app(gateway: Gateway) -> FastAPI:
    """The status web app bound to a running gateway."""
    app = FastAPI(title=f"ClassOps gateway {gateway.settings.school}", docs_url=None, redoc_url=None)

    async def snapshot() -> dict:
        # The page must answer while the store does not: that is when the admin needs it most.
        try:
            async with asyncio.timeout(STORE_ANSWER_S):
                devices = await gateway.in_store("devices")
                backlog = await gateway.in_store("backlog")
        except (StoreUnwritable, StoreWorkerError) as exc:
            return status_snapshot(gateway, [], (0, 0.0), store_error=str(exc))
        except TimeoutError:
            # A store worker being replaced (after a backoff) would hold the page for seconds.
            return status_snapshot(gateway, [], (0, 0.0),
                                   store_error=f"the store did not answer within {STORE_ANSWER_S:.0f} s")
        return status_snapshot(gateway, devices, backlog)

    @app.get("/api/status")
    async def api_status() -> dict:
        return await snapshot()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return _page(await snapshot())

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        return gateway.metrics.render_prometheus()

    return app
