"""The /api/v1 router, one sub-router per resource."""

from fastapi import APIRouter

from cloud.api.routes import (
    alarms,
    attendance,
    audit,
    auth,
    buildings,
    cities,
    classrooms,
    devices,
    districts,
    gateway_sync,
    gateways,
    health,
    imports,
    roster,
    schools,
)

api_router = APIRouter()
for module in (
    health,
    auth,
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
):
    api_router.include_router(module.router)
