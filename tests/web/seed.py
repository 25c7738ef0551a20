"""A small county for the console's tests, put into a real cloud through its CLI and API as people would:
two schools of one district, their classrooms and devices, a contractor team, a gateway's reports and
an alarm that opens a work order for the technician."""

import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from simulator.stack import CloudServer, http_json

PASSWORD = "web-console-pw-1"
DISTRICT = "D1"
SCHOOL_A = "S1"
SCHOOL_B = "S2"
BOARD_A1 = "esp32-00000000a101"
SENSOR_A1 = "esp32-00000000a102"
READER_A1 = "esp32-00000000a103"
BOARD_A2 = "esp32-00000000a201"
BOARD_B1 = "esp32-00000000b101"
BOOT = "1a2b3c4d"
CARDS = ("card-001", "card-002", "card-003")


@dataclass
class County:
    """What the tests need to know of the seeded county."""

    url: str
    tokens: dict[str, str] = field(default_factory=dict)
    gateways: dict[str, str] = field(default_factory=dict)
    classrooms: dict[str, int] = field(default_factory=dict)

    def api(self, method: str, path: str, body: Any = None, *, user: str = "county") -> Any:
        """Call the API as one of the seeded people; fail on anything but success."""
        status, answer = http_json(method, self.url + "/api/v1" + path, body, token=self.tokens[user])
        if status >= 300:
            raise AssertionError(f"{method} {path} as {user}: {status} {answer}")
        return answer

    def sync(self, school: str, records: list[dict[str, Any]]) -> None:
        """Push a batch of device records as the school's gateway."""
        status, answer = http_json(
            "POST",
            self.url + "/api/v1/gateway/sync",
            {"records": records, "sent_at": time.time()},
            token=self.gateways[school],
        )
        if status != 200 or answer["rejected"]:
            raise AssertionError(f"sync of {school}: {status} {answer}")


def _record(gseq: int, kind: str, device: str, ts: float, **body: Any) -> dict[str, Any]:
    return {"gseq": gseq, "kind": kind, "device": device, "boot": BOOT, "seq": gseq, "ts": ts, "body": body}


def _device_reports(devices: list[tuple[str, str]], start_gseq: int, now: float) -> list[dict[str, Any]]:
    records = []
    gseq = start_gseq
    for device, role in devices:
        records.append(
            _record(gseq, "birth", device, now - 300, role=role, fw="1.4.2", app="0.9.0", reset="power_on", health_s=60)
        )
        gseq += 1
        for minutes_ago in (4, 2, 0):
            records.append(
                _record(
                    gseq,
                    "health",
                    device,
                    now - minutes_ago * 60,
                    uptime_s=300 - minutes_ago * 60,
                    heap_free=96_000 - minutes_ago * 100,
                    heap_max_block=40_000,
                    rssi=-58 - minutes_ago,
                    errors={},
                    buffered=0,
                )
            )
            gseq += 1
        if role == "blackboard":
            for hours_ago, usage in ((3, 10.0), (0, 12.5)):
                records.append(
                    _record(
                        gseq, "telemetry", device, now - hours_ago * 3600 + 1, readings={"usage_h": usage, "power": 1}
                    )
                )
                gseq += 1
    return records


def seed(cloud: CloudServer) -> County:
    """Register the county, its people and devices, and feed in a gateway's reports."""
    cloud.admin("add-city", "--code", "C1", "--name", "滁州市")
    cloud.admin("add-district", "--code", DISTRICT, "--city", "C1", "--name", "南谯区")
    cloud.admin(
        "add-user", "--username", "county", "--password", PASSWORD, "--role", "county_admin", "--district", DISTRICT
    )
    county = County(url=cloud.url)
    county.tokens["county"] = cloud.login("county", PASSWORD)
    county.api("POST", "/schools", {"code": SCHOOL_A, "name": "城东小学", "district_code": DISTRICT})
    county.api("POST", "/schools", {"code": SCHOOL_B, "name": "西湖中学", "district_code": DISTRICT})
    for username, role, school in (
        ("admin_a", "school_admin", SCHOOL_A),
        ("admin_b", "school_admin", SCHOOL_B),
        ("tech", "technician", None),
    ):
        cloud.add_user(username, PASSWORD, role, school)
        county.tokens[username] = cloud.login(username, PASSWORD)
    for school in (SCHOOL_A, SCHOOL_B):
        county.gateways[school] = cloud.add_gateway(school)["token"]
    team = county.api("POST", "/teams", {"name": "皖东维保", "districts": [DISTRICT]})
    county.api("POST", f"/teams/{team['id']}/members", {"username": "tech"})

    building_a = county.api("POST", "/buildings", {"school_code": SCHOOL_A, "name": "教学楼"})
    building_b = county.api("POST", "/buildings", {"school_code": SCHOOL_B, "name": "博学楼"})
    for key, building, name, label in (
        ("A101", building_a, "101", "三年级一班"),
        ("A102", building_a, "102", "三年级二班"),
        ("B201", building_b, "201", "七年级一班"),
    ):
        room = county.api(
            "POST", "/classrooms", {"building_id": building["id"], "name": name, "grade": 3, "class_label": label}
        )
        county.classrooms[key] = room["id"]
    devices = (
        (BOARD_A1, SCHOOL_A, "A101", "blackboard"),
        (SENSOR_A1, SCHOOL_A, "A101", "sensor"),
        (READER_A1, SCHOOL_A, "A101", "attendance"),
        (BOARD_A2, SCHOOL_A, "A102", "blackboard"),
        (BOARD_B1, SCHOOL_B, "B201", "blackboard"),
    )
    for device, school, room, role in devices:
        county.api(
            "POST",
            "/devices",
            {"id": device, "school_code": school, "classroom_id": county.classrooms[room], "role": role},
        )

    now = time.time()
    records_a = _device_reports([(d, r) for d, s, _, r in devices if s == SCHOOL_A], 1, now)
    gseq = len(records_a) + 1
    for index, card in enumerate(CARDS[:2]):
        records_a.append(
            {
                "gseq": gseq,
                "kind": "attendance",
                "device": READER_A1,
                "boot": BOOT,
                "seq": gseq,
                "ts": now - 60 + index,
                "body": {"card": card, "hist": False},
            }
        )
        gseq += 1
    # The sensor's alarm opens a work order, auto-assigned to the district's technician.
    records_a.append(
        _record(gseq, "alarm", SENSOR_A1, now - 30, code="sensor_fault", state="raise", detail="CO2 sensor silent")
    )
    county.sync(SCHOOL_A, records_a)
    county.sync(SCHOOL_B, _device_reports([(BOARD_B1, "blackboard")], 1, now))
    for card, name, room in zip(CARDS, ("张三", "李四", "王五"), ("A101", "A101", "A101"), strict=True):
        county.api(
            "POST",
            f"/schools/{SCHOOL_A}/roster",
            {
                "card_pseudonym": card,
                "person_name": name,
                "class_label": "三年级一班",
                "classroom_id": county.classrooms[room],
            },
            user="admin_a",
        )
    return county


def form_post(url: str, fields: dict[str, str], token: str) -> tuple[int, bytes]:
    """POST url-encoded fields with a bearer token (the API's form endpoints)."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
