"""Figures on a small county whose every value is computed by hand (docs/figures.md), and their exports.

One school day, Monday 2026-01-05, service hours 08:00-18:00 Asia/Shanghai. School s1 has classrooms 101,
102 and 103; blackboards A (in 101) and B (in 102), and sensor C. School s2 has nothing.

- online rate: A reports health in all 10 service hours, B in 5, C in none: 15 / 30 = 0.5
- fault rate: B and C each get a work order: 2 faulty devices / 3 = 0.6667
- MTTR: B's order is resolved two hours after it opened; C's is still open: 2.0 h
- MTBF: 3 devices x 24 h / 2 failures = 36.0 h
- SLA compliance: the one resolved order met both deadlines: 1.0
- coverage: 101 and 102 have a working blackboard, 103 none: 2 / 3 = 0.6667
- blackboard usage: A's counter goes 100.0 -> 103.0 (3 h, used), B's 50.0 -> 50.2 (0.2 h, under the
  0.5 h that counts as used): rate 1 / 2 = 0.5, hours per day (3 + 0.2) / 2 = 1.6
"""

import csv
import io
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from cloud import registry, workorders
from tests.cloud.helpers import CLI, DEVICE_A, DEVICE_B, DEVICE_C, record

API = "/api/v1"
DAY = date(2026, 1, 5)
ZONE = ZoneInfo("Asia/Shanghai")
QUERY = "from=2026-01-05&to=2026-01-05"
EXPECTED = {
    "online_rate": 0.5,
    "fault_rate": 0.6667,
    "mttr_h": 2.0,
    "mtbf_h": 36.0,
    "sla_compliance": 1.0,
    "coverage": 0.6667,
    "coverage_target": 1.0,
    "blackboard_usage_rate": 0.5,
    "blackboard_hours_per_day": 1.6,
    "devices": 3,
    "failures": 2,
    "resolved": 1,
    "classrooms": 3,
    "covered_classrooms": 2,
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


def at(hour: int, minute: int = 0) -> float:
    return datetime.combine(DAY, time(hour, minute), ZONE).timestamp()


def local(hour: int) -> datetime:
    return datetime.combine(DAY, time(hour), ZONE).astimezone(UTC)


@pytest.fixture
def county(client, session, crew, sync):
    building = registry.create_building(session, actor=CLI, school_code="s1", name="Main")
    rooms = [
        registry.create_classroom(session, actor=CLI, building_id=building.id, name=n).id for n in ("101", "102", "103")
    ]
    records = [
        record(1, "birth", DEVICE_A, ts=at(7), role="blackboard", fw="1", app="1"),
        record(2, "birth", DEVICE_B, ts=at(7), role="blackboard", fw="1", app="1"),
        record(3, "birth", DEVICE_C, ts=at(7), role="sensor", fw="1", app="1"),
    ]
    gseq = 3
    for hour in range(8, 18):
        for device in (DEVICE_A, DEVICE_B) if hour < 13 else (DEVICE_A,):
            gseq += 1
            records.append(record(gseq, "health", device, ts=at(hour, 30), uptime_s=60, heap_free=1000))
    for device, hour, usage in ((DEVICE_A, 8, 100.0), (DEVICE_A, 17, 103.0), (DEVICE_B, 9, 50.0), (DEVICE_B, 10, 50.2)):
        gseq += 1
        records.append(record(gseq, "telemetry", device, ts=at(hour), readings={"power": 1, "usage_h": usage}))
    assert not sync(records).json()["rejected"]
    for device, room in ((DEVICE_A, rooms[0]), (DEVICE_B, rooms[1])):
        registry.update_device(session, actor=CLI, device_id=device, changes={"classroom_id": room})
    fixed = workorders.report_fault(session, actor=CLI, device_id=DEVICE_B, description="x", now=local(10))
    workorders.transition(session, actor=CLI, order_id=fixed.id, action="accept", now=local(10))
    workorders.transition(session, actor=CLI, order_id=fixed.id, action="resolve", notes="ok", now=local(12))
    workorders.report_fault(session, actor=CLI, device_id=DEVICE_C, description="y", now=local(11))
    return crew


def _values(figures: dict) -> dict:
    return {name: figures[name] for name in EXPECTED}


def test_school_figures(client, county):
    report = client.get(f"{API}/figures?scope=school&id=s1&{QUERY}", headers=county.user("admin1"))

    assert report.status_code == 200, report.text
    assert _values(report.json()["figures"]) == EXPECTED


def test_county_figures_sum_the_schools(client, county):
    report = client.get(f"{API}/figures?scope=county&id=d1&{QUERY}", headers=county.user("county")).json()

    assert _values(report["figures"]) == EXPECTED
    s2 = next(school for school in report["schools"] if school["school_code"] == "s2")
    assert (s2["devices"], s2["online_rate"], s2["coverage"]) == (0, None, None)


def test_contractor_figures_for_the_team_and_its_manager(client, county):
    mine = client.get(f"{API}/figures?scope=contractor&id={county.team_id}&{QUERY}", headers=county.user("boss"))
    theirs = client.get(f"{API}/figures?scope=contractor&id={county.team_id}&{QUERY}", headers=county.user("admin1"))
    county_view = client.get(f"{API}/figures?scope=county&{QUERY}", headers=county.user("boss"))

    assert _values(mine.json()["figures"]) == EXPECTED
    assert theirs.status_code == 403 and county_view.status_code == 403


def test_csv_and_xlsx_exports(client, county):
    csv_response = client.get(f"{API}/figures/export.csv?scope=county&id=d1&{QUERY}", headers=county.user("county"))
    xlsx_response = client.get(f"{API}/figures/export.xlsx?scope=county&id=d1&{QUERY}", headers=county.user("auditor"))

    rows = list(csv.reader(io.StringIO(csv_response.content.decode("utf-8-sig"))))
    assert rows[0][:6] == ["scope", "id", "from", "to", "school_code", "school_name"]
    assert [row[4] for row in rows[1:]] == ["s1", "s2", "TOTAL"]
    total = dict(zip(rows[0], rows[-1], strict=True))
    assert (total["online_rate"], total["coverage"], total["mttr_h"]) == ("0.5", "0.6667", "2.0")
    assert "attachment" in csv_response.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(xlsx_response.content)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[-1][4] == "TOTAL" and values[-1][values[0].index("blackboard_hours_per_day")] == 1.6


BAD_QUERIES = (
    "scope=planet",
    "scope=school",
    "scope=contractor&id=abc",
    "scope=county&from=2026-02-01&to=2026-01-01",
    "scope=county&from=2020-01-01&to=2026-01-01",
    "scope=county&from=yesterday",
)


def test_bad_figure_queries_are_4xx(client, county):
    for query in BAD_QUERIES:
        response = client.get(f"{API}/figures?{query}", headers=county.user("county"))

        assert 400 <= response.status_code < 500 and response.json()["detail"], query


def test_other_schools_and_roles_are_refused(client, county):
    assert client.get(f"{API}/figures?scope=school&id=s1", headers=county.user("admin2")).status_code == 404
    assert client.get(f"{API}/figures?scope=county", headers=county.user("admin1")).status_code == 403
    assert client.get(f"{API}/figures?scope=school&id=s1", headers=county.user("tech")).status_code == 403
