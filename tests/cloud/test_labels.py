"""QR labels of devices and the /d/<id> address they encode."""

import xml.etree.ElementTree as ET

import pytest

from cloud.core.config import Settings
from tests.cloud.helpers import DEVICE_A, DEVICE_C

API = "/api/v1"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, maintenance_interval_s=0, public_base_url="https://ops.example.edu/")


@pytest.fixture
def device(client, world):
    body = {"id": DEVICE_A, "school_code": "s1", "asset_tag": "A-<1>", "model": "CO-2", "vendor": "Acme"}
    assert client.post(f"{API}/devices", json=body, headers=world.user("county")).status_code == 201


def test_svg_label_encodes_the_device_address(client, world, device):
    response = client.get(f"{API}/devices/{DEVICE_A}/label.svg", headers=world.user("admin1"))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)
    namespace = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{namespace}svg"
    assert root.find(f"{namespace}title").text == f"https://ops.example.edu/d/{DEVICE_A}"
    texts = [node.text for node in root.iter(f"{namespace}text")]
    assert texts == [DEVICE_A, "asset A-<1>", "Acme CO-2"]
    assert root.find(f".//{namespace}path") is not None


def test_png_label_and_access(client, world, device):
    png = client.get(f"{API}/devices/{DEVICE_A}/label.png", headers=world.user("county"))
    other = client.get(f"{API}/devices/{DEVICE_A}/label.svg", headers=world.user("admin2"))
    missing = client.get(f"{API}/devices/{DEVICE_C}/label.svg", headers=world.user("county"))

    assert png.status_code == 200
    assert png.content.startswith(b"\x89PNG")
    assert other.status_code == 404
    assert missing.status_code == 404


def test_label_address_redirects_to_the_device(client, world, device):
    response = client.get(f"/d/{DEVICE_A}", follow_redirects=False)
    bad = client.get("/d/not-a-device", follow_redirects=False)

    assert response.status_code == 307
    assert response.headers["location"] == f"{API}/devices/{DEVICE_A}"
    assert bad.status_code == 404
