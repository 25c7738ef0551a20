"""`classops demo`: Mosquitto, the cloud, and three schools of eight classrooms on the real firmware, with a
fault about every minute that is lifted a minute or two later, so that work orders open, get assigned and
are verified by the devices while you watch. Ctrl-C stops every process it started."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from simulator.cloudapi import CloudApiError
from simulator.county import COUNTY_ADMIN, SCHOOL_ADMIN_PASSWORD, County, fresh_workdir, school_admin
from simulator.ledger import LedgerWriter, make_plan
from simulator.scenario import load_scenario
from simulator.stack import port_open

log = logging.getLogger(__name__)

DEMO_SCENARIO = "demo"
TECHNICIAN = ("tech1", "tech-demo-2026")
ORDERS_EVERY_S = 10.0


def _cloud_port(preferred: int) -> int | None:
    return None if port_open("127.0.0.1", preferred) else preferred


def _add_staff(county: County) -> None:
    """A contractor team covering every district, with one technician, so orders get assigned."""
    assert county.api is not None
    county.cloud.add_user(TECHNICIAN[0], TECHNICIAN[1], "technician")
    team = county.api.post("/teams", {"name": "Demo maintenance contractor",
                                       "districts": [d.code for d in county.scenario.districts]})
    county.api.post(f"/teams/{team['id']}/members", {"username": TECHNICIAN[0]})


class OrderWatch:
    """Counts the cloud's work orders in the background, for the progress line."""

    def __init__(self, county: County) -> None:
        self.county = county
        self.text = "orders: -"
        self._thread = threading.Thread(target=self._run, name="order-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self.county.stop_event.wait(ORDERS_EVERY_S):
            api = self.county.api
            if api is None:
                continue
            try:
                orders = list(api.pages("/work-orders", limit=1000))
            except CloudApiError:
                self.text = "orders: (cloud away)"
                continue
            active = sum(1 for o in orders if o["status"] not in ("resolved", "closed", "cancelled"))
            verified = sum(1 for o in orders if o.get("verified_by_device_at"))
            self.text = f"orders {len(orders)}: {active} open, {verified} verified"


def run_demo(workdir: Path, cloud_port: int = 8000, duration_s: float | None = None, seed: int | None = None) -> int:
    """Run the demo until Ctrl-C (or for `duration_s`), then stop every process it started."""
    scenario = load_scenario(DEMO_SCENARIO)
    fresh_workdir(workdir)
    plan = make_plan(scenario, seed)
    writer = LedgerWriter(workdir / "ledger.jsonl")
    writer.write_plan(plan)
    county = County(scenario, plan, workdir, writer, cloud_port=_cloud_port(cloud_port))
    previous = {sig: signal.signal(sig, lambda *_: county.stop_event.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        county.start()
        _add_staff(county)
        county.wait_admins()
        watch = OrderWatch(county)
        watch.start()
        devices = sum(len(r.devices) for r in county.schools.values())
        accounts = [(*COUNTY_ADMIN, "county admin, every school"), (*TECHNICIAN, "technician, gets the orders")]
        accounts += [(school_admin(code), SCHOOL_ADMIN_PASSWORD, f"school admin of {code}") for code in county.schools]
        print(
            "\nClassOps demo is running.\n"
            f"  web console:   {county.cloud.url}/\n"
            f"  API and docs:  {county.cloud.url}/docs\n"
            f"  schools:       {', '.join(county.schools)} ({devices} devices on the real firmware)\n"
            f"  faults:        about one a minute, each lifted after {scenario.random_faults.duration_s[0]:g}-"  # type: ignore[union-attr]
            f"{scenario.random_faults.duration_s[1]:g} s; work orders open, then get verified\n"  # type: ignore[union-attr]
            f"  ground truth:  {writer.path} (`classops sim verify {workdir}` compares it with the cloud)\n"
            f"  logs:          {workdir}\n"
            "  accounts:\n"
            + "".join(f"    {u:18} {p:18} {what}\n" for u, p, what in accounts)
            + "Press Ctrl-C to stop.\n",
            flush=True,
        )
        until = duration_s if duration_s is not None else scenario.minutes * 60
        county.run(progress=True, until_s=until, status=lambda: watch.text)
        return 0
    finally:
        print("\nStopping the demo ...", flush=True)
        county.stop()
        writer.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"Every process the demo started has stopped ({time.strftime('%H:%M:%S')}).", flush=True)
