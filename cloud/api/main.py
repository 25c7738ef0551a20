"""The /api/v1 router, one sub-router per resource."""

from fastapi import APIRouter

from cloud.api.responses import ERROR_RESPONSES
from cloud.api.routes import (
    alarms,
    attendance,
    audit,
    auth,
    buildings,
    calendars,
    cities,
    classrooms,
    commands,
    devices,
    districts,
    figures,
    gateway_sync,
    gateways,
    health,
    imports,
    notifications,
    roster,
    schools,
    teams,
    users,
    work_orders,
)

api_router = APIRouter()
for module in (
    health,
    auth,
    users,
    gateway_sync,
    cities,
    districts,
    schools,
    buildings,
    classrooms,
    gateways,
    devices,
    imports,
    alarms,
    attendance,
    roster,
    audit,
    teams,
    calendars,
    work_orders,
    notifications,
    commands,
    figures,
):
    # Health answers without a login; every other operation may be refused as ERROR_RESPONSES says.
    api_router.include_router(module.router, responses={} if module is health else ERROR_RESPONSES)
