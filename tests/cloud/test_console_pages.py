"""The console's pages are adapters over the data layer: they read nothing the API's functions do not give
the signed-in user, and what a page shows follows the same tenancy as the API."""

import ast
import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from cloud.models import WorkOrder, utcnow
from tests.cloud.helpers import DEVICE_A, Crew, World, record

API = "/api/v1"
WEB = Path(__file__).resolve().parents[2] / "cloud" / "web"


def _query_calls(path: Path) -> list[str]:
    """Where a console module builds a query, runs one on the session, or borrows from an API route module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {alias.name for alias in node.names}
            if node.module.startswith("cloud.api.routes") or (
                node.module in ("sqlmodel", "sqlalchemy") and names & {"select", "col", "func"}
            ):
                found.append(f"{path.name}:{node.lineno} imports {node.module}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if (
                node.func.attr in ("exec", "get", "execute", "scalars")
                and isinstance(target, ast.Name)
                and target.id == "session"
            ):
                found.append(f"{path.name}:{node.lineno} calls session.{node.func.attr}")
    return found


def test_no_console_module_runs_its_own_queries() -> None:
    modules = sorted(WEB.rglob("*.py"))
    assert any(path.parent.name == "pages" for path in modules)

    found = [place for path in modules for place in _query_calls(path)]

    assert not found, found


def _live(client: TestClient, token: str, keys: list[str]) -> dict:
    client.cookies.set("classops_session", token)
    response = client.get("/live", params={"keys": ",".join(keys)}, headers={"X-Requested-With": "fetch"})
    assert response.status_code == 200, response.text
    return response.json()


def test_live_status_shows_what_each_user_may_see(client: TestClient, world: World, sync) -> None:
    response = sync([record(1, "presence", state="online")])
    assert response.status_code == 200 and not response.json()["rejected"], response.text
    order = client.post(
        f"{API}/fault-reports", data={"device_id": DEVICE_A, "description": "no light"}, headers=world.user("admin1")
    )
    assert order.status_code == 201, order.text
    batch = client.post(
        f"{API}/commands", json={"target": {"school": "s1"}, "name": "reboot"}, headers=world.user("admin1")
    )
    assert batch.status_code == 201, batch.text
    keys = [f"device:{DEVICE_A}", f"order:{order.json()['id']}", f"batch:{batch.json()['id']}"]

    own = _live(client, world.user_tokens["admin1"], keys)
    county = _live(client, world.user_tokens["county"], keys)
    other = _live(client, world.user_tokens["admin2"], keys)

    assert set(own) == set(keys)
    assert own[f"device:{DEVICE_A}"]["cls"] == "st-online"
    assert own[f"order:{order.json()['id']}"]["cls"] == f"st-{order.json()['status']}"
    assert own[f"batch:{batch.json()['id']}"]["text"]
    assert county == own
    assert other == {}


def test_the_county_scorecard_counts_a_team_s_open_and_overdue_orders(
    client: TestClient, world: World, crew: Crew, sync, session: Session
) -> None:
    assert sync([record(1, "presence", state="online")]).status_code == 200
    ids = []
    for fault in ("no_light", "no_sound"):
        response = client.post(
            f"{API}/fault-reports",
            data={"device_id": DEVICE_A, "description": fault, "fault_code": fault},
            headers=world.user("admin1"),
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    session.rollback()  # a new transaction, that sees the orders the API stored
    orders = session.exec(select(WorkOrder).where(col(WorkOrder.id).in_(ids))).all()
    assert [order.team_id for order in orders] == [crew.team_id, crew.team_id]
    late = session.get(WorkOrder, ids[0])
    assert late is not None
    late.own_due_at = utcnow() - timedelta(hours=1)
    session.add(late)
    session.commit()

    client.cookies.set("classops_session", world.user_tokens["county"])
    page = client.get("/county")

    assert page.status_code == 200, page.text
    row = re.search(rf'<tr data-team="{crew.team_id}">(.*?)</tr>', page.text, re.S)
    assert row is not None, page.text
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert cells[0] == "Fixers"
    assert cells[4:6] == ["2", "1"]
