"""The console's pages and form actions, a module per page area.

Every page reads through the same data functions as the API, passing the signed-in user, so tenancy is the
data layer's to enforce: a school admin asking for another school's page gets the same 404 the API gives.
"""

from fastapi import APIRouter

from cloud.web.pages import account, attendance, commands, county, devices, live, orders, static
from cloud.web.render import WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)
for area in (static, account, live, orders, devices, attendance, county, commands):
    router.include_router(area.router)
