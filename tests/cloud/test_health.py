"""Readiness and API docs."""


def test_healthz_answers_without_auth(client):
    response = client.get("/api/v1/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/v1/gateway/sync",
        "/api/v1/auth/login",
        "/api/v1/attendance-events",
        "/api/v1/attendance/daily",
        "/api/v1/devices/{device_id}/label.svg",
        "/api/v1/imports/devices",
        "/api/v1/audit-log",
        "/api/v1/schools/{school_code}/roster",
    } <= set(paths)
    assert not any(method in paths["/api/v1/audit-log"] for method in ("post", "put", "patch", "delete"))
