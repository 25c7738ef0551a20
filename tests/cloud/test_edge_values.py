"""Values at the edges (the ends of the calendar, Unicode digits, huge ids, control characters) are refused
with a documented 4xx, by the API and the console alike; an unexpected failure is a 500 with a request id."""

import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.api.responses import REQUEST_ID_HEADER
from cloud.core.config import Settings
from cloud.main import create_app
from tests.cloud.helpers import DEVICE_A, World, record

API = "/api/v1"
FUTURE_END = "9999-12-31T23:59:59-12:00"
PAST_END = "0001-01-01T00:00:00%2B12:00"  # "+" in a query string is a space
DEVICE_HISTORY = (f"/devices/{DEVICE_A}/health", f"/devices/{DEVICE_A}/health/hourly", f"/devices/{DEVICE_A}/telemetry")
API_EDGES = (
    f"/alarms?since={FUTURE_END}",
    f"/alarms?until={PAST_END}",
    f"/attendance-events?school=s1&since={FUTURE_END}",
    f"/attendance-events?school=s1&since={PAST_END}",
    *(f"{path}?since={FUTURE_END}" for path in DEVICE_HISTORY),
    *(f"{path}?until={PAST_END}" for path in DEVICE_HISTORY),
    "/attendance/daily?school=s1&date=9999-12-31",
    "/figures?scope=county&to=9999-12-31",
    "/figures?scope=county&from=0001-01-01",
    "/figures?scope=county&from=0001-01-01&to=0001-01-02",
    "/figures?scope=contractor&id=²",
    "/figures/export.xlsx?scope=county&id=d1%00",
    "/figures/export.csv?scope=school&id=s1%01",
    # A number is not a date-time, nor a date.
    "/alarms?since=0.5",
    "/audit-log?since=1767225600",
    "/figures?scope=county&to=20261231",
)
CONSOLE_EDGES = (
    "/attendance?school=s1&day=9999-12-31",
    "/county?to=9999-12-31",
    "/county?from=0001-01-01",
    "/county?from=0001-01-01&to=0001-01-02",
    "/live?keys=order:²",
    "/live?keys=order:99999999999999999999",
    "/orders/99999999999999999999",
    "/orders/1/photos/99999999999999999999",
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Both stores: the edges are refused before either is asked."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def tolerant(settings: Settings) -> Iterator[TestClient]:
    """A client that gets a server error as a 500 response, as a real client would, not as an exception."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def devices(sync, world: World) -> None:
    """Device A of s1 with a health report, a reading and an alarm."""
    response = sync(
        [
            record(1, "health", uptime_s=10, heap_free=40_000),
            record(2, "telemetry", readings={"co2": 700}),
            record(3, "alarm", code="offline", state="raise"),
        ]
    )
    assert response.status_code == 200 and not response.json()["rejected"], response.text


def _is_validation_error(body: dict) -> bool:
    """FastAPI's HTTPValidationError: a list of {loc, msg, type}."""
    detail = body.get("detail")
    return (
        isinstance(detail, list)
        and len(detail) > 0
        and all(isinstance(e.get("loc"), list) and isinstance(e.get("msg"), str) for e in detail)
        and all(isinstance(e.get("type"), str) for e in detail)
    )


def test_api_refuses_edge_values_with_a_validation_error(tolerant: TestClient, world: World, devices: None) -> None:
    wrong = []
    for path in API_EDGES:
        # Raw attendance events are the school admins' alone; the county admin reaches everything else.
        user = "admin1" if path.startswith("/attendance-events") else "county"
        response = tolerant.get(API + path, headers=world.user(user))
        is_json = response.headers.get("content-type", "").startswith("application/json")
        if response.status_code != 422 or not is_json or not _is_validation_error(response.json()):
            wrong.append(f"{path}: {response.status_code} {response.text[:200]}")

    assert not wrong, "\n".join(wrong)


def test_console_refuses_edge_values(tolerant: TestClient, world: World) -> None:
    tolerant.cookies.set("classops_session", world.user_tokens["county"])
    wrong = []
    for path in CONSOLE_EDGES:
        # As the console's script asks: errors come back as JSON.
        response = tolerant.get(path, headers={"X-Requested-With": "fetch"})
        is_json = response.headers.get("content-type", "").startswith("application/json")
        if not 400 <= response.status_code < 500 or not is_json or not isinstance(response.json()["detail"], str):
            wrong.append(f"{path}: {response.status_code} {response.text[:200]}")

    assert not wrong, "\n".join(wrong)


def test_the_calendar_within_its_years_is_answered(client: TestClient, world: World, devices: None) -> None:
    ends = (
        "/alarms?since=2000-01-01T00:00:00%2B12:00&until=2099-12-31T23:59:59-12:00",
        f"/devices/{DEVICE_A}/health?since=2025-12-31T08:00&until=2026-01-02T00:00:00Z",
        "/figures?scope=county&from=2099-12-01&to=2099-12-31",
        "/attendance/daily?school=s1&date=2000-01-01",
    )
    for path in ends:
        response = client.get(API + path, headers=world.user("county"))
        assert response.status_code == 200, (path, response.text)
    health = client.get(f"{API}/devices/{DEVICE_A}/health?since=2025-12-31T08:00", headers=world.user("county"))
    assert len(health.json()) == 1


def test_a_domain_rule_refusal_is_a_validation_error(client: TestClient, world: World) -> None:
    # "from after to" passes every parameter's own check; the figures' rule refuses it.
    response = client.get(API + "/figures?scope=county&from=2026-02-01&to=2026-01-01", headers=world.user("county"))

    assert response.status_code == 422
    assert _is_validation_error(response.json())
    assert "from must not be after to" in response.json()["detail"][0]["msg"]


def test_names_with_control_characters_are_refused(client: TestClient, world: World) -> None:
    response = client.patch(API + "/schools/s1", json={"name": "School\x00One"}, headers=world.user("county"))

    assert response.status_code == 422 and _is_validation_error(response.json()), response.text
    assert client.get(API + "/schools/s1", headers=world.user("county")).json()["name"] == "School s1"


def test_every_operation_documents_its_error_shapes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    undocumented = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path == API + "/healthz" or not path.startswith(API):
                continue
            for status in ("401", "403", "404", "422", "500"):
                if status not in responses:
                    undocumented.append(f"{method.upper()} {path} {status}")
            if responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema") != {
                "$ref": "#/components/schemas/HTTPValidationError"
            }:
                undocumented.append(f"{method.upper()} {path} 422 shape")
    assert not undocumented
    assert spec["components"]["schemas"]["ErrorResponse"]["required"] == ["detail"]
    assert set(spec["components"]["schemas"]["ServerErrorResponse"]["required"]) == {"detail", "request_id"}


def _failing_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.get("/api/v1/fails")
    def fails() -> None:
        raise RuntimeError("the disk is on fire")

    return app


def test_an_unexpected_failure_is_a_500_with_a_logged_request_id(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(_failing_app(settings), raise_server_exceptions=False) as test_client:
        with caplog.at_level(logging.ERROR, logger="cloud.api.responses"):
            response = test_client.get(API + "/fails")
            given = test_client.get(API + "/fails", headers={REQUEST_ID_HEADER: "lb-0123456789"})

    assert response.status_code == 500
    request_id = response.json()["request_id"]
    assert response.headers[REQUEST_ID_HEADER] == request_id
    assert request_id in response.json()["detail"]
    assert "disk" not in response.text
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert logged and logged[0].exc_info is not None and "disk is on fire" in str(logged[0].exc_info[1])
    assert given.json()["request_id"] == "lb-0123456789"


def test_console_forms_refuse_numbers_that_are_not_ascii_digits(tolerant: TestClient, world: World) -> None:
    # "²" passes str.isdigit() and then fails int().
    posts = (
        ("admin1", "/roster/add", {"card_pseudonym": "p-1", "person_name": "Li Lei", "classroom_id": "²"}),
        ("county", "/commands", {"name": "reboot", "classroom": "²"}),
        ("county", "/commands", {"name": "reboot", "classroom": "999999999999"}),
    )
    tolerant.cookies.set("classops_csrf", "csrf-token-of-this-browser")
    for user, path, form in posts:
        tolerant.cookies.set("classops_session", world.user_tokens[user])

        response = tolerant.post(
            path, data={**form, "csrf": "csrf-token-of-this-browser"}, headers={"X-Requested-With": "fetch"}
        )

        assert response.status_code == 422, (path, form, response.text)
        assert "classroom" in response.json()["detail"]
