"""The live status the console's script polls for what a page shows."""

from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlmodel import Session

from cloud import registry, workorders
from cloud.api.deps import SessionDep
from cloud.bounds import whole_number
from cloud.crud import commands as commands_crud
from cloud.errors import InvalidInput, NotFound
from cloud.models import MAX_ROW_ID, User
from cloud.web import i18n
from cloud.web.pages.common import app_settings
from cloud.web.render import WebRoute
from cloud.web.session import WebUser, language

router = APIRouter(route_class=WebRoute, include_in_schema=False)

LIVE_KEYS = 200


def _order_number(text: str) -> int:
    number = whole_number(text, high=MAX_ROW_ID)
    if number is None:
        raise InvalidInput(f"order:{text} names no work order: its id is a number from 1 to {MAX_ROW_ID}")
    return number


def live_status(session: Session, user: User, keys: Sequence[str], lang: str, stale_s: float) -> dict[str, dict]:
    """Current status of the devices, orders and commands named by `kind:id` keys the user may see."""
    devices = [k.split(":", 1)[1] for k in keys if k.startswith("device:")]
    orders = [_order_number(k.split(":", 1)[1]) for k in keys if k.startswith("order:")]
    batches = [k.split(":", 1)[1] for k in keys if k.startswith("batch:")]
    result: dict[str, dict] = {}
    if devices:
        rows, _ = registry.list_devices(session, user=user, device_ids=devices)
        for view in registry.device_views(session, rows, stale_after=timedelta(seconds=stale_s)):
            result[f"device:{view.id}"] = {"text": i18n.translate(lang, view.presence), "cls": f"st-{view.presence}"}
    if orders:
        found, _ = workorders.list_orders(session, user=user, order_ids=orders, limit=len(orders))
        for order in found:
            status = order.status
            result[f"order:{order.id}"] = {"text": i18n.translate(lang, f"st_{status}"), "cls": f"st-{status}"}
    for batch_id in batches:
        try:
            batch = commands_crud.read_batch(session, user=user, batch_id=batch_id, limit=0)
        except NotFound:
            continue
        text = " · ".join(
            f"{i18n.translate(lang, 'cs_' + state)} {count}" for state, count in batch.states.items() if count
        )
        result[f"batch:{batch_id}"] = {"text": text, "cls": ""}
    return result


@router.get("/live")
def live(
    request: Request,
    user: WebUser,
    session: SessionDep,
    keys: Annotated[str, Query(max_length=8000)] = "",
) -> dict:
    """Current status of what a page shows (devices, orders, commands), polled by the console's script."""
    wanted = [key for key in keys.split(",") if key][:LIVE_KEYS]
    return live_status(session, user, wanted, language(request), app_settings(request).gateway_stale_s)
