"""The console's cookies are Secure (sent over HTTPS only) exactly when people reach the service by https."""

import re

import pytest

from cloud.core.config import Settings
from tests.cloud.helpers import PASSWORD


@pytest.fixture(params=["https://ops.county.example", "http://127.0.0.1:8000"])
def settings(request: pytest.FixtureRequest, database_url: str, tmp_path) -> Settings:
    return Settings(
        database_url=database_url,
        maintenance_interval_s=0,
        operations_interval_s=0,
        media_dir=str(tmp_path / "media"),
        public_base_url=request.param,
    )


def test_every_cookie_is_secure_when_the_public_url_is_https(client, world, settings):
    https = settings.public_base_url.startswith("https://")
    # The browser's view of the site: a cookie marked Secure comes back only over https.
    client.base_url = "https://testserver" if https else "http://testserver"

    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    signed_in = client.post(
        "/login", data={"csrf": csrf, "username": "admin1", "password": PASSWORD}, follow_redirects=False
    )
    english = client.get("/lang/en", follow_redirects=False)

    assert signed_in.status_code == 303, signed_in.text
    cookies = {
        header.split("=", 1)[0]: header.lower()
        for answer in (page, signed_in, english)
        for header in answer.headers.get_list("set-cookie")
    }
    assert set(cookies) == {"classops_csrf", "classops_session", "classops_lang"}
    assert {name: "; secure" in header for name, header in cookies.items()} == dict.fromkeys(cookies, https)
