"""`classops demo`: broker, cloud, a school gateway and firmware devices, all real, on this machine."""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import threading
import time
from pathlib import Path

from simulator.school import VirtualSchool
from simulator.stack import CloudServer, GatewayProcess, Mosquitto, http_json, port_open

log = logging.getLogger(__name__)

DEMO_SCHOOL = "S001"
DEMO_SCHOOL_NAME = "Chuzhou No. 1 Primary School"
DEMO_ACCOUNTS = (("county", "county-demo-2026", "county_admin", None),
                 ("school1", "school-demo-2026", "school_admin", DEMO_SCHOOL))
STATUS_EVERY_S = 10.0


def _cloud_port(preferred: int) -> int | None:
    return None if port_open("127.0.0.1", preferred) else preferred


def run_demo(workdir: Path, devices: int = 4, cloud_port: int = 8000, tap_interval_s: float = 2.0,
             duration_s: float | None = None) -> int:
    """Run the demo until Ctrl-C (or for `duration_s`), then stop every process it started."""
    if workdir.exists():
        shutil.rmtree(workdir)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    broker = Mosquitto(workdir / "mosquitto")
    cloud = CloudServer(workdir / "cloud", port=_cloud_port(cloud_port))
    gateway: GatewayProcess | None = None
    school: VirtualSchool | None = None
    try:
        print("Starting Mosquitto ...", flush=True)
        broker.start()
        print("Starting the cloud ...", flush=True)
        cloud.start()
        cloud.add_school(DEMO_SCHOOL, DEMO_SCHOOL_NAME)
        for username, password, role, school_code in DEMO_ACCOUNTS:
            cloud.add_user(username, password, role, school_code)
        credentials = cloud.add_gateway(DEMO_SCHOOL)
        print("Starting the school gateway ...", flush=True)
        gateway = GatewayProcess(
            workdir / "gateway", school=DEMO_SCHOOL, school_secret=secrets.token_hex(16),
            broker_port=broker.port, cloud_url=cloud.url, cloud_token=credentials["token"],
        )
        gateway.start()
        print(f"Starting {devices} attendance terminals on the real MicroPython firmware ...", flush=True)
        school = VirtualSchool(workdir / "devices", school=DEMO_SCHOOL, broker_port=broker.port,
                               devices=devices, health_s=5)
        school.start()
        school.wait_ready(timeout=60)
        school.start_tapping(tap_interval_s)
        token = cloud.login(DEMO_ACCOUNTS[1][0], DEMO_ACCOUNTS[1][1])
        print(
            "\nClassOps demo is running.\n"
            f"  cloud API and its documentation: {cloud.url}/docs\n"
            f"  devices:           {cloud.url}/api/v1/devices\n"
            f"  attendance events: {cloud.url}/api/v1/attendance-events\n"
            f"  broker:            mqtt://127.0.0.1:{broker.port}\n"
            f"  logs:              {workdir}\n"
            "  accounts (POST /api/v1/auth/login, then 'Authorization: Bearer <token>'):\n"
            + "".join(f"    {u} / {p} ({r})\n" for u, p, r, _ in DEMO_ACCOUNTS)
            + "Press Ctrl-C to stop.\n",
            flush=True,
        )
        started = time.monotonic()
        while not stop.wait(STATUS_EVERY_S):
            for alive in (broker, cloud, gateway):
                alive.check_alive()
            _, events = http_json("GET", cloud.url + "/api/v1/attendance-events?limit=1", token=token)
            _, listed = http_json("GET", cloud.url + "/api/v1/devices", token=token)
            listed = listed if isinstance(listed, list) else []
            online = sum(1 for d in listed if d.get("presence") == "online")
            total = events.get("total") if isinstance(events, dict) else "?"
            print(f"[{time.strftime('%H:%M:%S')}] taps made {school.ledger.count()}, "
                  f"attendance events in the cloud {total}, devices online {online}/{devices}", flush=True)
            if duration_s is not None and time.monotonic() - started >= duration_s:
                break
        return 0
    finally:
        print("\nStopping the demo ...", flush=True)
        if school is not None:
            school.stop()
        for part in (gateway, cloud, broker):
            if part is not None:
                part.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("Every process the demo started has stopped.", flush=True)
