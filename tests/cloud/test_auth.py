"""Login sessions: /api/v1/auth."""

from datetime import timedelta

from sqlmodel import Session

from cloud import crud
from cloud.core.security import hash_token
from cloud.models import AuthToken, Gateway, utcnow
from tests.cloud.helpers import CLI, PASSWORD


def _login(client, username: str, password: str = PASSWORD):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def test_login_gives_a_bearer_token_that_works(client, world):
    response = _login(client, "county")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_at"] > utcnow().isoformat()
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["username"] == "county"
    assert me.json()["role"] == "county_admin"
    assert "password_hash" not in me.json()


def test_wrong_password_and_unknown_user_get_the_same_401(client, world):
    wrong = _login(client, "county", "not-the-password")
    unknown = _login(client, "nobody")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "incorrect username or password" in wrong.json()["detail"]


def test_login_body_must_have_username_and_password(client, world):
    assert client.post("/api/v1/auth/login", json={"username": "county"}).status_code == 422


def test_logout_revokes_the_token(client, world):
    headers = world.user("county")

    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_requests_without_a_valid_user_token_get_401(client, world):
    missing = client.get("/api/v1/devices")
    bogus = client.get("/api/v1/devices", headers={"Authorization": "Bearer bogus"})
    basic = client.get("/api/v1/devices", headers={"Authorization": "Basic Y291bnR5OnB3"})
    gateway = client.get("/api/v1/devices", headers=world.gateway("s1"))

    assert [r.status_code for r in (missing, bogus, basic, gateway)] == [401, 401, 401, 401]
    assert missing.headers["www-authenticate"] == "Bearer"


def test_expired_token_is_refused(client, world, session: Session):
    user = crud.get_user_by_username(session, username="county")
    token, _ = crud.create_auth_token(session, user=user, ttl=timedelta(minutes=5), now=utcnow() - timedelta(hours=1))

    response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401


def test_disabled_user_can_neither_log_in_nor_use_a_token(client, world, session: Session):
    crud.set_user_active(session, actor=CLI, username="county", is_active=False)

    assert _login(client, "county").status_code == 401
    assert client.get("/api/v1/auth/me", headers=world.user("county")).status_code == 401


def test_tokens_are_stored_only_as_hashes(client, world, session: Session):
    token = world.user_tokens["county"]
    assert session.get(AuthToken, token) is None
    assert session.get(AuthToken, hash_token(token)) is not None
    assert session.get(Gateway, world.gateway_ids["s1"]).token_hash == hash_token(world.gateway_tokens["s1"])
