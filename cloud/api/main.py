"""The /api/v1 router, one sub-router per resource."""

from fastapi import APIRouter

from cloud.api.routes import attendance, auth, devices, gateway_sync, health

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(auth.router)
api_router.include_router(gateway_sync.router)
api_router.include_router(devices.router)
api_router.include_router(attendance.router)
