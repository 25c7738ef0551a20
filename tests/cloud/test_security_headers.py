"""Security headers, the API documentation switch, and client addresses through trusted proxies only."""

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from starlette.requests import Request

from cloud.api.deps import client_ip
from cloud.core.config import Settings
from cloud.main import create_app
from cloud.models import AuditEntry
from tests.cloud.helpers import PASSWORD

TEMPLATES = Path(__file__).resolve().parents[2] / "cloud" / "web" / "templates"
PROXY = "10.1.2.3"


def _directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


@pytest.mark.parametrize("path", ["/login", "/api/v1/healthz", "/static/console.css", "/no-such-page"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str):
    response = client.get(path)

    policy = _directives(response.headers["content-security-policy"])
    assert policy["script-src"] == "script-src 'self'"
    assert policy["style-src"] == "style-src 'self'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


def test_the_docs_page_gets_its_own_policy_and_still_no_framing(client: TestClient):
    response = client.get("/docs")

    assert response.status_code == 200
    assert "https://cdn.jsdelivr.net" in _directives(response.headers["content-security-policy"])["script-src"]
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("template", sorted(TEMPLATES.glob("*.html")), ids=lambda path: path.name)
def test_templates_hold_no_inline_script_or_style(template: Path):
    text = template.read_text()

    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "inline <script>"
    assert "<style" not in text
    assert not re.search(r"\sstyle\s*=", text), "style attribute"
    assert not re.search(r"\son[a-z]+\s*=", text), "event handler attribute"
    assert "javascript:" not in text


@pytest.mark.parametrize(
    ("api_docs", "openapi_schema", "expected"),
    [(True, True, (200, 200, 200)), (False, True, (404, 404, 200)), (False, False, (404, 404, 404))],
)
def test_api_docs_can_be_switched_off(settings: Settings, api_docs, openapi_schema, expected):
    settings = settings.model_copy(update={"api_docs": api_docs, "openapi_schema": openapi_schema})
    with TestClient(create_app(settings)) as client:
        answers = tuple(client.get(path).status_code for path in ("/docs", "/redoc", "/openapi.json"))

    assert answers == expected


def _request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 1234)})


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        ("", "203.0.113.5", ("1.1.1.1",), "203.0.113.5"),  # no proxy trusted: the header is ignored
        ("10.0.0.0/8", "203.0.113.5", ("1.1.1.1",), "203.0.113.5"),  # not from a trusted proxy
        ("10.0.0.0/8", PROXY, ("6.6.6.6, 203.0.113.9",), "203.0.113.9"),  # the client wrote 6.6.6.6
        ("10.0.0.0/8", PROXY, ("6.6.6.6", "203.0.113.9, 10.9.9.9"), "203.0.113.9"),  # two trusted hops
        ("10.0.0.0/8", PROXY, ("10.4.4.4, 10.9.9.9",), "10.4.4.4"),  # every hop trusted: the farthest
        ("10.0.0.0/8", PROXY, (), PROXY),  # a proxy that did not say: the proxy
        ("10.0.0.0/8", PROXY, ("not-an-address, 10.9.9.9",), "10.9.9.9"),
        ("10.0.0.0/8,2001:db8::/32", "2001:db8::1", ("[2001:db8:1::5]:443, 198.51.100.3:5555",), "198.51.100.3"),
    ],
)
def test_client_address_is_read_from_the_right_past_trusted_proxies(trusted, peer, forwarded, expected):
    settings = Settings(trusted_proxies=trusted)

    assert client_ip(_request(peer, *forwarded), settings) == expected


def test_a_sign_in_through_the_proxy_is_logged_with_the_real_client_not_the_spoofed_one(
    settings: Settings, world, session: Session
):
    settings = settings.model_copy(update={"trusted_proxies": Settings(trusted_proxies="10.0.0.0/8").trusted_proxies})
    with TestClient(create_app(settings), client=(PROXY, 5000)) as client:
        response = client.post(
            "/api/v1/auth/login",
            json={"username": "county", "password": PASSWORD},
            headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.77"},
        )

    assert response.status_code == 200, response.text
    session.rollback()
    login = session.exec(select(AuditEntry).where(AuditEntry.action == "login")).all()[-1]
    assert login.client_ip == "203.0.113.77"


def test_trusted_proxies_come_from_the_environment_as_a_list(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CLASSOPS_CLOUD_TRUSTED_PROXIES", "10.0.0.0/8, ::1")

    assert [str(network) for network in Settings().trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.1/8")
