"""Every role against every endpoint, in its own tenant and in another one.

District d1 holds school s1 ("own"); district d2 holds school s2 ("other"). The people: a city-wide
county admin (no district), a county admin and an auditor of d1, the school admin of s1, a technician
and a contractor manager of team "Fixers", which covers d1: they reach s1 and its device through the work
order on that device that is assigned to the technician. Team "Others" covers d2 with a technician of its
own, who gets the orders of s2.

Who should be let in is read from cloud.policy's permission sets, combined with each person's reach
(tenancy); the outcome is the real HTTP answer.
"""

import io
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from cloud import crud, policy, registry, workorders
from cloud.core import security
from cloud.core.config import Settings
from cloud.main import create_app
from cloud.models import Role
from cloud.workorders import teams
from tests.cloud.helpers import PASSWORD, TS, DatabasePool, tap

API = "/api/v1"
CLI = crud.Actor.cli("matrix")
TENANTS = {"own": ("s1", "d1"), "other": ("s2", "d2")}
DEVICES = {"s1": "esp32-0000000000a1", "s2": "esp32-0000000000b2"}
PEOPLE = {
    "county_city": (Role.COUNTY_ADMIN, None, None),
    "county_d1": (Role.COUNTY_ADMIN, None, "d1"),
    "auditor_d1": (Role.AUDITOR, None, "d1"),
    "admin_s1": (Role.SCHOOL_ADMIN, "s1", None),
    "technician": (Role.TECHNICIAN, None, None),
    "contractor": (Role.CONTRACTOR_MANAGER, None, None),
}
ROLES = tuple(PEOPLE)


@dataclass
class Env:
    """A seeded app shared by the whole matrix."""

    client: TestClient
    session: Session
    tokens: dict[str, str]
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def headers(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}


def _module_database(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('matrix') / 'cloud.db'}"
        return
    pool: DatabasePool = request.getfixturevalue("postgres_pool")
    name = pool.take()
    try:
        yield pool.url(name)
    finally:
        pool.give_back(name)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Env]:
    database = _module_database(request, tmp_path_factory)
    url = next(database)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "BCRYPT_ROUNDS", 4)
        settings = Settings(database_url=url, maintenance_interval_s=0, sync_burst=1000)
        with TestClient(create_app(settings)) as client, Session(client.app.state.engine) as session:
            yield _seed(client, session)
    database.close()


def _seed(client: TestClient, session: Session) -> Env:
    registry.create_city(session, actor=CLI, code="c1", name="City")
    tokens = {}
    for school, district in TENANTS.values():
        registry.create_district(session, actor=CLI, code=district, city_code="c1", name=district)
        registry.create_school(session, actor=CLI, code=school, name=school, district_code=district)
    for person, (role, school, district) in {**PEOPLE, "tech_other": (Role.TECHNICIAN, None, None)}.items():
        user = crud.create_user(
            session,
            actor=CLI,
            username=person,
            password=PASSWORD,
            role=role,
            school_code=school,
            district_code=district,
        )
        tokens[person], _ = crud.create_auth_token(session, user=user, ttl=timedelta(hours=2))
    env = Env(client=client, session=session, tokens=tokens)
    for tenant, (school, _) in TENANTS.items():
        gateway, token = registry.create_gateway(session, actor=CLI, school_code=school)
        device = DEVICES[school]
        synced = client.post(
            f"{API}/gateway/sync",
            json={"records": [tap(1, device)], "sent_at": TS},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert synced.json()["confirmed"] == [1]
        building = registry.create_building(session, actor=CLI, school_code=school, name="Main")
        room = registry.create_classroom(session, actor=CLI, building_id=building.id, name="101")
        team = teams.create_team(
            session,
            actor=CLI,
            name=TEAMS[tenant][0],
            districts=[env_district(tenant)],
            device_roles=["sensor", "attendance", "blackboard", "gateway"],
        )
        assert team.id is not None
        for member in TEAMS[tenant][1]:
            teams.add_team_member(session, actor=CLI, team_id=team.id, username=member)
        order = workorders.report_fault(session, actor=CLI, device_id=device, description="seed")
        env.targets[tenant] = {
            "school": school,
            "district": env_district(tenant),
            "building": building.id,
            "classroom": room.id,
            "device": device,
            "gateway": gateway.id,
            "team": team.id,
            "order": order.id,
        }
    return env


TEAMS = {"own": ("Fixers", ("technician", "contractor")), "other": ("Others", ("tech_other",))}


def env_district(tenant: str) -> str:
    return TENANTS[tenant][1]


def _fresh_building(env: Env, target: dict[str, Any]) -> int:
    building = registry.create_building(env.session, actor=CLI, school_code=target["school"], name=secrets.token_hex(4))
    return building.id


def _fresh_device(env: Env, target: dict[str, Any]) -> str:
    device_id = f"esp32-{secrets.token_hex(6)}"
    registry.create_device(env.session, actor=CLI, fields={"id": device_id, "school_code": target["school"]})
    return device_id


def _new_device_id() -> str:
    return f"esp32-{secrets.token_hex(6)}"


def _fresh_order(env: Env, target: dict[str, Any]) -> int:
    order = workorders.report_fault(
        env.session, actor=CLI, device_id=target["device"], description="x", fault_code=secrets.token_hex(4)
    )
    assert order.id is not None and order.status == "assigned"
    return order.id


def _fresh_school_admin(env: Env, target: dict[str, Any]) -> str:
    username = f"head-{secrets.token_hex(4)}"
    crud.create_user(
        env.session,
        actor=CLI,
        username=username,
        password=PASSWORD,
        role=Role.SCHOOL_ADMIN,
        school_code=target["school"],
    )
    return username


def _csv(env: Env, target: dict[str, Any]) -> bytes:
    return f"device_id,school\n{_new_device_id()},{target['school']}\n".encode()


# Who may do what: a permission of cloud.policy, within the person's reach.
def role_of(person: str) -> Role:
    return PEOPLE[person][0]


def reaches(person: str, tenant: str) -> bool:
    """County staff reach their district (all of them without one), a school admin their school, the
    technician and manager the school of their team's order, which lies in "own"."""
    role, school, district = PEOPLE[person]
    if role in policy.COUNTY_STAFF:
        return district in (None, env_district(tenant))
    if role in policy.SCHOOL_STAFF:
        return school == TENANTS[tenant][0]
    return tenant == "own"


def within_reach(roles: frozenset[Role]) -> Callable[[str, str], bool]:
    """Allowed to the roles of a permission, on what each person reaches."""
    return lambda person, tenant: role_of(person) in roles and reaches(person, tenant)


def anywhere(roles: frozenset[Role]) -> Callable[[str, str], bool]:
    """Allowed to the roles of a permission, whatever the tenant (a list then holds only what they reach)."""
    return lambda person, tenant: role_of(person) in roles


def order_action(action: str) -> Callable[[str, str], bool]:
    """An action on a fresh order of the tenant: reported from the command line and assigned to its team's
    technician, so a school admin (who cancels only faults they reported) may not take it."""
    return lambda person, tenant: (
        action in policy.ROLE_ORDER_ACTIONS[role_of(person)]
        and reaches(person, tenant)
        and role_of(person) not in policy.SCHOOL_STAFF
    )


def county_or_own_team(roles: frozenset[Role]) -> Callable[[str, str], bool]:
    """County staff see every team; contractor staff their own, which covers "own"."""
    return lambda person, tenant: (
        role_of(person) in roles and (role_of(person) in policy.COUNTY_STAFF or reaches(person, tenant))
    )


def anyone(person: str, tenant: str) -> bool:
    return True


field_reader = within_reach(frozenset(Role))
school_writer = within_reach(policy.WRITE_SCHOOLS)
county_writer = within_reach(policy.WRITE_DISTRICTS)
personal_data = within_reach(policy.READ_PERSONAL_DATA)
attendance_reader = within_reach(policy.READ_ATTENDANCE)
figure_reader = within_reach(policy.SITE_FIGURES)
order_writer = within_reach(frozenset(Role) - policy.READ_ONLY)
order_logger = within_reach(policy.LOG_WORK)
command_sender = within_reach(policy.SEND_COMMANDS)


def city_writer(person: str, tenant: str) -> bool:
    return role_of(person) in policy.WRITE_DISTRICTS and PEOPLE[person][2] is None


def group_commander(level: str) -> Callable[[str, str], bool]:
    """A command to a whole `level` (school, classroom...) of the tenant."""
    return lambda person, tenant: command_sender(person, tenant) and level in policy.COMMAND_LEVELS[role_of(person)]


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[Env, dict[str, Any]], str]
    allowed: Callable[[str, str], bool]
    body: Callable[[Env, dict[str, Any]], Any] | None = None
    upload: bool = False


ENDPOINTS = (
    Endpoint("list cities", "GET", lambda e, t: "/cities", anyone),
    Endpoint("get district", "GET", lambda e, t: f"/districts/{t['district']}", anyone),
    Endpoint("get school", "GET", lambda e, t: f"/schools/{t['school']}", field_reader),
    Endpoint("list buildings", "GET", lambda e, t: f"/buildings?school={t['school']}", field_reader),
    Endpoint("get building", "GET", lambda e, t: f"/buildings/{t['building']}", field_reader),
    Endpoint("list classrooms", "GET", lambda e, t: f"/classrooms?school={t['school']}", field_reader),
    Endpoint("get classroom", "GET", lambda e, t: f"/classrooms/{t['classroom']}", field_reader),
    Endpoint("list devices", "GET", lambda e, t: f"/devices?school={t['school']}", field_reader),
    Endpoint("get device", "GET", lambda e, t: f"/devices/{t['device']}", field_reader),
    Endpoint("device label", "GET", lambda e, t: f"/devices/{t['device']}/label.svg", field_reader),
    Endpoint("device health", "GET", lambda e, t: f"/devices/{t['device']}/health", field_reader),
    Endpoint("device hourly", "GET", lambda e, t: f"/devices/{t['device']}/health/hourly", field_reader),
    Endpoint("device telemetry", "GET", lambda e, t: f"/devices/{t['device']}/telemetry", field_reader),
    Endpoint("list gateways", "GET", lambda e, t: f"/gateways?school={t['school']}", field_reader),
    Endpoint("get gateway", "GET", lambda e, t: f"/gateways/{t['gateway']}", field_reader),
    Endpoint("list alarms", "GET", lambda e, t: f"/alarms?school={t['school']}", field_reader),
    Endpoint("daily attendance", "GET", lambda e, t: f"/attendance/daily?school={t['school']}", attendance_reader),
    Endpoint("attendance events", "GET", lambda e, t: f"/attendance-events?school={t['school']}", personal_data),
    Endpoint("read roster", "GET", lambda e, t: f"/schools/{t['school']}/roster", personal_data),
    Endpoint("audit log", "GET", lambda e, t: f"/audit-log?school={t['school']}", anywhere(policy.READ_AUDIT_LOG)),
    Endpoint(
        "create building",
        "POST",
        lambda e, t: "/buildings",
        school_writer,
        lambda e, t: {"school_code": t["school"], "name": secrets.token_hex(4)},
    ),
    Endpoint(
        "rename building",
        "PATCH",
        lambda e, t: f"/buildings/{t['building']}",
        school_writer,
        lambda e, t: {"name": f"Main {secrets.token_hex(2)}"},
    ),
    Endpoint("delete building", "DELETE", lambda e, t: f"/buildings/{_fresh_building(e, t)}", school_writer),
    Endpoint(
        "create classroom",
        "POST",
        lambda e, t: "/classrooms",
        school_writer,
        lambda e, t: {"building_id": t["building"], "name": secrets.token_hex(4)},
    ),
    Endpoint(
        "update classroom",
        "PATCH",
        lambda e, t: f"/classrooms/{t['classroom']}",
        school_writer,
        lambda e, t: {"grade": 4},
    ),
    Endpoint(
        "create device",
        "POST",
        lambda e, t: "/devices",
        school_writer,
        lambda e, t: {"id": _new_device_id(), "school_code": t["school"]},
    ),
    Endpoint(
        "update device",
        "PATCH",
        lambda e, t: f"/devices/{t['device']}",
        school_writer,
        lambda e, t: {"model": secrets.token_hex(3)},
    ),
    Endpoint("delete device", "DELETE", lambda e, t: f"/devices/{_fresh_device(e, t)}", school_writer),
    Endpoint("import devices", "POST", lambda e, t: "/imports/devices", school_writer, _csv, upload=True),
    Endpoint(
        "create school",
        "POST",
        lambda e, t: "/schools",
        county_writer,
        lambda e, t: {"code": f"n{secrets.token_hex(4)}", "name": "New", "district_code": t["district"]},
    ),
    Endpoint(
        "update school",
        "PATCH",
        lambda e, t: f"/schools/{t['school']}",
        county_writer,
        lambda e, t: {"name": f"School {secrets.token_hex(2)}"},
    ),
    Endpoint(
        "create gateway",
        "POST",
        lambda e, t: "/gateways",
        county_writer,
        lambda e, t: {"school_code": t["school"]},
    ),
    Endpoint("rotate gateway token", "POST", lambda e, t: f"/gateways/{t['gateway']}/token", county_writer),
    Endpoint(
        "create roster entry",
        "POST",
        lambda e, t: f"/schools/{t['school']}/roster",
        personal_data,
        lambda e, t: {"card_pseudonym": secrets.token_hex(8), "person_name": "P"},
    ),
    Endpoint("list work orders", "GET", lambda e, t: f"/work-orders?school={t['school']}", anyone),
    Endpoint("get work order", "GET", lambda e, t: f"/work-orders/{t['order']}", field_reader),
    Endpoint(
        "comment on work order",
        "POST",
        lambda e, t: f"/work-orders/{_fresh_order(e, t)}/comments",
        order_writer,
        lambda e, t: {"text": "seen"},
    ),
    Endpoint(
        "log a part",
        "POST",
        lambda e, t: f"/work-orders/{_fresh_order(e, t)}/parts",
        order_logger,
        lambda e, t: {"part": "fuse"},
    ),
    Endpoint(
        "log time",
        "POST",
        lambda e, t: f"/work-orders/{_fresh_order(e, t)}/time",
        order_logger,
        lambda e, t: {"minutes": 5},
    ),
    Endpoint(
        "accept work order",
        "POST",
        lambda e, t: f"/work-orders/{_fresh_order(e, t)}/actions",
        order_action("accept"),
        lambda e, t: {"action": "accept"},
    ),
    Endpoint(
        "cancel work order",
        "POST",
        lambda e, t: f"/work-orders/{_fresh_order(e, t)}/actions",
        order_action("cancel"),
        lambda e, t: {"action": "cancel"},
    ),
    Endpoint(
        "reprioritise work order",
        "PATCH",
        lambda e, t: f"/work-orders/{_fresh_order(e, t)}",
        within_reach(policy.MANAGE_WORK_ORDERS),
        lambda e, t: {"urgency": "high"},
    ),
    Endpoint("list teams", "GET", lambda e, t: "/teams", anywhere(policy.SEE_TEAMS)),
    Endpoint("get team", "GET", lambda e, t: f"/teams/{t['team']}", county_or_own_team(policy.SEE_TEAMS)),
    Endpoint(
        "rename team",
        "PATCH",
        lambda e, t: f"/teams/{t['team']}",
        within_reach(policy.MANAGE_TEAMS),
        lambda e, t: {"name": f"Team {secrets.token_hex(3)}"},
    ),
    Endpoint("get calendar", "GET", lambda e, t: f"/service-calendars/{t['district']}", anyone),
    Endpoint(
        "set calendar",
        "PUT",
        lambda e, t: f"/service-calendars/{t['district']}",
        within_reach(policy.SET_CALENDARS),
        lambda e, t: {"holidays": ["2026-10-01"]},
    ),
    Endpoint("notifications", "GET", lambda e, t: "/notifications", anyone),
    Endpoint(
        "send command",
        "POST",
        lambda e, t: "/commands",
        command_sender,
        lambda e, t: {"target": {"device": t["device"]}, "name": "ping"},
    ),
    Endpoint(
        "send school command",
        "POST",
        lambda e, t: "/commands",
        group_commander("school"),
        lambda e, t: {"target": {"school": t["school"]}, "name": "ping"},
    ),
    Endpoint("list commands", "GET", lambda e, t: "/commands", anyone),
    Endpoint("device config", "GET", lambda e, t: f"/devices/{t['device']}/config", field_reader),
    Endpoint(
        "set device config",
        "PUT",
        lambda e, t: f"/devices/{t['device']}/config",
        school_writer,
        lambda e, t: {"values": {"health_s": 60}},
    ),
    Endpoint("school figures", "GET", lambda e, t: f"/figures?scope=school&id={t['school']}", figure_reader),
    Endpoint(
        "county figures",
        "GET",
        lambda e, t: f"/figures?scope=county&id={t['district']}",
        within_reach(policy.COUNTY_FIGURES),
    ),
    Endpoint(
        "contractor figures",
        "GET",
        lambda e, t: f"/figures?scope=contractor&id={t['team']}",
        county_or_own_team(policy.CONTRACTOR_FIGURES),
    ),
    Endpoint("figures csv", "GET", lambda e, t: f"/figures/export.csv?scope=school&id={t['school']}", figure_reader),
    Endpoint(
        "create district",
        "POST",
        lambda e, t: "/districts",
        city_writer,
        lambda e, t: {"code": f"x{secrets.token_hex(4)}", "city_code": "c1", "name": "X"},
    ),
    Endpoint(
        "lift sign-in locks",
        "POST",
        lambda e, t: f"/users/{_fresh_school_admin(e, t)}/unlock",
        within_reach(policy.MANAGE_USERS),
    ),
)


@pytest.mark.parametrize("tenant", ["own", "other"])
@pytest.mark.parametrize("person", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.name)
def test_authorization(env: Env, endpoint: Endpoint, person: str, tenant: str) -> None:
    target = env.targets[tenant]
    path = API + endpoint.path(env, target)
    kwargs: dict[str, Any] = {"headers": env.headers(person)}
    if endpoint.upload:
        kwargs["files"] = {"file": ("devices.csv", io.BytesIO(endpoint.body(env, target)))}
    elif endpoint.body is not None:
        kwargs["json"] = endpoint.body(env, target)

    response = env.client.request(endpoint.method, path, **kwargs)

    allowed = endpoint.allowed(person, tenant)
    if endpoint.upload:
        report = response.json()
        assert response.status_code == 200, response.text
        assert (report["created"] == 1) is allowed, report
        return
    if allowed:
        assert response.status_code < 300, f"{person} should be let in: {response.status_code} {response.text}"
        if endpoint.name == "audit log" and not reaches(person, tenant):
            assert response.json()["items"] == [], "a district's staff see only their district's entries"
    else:
        assert response.status_code in (403, 404), f"{person} should be refused: {response.status_code}"
        assert response.json()["detail"], "a refusal says why"


@pytest.mark.parametrize("person", ROLES)
def test_unfiltered_lists_hold_only_what_the_role_may_see(env: Env, person: str) -> None:
    devices = env.client.get(f"{API}/devices", headers=env.headers(person)).json()
    schools = env.client.get(f"{API}/schools", headers=env.headers(person)).json()

    reach = {t["school"] for tenant, t in env.targets.items() if reaches(person, tenant)}
    role, _, district = PEOPLE[person]
    assert {d["school_code"] for d in devices} <= reach
    assert {d["id"] for d in devices} >= {DEVICES[school] for school in reach}
    for school in schools:
        visible = school["code"] in reach or (
            role in policy.COUNTY_STAFF and district in (None, school["district_code"])
        )
        assert visible, f"{person} sees {school}"
