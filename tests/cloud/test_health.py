"""Readiness and API docs."""


def test_healthz_answers_without_auth(client):
    response = client.get("/api/v1/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/gateway/sync", "/api/v1/auth/login", "/api/v1/attendance-events"} <= set(paths)
