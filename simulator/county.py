"""A simulated county: one cloud, and per school its own Mosquitto, gateway, internet link, hardware bus,
virtual displays and firmware VMs, all real processes; the plan's taps and faults carried out on time.

Devices are packed many to a MicroPython VM, except those the plan kills: each of those gets a VM of its
own, so that killing it is one device's power cut and not its neighbours'.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from simulator.cloudapi import CloudApi, CloudApiError
from simulator.display import VirtualDisplay
from simulator.firmware import FirmwareProcess, write_device_config
from simulator.hwbus import HardwareBus, HardwareBusError
from simulator.ledger import LedgerWriter, Plan, PlannedDevice, PlannedFault
from simulator.links import LinkHub, SchoolLink
from simulator.scenario import Scenario, seconds_of_day
from simulator.stack import CloudServer, GatewayProcess, Mosquitto, StackError, wait_for

log = logging.getLogger(__name__)

COUNTY_ADMIN = ("county", "county-demo-2026")
SCHOOL_ADMIN_PASSWORD = "school-demo-2026"
TAP_TIMEOUT_S = 10.0
START_WORKERS = 8
TAP_WORKERS = 16
SENSOR_WORKERS = 16
PROGRESS_EVERY_S = 2.0
PROGRESS_LINE_EVERY_S = 30.0
READY_TIMEOUT_S = 120.0
COMMAND_TTL_S = 600
ADMIN_ATTEMPTS = 3
IMPORT_ROWS = 1000


def school_admin(code: str) -> str:
    """User name of a school's demo admin."""
    return f"admin-{code.lower()}"


def _gateway_extras(scenario: Scenario) -> str:
    """The gateway's calendar and rules: the simulated school is in session whenever it runs."""
    t = scenario.timing
    return (
        "[calendar]\n"
        f'timezone = "{scenario.timezone}"\n'
        "weekdays = [1, 2, 3, 4, 5, 6, 7]\n"
        'hours = ["00:00:00", "23:59:59"]\n\n'
        "[rules]\n"
        f"offline_grace_s = {t.offline_grace_s}\n"
        f"evaluate_every_s = {t.rules_every_s}\n"
    )


@dataclass
class SchoolRig:
    """One school's processes and virtual hardware."""

    code: str
    devices: list[PlannedDevice]
    workdir: Path
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    broker: Mosquitto | None = None
    gateway: GatewayProcess | None = None
    gateway_id: str = ""
    token: str = ""
    link: SchoolLink | None = None
    bus: HardwareBus = field(default_factory=HardwareBus)
    displays: dict[str, VirtualDisplay] = field(default_factory=dict)
    vms: list[FirmwareProcess] = field(default_factory=list)
    vm_of: dict[str, FirmwareProcess] = field(default_factory=dict)


class County:
    """The whole simulated county; `start()`, then `run()`, then `stop()` (always)."""

    def __init__(self, scenario: Scenario, plan: Plan, workdir: Path, ledger: LedgerWriter, *,
                 cloud_port: int | None = None, out: TextIO | None = None) -> None:
        self.scenario = scenario
        self.plan = plan
        self.workdir = workdir
        self.ledger = ledger
        self.out = out or sys.stdout
        t = scenario.timing
        self.cloud = CloudServer(workdir / "cloud", port=cloud_port, env={
            "CLASSOPS_CLOUD_VERIFY_HOLD_S": str(t.verify_hold_s),
            "CLASSOPS_CLOUD_OPERATIONS_INTERVAL_S": str(t.operations_s),
            "CLASSOPS_CLOUD_GATEWAY_STALE_S": str(t.gateway_stale_s),
            "CLASSOPS_CLOUD_MEDIA_DIR": str(workdir / "cloud" / "media"),
            # A county's gateways all sync from one machine here; keep the per-gateway limit out of the way.
            "CLASSOPS_CLOUD_SYNC_RATE_PER_S": "50",
            "CLASSOPS_CLOUD_SYNC_BURST": "200",
        })
        self.links = LinkHub()
        doomed = {f.device for f in plan.faults if f.kind == "device_dead"}
        displayed = {f.device for f in plan.faults if f.kind == "display_no_power_on"}
        self._doomed = doomed
        self._displayed = displayed
        self.schools = {code: SchoolRig(code, devices, workdir / "schools" / code)
                        for code, devices in plan.schools.items()}
        self.api: CloudApi | None = None
        self.started_at = 0.0
        self.stop_event = threading.Event()
        self.counts = {"taps_ok": 0, "taps_refused": 0, "faults_started": 0, "faults_ended": 0}
        self._counts_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="county")
        self._fault_threads: list[threading.Thread] = []
        self._lift_now = threading.Event()
        self._active: dict[str, PlannedFault] = {}
        self._lifted: set[str] = set()
        self._admins_ready: Future[None] | None = None

    # ---- bringing it up -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the cloud, register the county in it, and start every school's processes and devices."""
        self._say(f"Starting the cloud ({self.cloud.url}) ...")
        self.cloud.start()
        self._provision()
        self.links.start()
        self._say(f"Starting {len(self.schools)} schools: a Mosquitto, a gateway and an internet link each ...")
        with ThreadPoolExecutor(START_WORKERS) as pool:
            list(pool.map(self._start_school, self.schools.values()))
        # The admin accounts are written straight into the cloud's database by its CLI: done before the
        # devices' traffic keeps the cloud writing, they do not wait on its locks.
        self.wait_admins()
        devices = sum(len(r.devices) for r in self.schools.values())
        self._say(f"Starting {devices} devices on the real firmware ...")
        with ThreadPoolExecutor(START_WORKERS) as pool:
            list(pool.map(self._start_devices, self.schools.values()))
        self._wait_devices()
        self._set_sensors(0.0)
        self.ledger.write(self.stack_record())
        self.ledger.flush()

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _provision(self) -> None:
        city_code, city_name = self.scenario.city
        self.cloud.admin("add-city", "--code", city_code, "--name", city_name)
        self.cloud.add_user(COUNTY_ADMIN[0], COUNTY_ADMIN[1], "county_admin")
        self.api = CloudApi(self.cloud.url, *COUNTY_ADMIN)
        for district in self.scenario.districts:
            self.api.post("/districts", {"code": district.code, "city_code": city_code, "name": district.name})
        for spec in self.scenario.schools():
            self.api.post("/schools", {"code": spec.code, "name": spec.name, "timezone": self.scenario.timezone,
                                       "district_code": spec.district})
            creds = self.api.post("/gateways", {"school_code": spec.code, "name": f"gateway of {spec.code}"})
            rig = self.schools[spec.code]
            rig.gateway_id = creds["gateway_id"]
            rig.token = creds["token"]
        rows = [{"device_id": d.device_id, "school": d.school, "building": "Main building",
                 "classroom": f"Classroom {d.classroom}", "role": d.role, "asset_tag": f"SIM-{d.device_id[6:]}"}
                for d in self.plan.devices()]
        # In parts, so that each request stays well inside the client's timeout on a busy machine.
        for start in range(0, len(rows), IMPORT_ROWS):
            self.api.import_devices(rows[start:start + IMPORT_ROWS])
        # Raw attendance is personal data only a school's own admins may read: verification signs in
        # as each school's admin. The registry has no bulk user import, so these go one by one, meanwhile.
        self._admins_ready = self._pool.submit(self._add_school_admins)

    def _add_school_admins(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(self._add_school_admin, self.schools))

    def _add_school_admin(self, code: str) -> None:
        for attempt in range(ADMIN_ATTEMPTS):
            try:
                self.cloud.add_user(school_admin(code), SCHOOL_ADMIN_PASSWORD, "school_admin", code)
                return
            except (StackError, subprocess.TimeoutExpired) as exc:
                # A busy machine or a locked database; the CLI is idempotent only up to the commit, so
                # an account that did get created shows up as "already exists" on the next try.
                if "already exists" in str(exc):
                    return
                if attempt == ADMIN_ATTEMPTS - 1:
                    raise StackError(f"the admin account of {code} could not be created: {exc}") from exc
                log.warning("creating the admin of %s failed, trying again: %s", code, exc)

    def wait_admins(self, timeout: float = 600.0) -> None:
        """Wait until every school's admin account exists."""
        if self._admins_ready is not None:
            self._admins_ready.result(timeout)

    def _start_school(self, rig: SchoolRig) -> None:
        t = self.scenario.timing
        rig.broker = Mosquitto(rig.workdir / "broker")
        rig.broker.start()
        rig.link = self.links.add(rig.code, ("127.0.0.1", self.cloud.port))
        rig.gateway = GatewayProcess(
            rig.workdir / "gateway", school=rig.code, school_secret=rig.secret, broker_port=rig.broker.port,
            cloud_url=f"http://127.0.0.1:{rig.link.port}", cloud_token=rig.token,
            heartbeat_s=t.heartbeat_s, extra_toml=_gateway_extras(self.scenario),
        )
        rig.gateway.start()
        rig.bus.on_output = self._relay_to_display(rig)
        rig.bus.start()

    @staticmethod
    def _relay_to_display(rig: SchoolRig) -> Callable[[str, str, str], None]:
        def feed(device_id: str, name: str, value: str) -> None:
            display = rig.displays.get(device_id)
            if display is not None and name == "relay":
                display.set_mains(value == "1")

        return feed

    def _start_devices(self, rig: SchoolRig) -> None:
        t = self.scenario.timing
        assert rig.broker is not None
        host, port = rig.bus.address
        configs: dict[str, Path] = {}
        for device in rig.devices:
            fields: dict[str, Any] = {}
            if device.role == "blackboard" and (t.displays == "all" or device.device_id in self._displayed):
                display = VirtualDisplay(mains=False)
                display.start()
                rig.displays[device.device_id] = display
                fields.update(display_port=display.port, relay_off_delay_s=2)
            folder = rig.workdir / "devices" / device.device_id
            configs[device.device_id] = write_device_config(
                folder / "config.json", device_id=device.device_id, school=rig.code, role=device.role,
                broker_port=rig.broker.port, health_s=t.health_s, telemetry_s=t.telemetry_s,
                data_dir=str(folder / "flash"), hwbus=f"{host}:{port}", keepalive_s=30, **fields,
            )
        groups: list[list[str]] = [[d] for d in configs if d in self._doomed]
        rest = [d for d in configs if d not in self._doomed]
        groups += [rest[i:i + t.devices_per_vm] for i in range(0, len(rest), t.devices_per_vm)]
        for number, group in enumerate(groups):
            vm = FirmwareProcess([configs[d] for d in group], log_path=rig.workdir / "vms" / f"vm{number:03d}.log")
            vm.start()
            rig.vms.append(vm)
            for device_id in group:
                rig.vm_of[device_id] = vm

    def _wait_devices(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S + 0.02 * sum(len(r.devices) for r in self.schools.values())
        for rig in self.schools.values():
            for device in rig.devices:
                left = max(0.1, deadline - time.monotonic())
                if not rig.bus.wait_connected(device.device_id, left):
                    vm = rig.vm_of[device.device_id]
                    raise StackError(f"device {device.device_id} of {rig.code} did not come up:\n{vm.log_tail()}")

    def stack_record(self) -> dict[str, Any]:
        """Where the stack runs and how to read it: for the ledger, so that verify can find the cloud."""
        return {
            "type": "stack",
            "cloud_url": self.cloud.url,
            "database_url": self.cloud.database_url,
            "county_admin": list(COUNTY_ADMIN),
            "school_admin_password": SCHOOL_ADMIN_PASSWORD,
            "schools": {code: {"gateway_id": rig.gateway_id, "secret": rig.secret,
                               "admin": school_admin(code)} for code, rig in self.schools.items()},
            "wall": time.time(),
        }

    # ---- the run ------------------------------------------------------------------------------

    def run(self, *, progress: bool = True, until_s: float | None = None,
            status: Callable[[], str] | None = None) -> None:
        """Carry out the plan's taps, sensor values and faults on time until its end (or `until_s`, or
        `stop_event`); every fault still active at the end is lifted."""
        run_s = until_s if until_s is not None else self.plan.minutes * 60
        self.started_at = time.monotonic()
        self.ledger.write({"type": "run_start", "wall": time.time()})
        events: list[tuple[float, int, str, Any]] = []
        for tap in self.plan.taps:
            events.append((tap.at_s, len(events), "tap", tap))
        for fault in self.plan.faults:
            events.append((fault.at_s, len(events), "fault", fault))
        step = self.scenario.sensors.update_every_min * 60 / self.scenario.speed
        t = step
        while t < run_s:
            events.append((t, len(events), "sensors", t))
            t += step
        heapq.heapify(events)
        workers = ThreadPoolExecutor(TAP_WORKERS, thread_name_prefix="taps")
        next_progress = 0.0
        next_line = PROGRESS_LINE_EVERY_S
        interactive = progress and self.out.isatty()
        try:
            while not self.stop_event.is_set():
                now = self.elapsed()
                if now >= run_s:
                    break
                while events and events[0][0] <= now:
                    _, _, kind, item = heapq.heappop(events)
                    if kind == "tap":
                        if item.at_s < run_s:
                            workers.submit(self._tap, item)
                    elif kind == "fault":
                        self._begin_fault(item)
                    else:
                        workers.submit(self._set_sensors, item)
                if progress and now >= next_progress:
                    next_progress = now + PROGRESS_EVERY_S
                    line = self.progress_line(run_s) + (f"| {status()}" if status is not None else "")
                    if interactive:
                        print("\r" + line, end="", file=self.out, flush=True)
                    elif now >= next_line:
                        next_line = now + PROGRESS_LINE_EVERY_S
                        print(line, file=self.out, flush=True)
                wait = min(0.2, max(0.0, (events[0][0] - self.elapsed()) if events else 0.2))
                self.stop_event.wait(wait)
        finally:
            if interactive:
                print(file=self.out)
            # Taps under way finish and are written before the ledger is read back.
            workers.shutdown(wait=True, cancel_futures=self.stop_event.is_set())
            self.lift_all()
            self.ledger.write({"type": "run_end", "wall": time.time()})
            self.ledger.flush()

    def elapsed(self) -> float:
        """Real seconds since the run started."""
        return time.monotonic() - self.started_at

    def progress_line(self, run_s: float) -> str:
        """One line: time, devices connected, taps, faults active and done."""
        connected = sum(len(r.bus.connected()) for r in self.schools.values())
        devices = sum(len(r.devices) for r in self.schools.values())
        c = self.counts
        active = ", ".join(sorted({f.kind for f in self._active.values()})) or "-"
        e = int(self.elapsed())
        return (f"[{e // 60:02d}:{e % 60:02d}/{int(run_s) // 60:02d}:{int(run_s) % 60:02d}] "
                f"devices {connected}/{devices} | taps {c['taps_ok']} ok {c['taps_refused']} refused | "
                f"faults {c['faults_ended']} done, {len(self._active)} on: {active}   ")

    def _count(self, name: str) -> None:
        with self._counts_lock:
            self.counts[name] += 1

    def _tap(self, tap: Any) -> None:
        rig = self.schools[tap.school]
        try:
            result = rig.bus.tap(tap.device, tap.card, timeout=TAP_TIMEOUT_S)
        except HardwareBusError as exc:
            result = "error"
            log.info("tap %s on %s: %s", tap.n, tap.device, exc)
        self._count("taps_ok" if result == "ok" else "taps_refused")
        self.ledger.write({"type": "tap_result", "n": tap.n, "result": result, "wall": time.time()})

    def _set_sensors(self, at_s: float) -> None:
        s = self.scenario.sensors
        school_second = seconds_of_day(self.scenario.start) + at_s * self.scenario.speed
        lesson = 1 if self.scenario.timetable.in_lesson(school_second % 86400) else 0
        values: dict[str, float | str] = {
            "sht4x": f"{s.temp_c},{s.rh_pct}", "scd4x": s.co2_ppm[lesson], "pms5003": s.pm25_ugm3,
            "bh1750": s.lux[lesson], "mic": s.noise_dba[lesson],
        }

        def set_one(rig: SchoolRig, device_id: str) -> None:
            for name, value in values.items():
                try:
                    rig.bus.set_sensor(device_id, name, value)
                except HardwareBusError as exc:
                    log.info("sensor %s of %s: %s", name, device_id, exc)

        # Each setting is a round trip to a device; thousands of them one after the other would take minutes.
        with ThreadPoolExecutor(SENSOR_WORKERS, thread_name_prefix="sensors") as pool:
            for rig in self.schools.values():
                for device in rig.devices:
                    if device.role == "sensor" and rig.bus.is_connected(device.device_id):
                        pool.submit(set_one, rig, device.device_id)

    # ---- faults -------------------------------------------------------------------------------

    def _begin_fault(self, fault: PlannedFault) -> None:
        thread = threading.Thread(target=self._fault_life, args=(fault,), name=f"fault-{fault.id}", daemon=True)
        self._fault_threads.append(thread)
        thread.start()

    def _fault_life(self, fault: PlannedFault) -> None:
        self._active[fault.id] = fault
        try:
            self._inject(fault)
        except Exception:
            log.exception("injecting %s %s failed", fault.id, fault.kind)
        self.ledger.write({"type": "fault_start", "id": fault.id, "wall": time.time()})
        self._count("faults_started")
        if fault.kind == "wifi_flapping":
            self._flap(fault)
        else:
            self._lift_now.wait(max(0.0, fault.end_s - self.elapsed()))
        self._lift(fault)

    def _lift(self, fault: PlannedFault) -> None:
        with self._counts_lock:
            if fault.id in self._lifted:
                return
            self._lifted.add(fault.id)
        try:
            self._heal(fault)
        except Exception:
            log.exception("lifting %s %s failed", fault.id, fault.kind)
        self._active.pop(fault.id, None)
        self.ledger.write({"type": "fault_end", "id": fault.id, "wall": time.time()})
        self._count("faults_ended")

    def lift_all(self) -> None:
        """Lift every fault still on and wait for the fault threads."""
        self._lift_now.set()
        for thread in self._fault_threads:
            thread.join(timeout=120)

    def _rig(self, fault: PlannedFault) -> SchoolRig:
        assert fault.school is not None
        return self.schools[fault.school]

    def _inject(self, fault: PlannedFault) -> None:
        kind = fault.kind
        if kind == "cloud_outage":
            self.cloud.kill()
            return
        rig = self._rig(fault)
        if kind == "sensor_failure":
            rig.bus.sensor_fault(fault.device or "", fault.params["sensor"], fault.params["mode"])
        elif kind == "device_dead":
            rig.vm_of[fault.device or ""].kill()
        elif kind == "display_no_power_on":
            self._display_fault(rig, fault.device or "")
        elif kind == "broker_outage":
            # A crash: a broker stopped politely first sends every client's will, which is a different
            # story (the gateway then takes all devices for offline at once).
            assert rig.broker is not None
            rig.broker.kill()
        elif kind == "gateway_crash":
            assert rig.gateway is not None
            rig.gateway.kill()
        elif kind == "internet_outage":
            assert rig.link is not None
            rig.link.cut()

    def _heal(self, fault: PlannedFault) -> None:
        kind = fault.kind
        if kind == "cloud_outage":
            self.cloud.start()
            return
        rig = self._rig(fault)
        if kind == "sensor_failure":
            rig.bus.sensor_fault(fault.device or "", fault.params["sensor"], "none")
        elif kind == "device_dead":
            rig.vm_of[fault.device or ""].start()
        elif kind == "wifi_flapping":
            rig.bus.set_wifi(fault.device or "", True)
        elif kind == "display_no_power_on":
            rig.displays[fault.device or ""].heal("no_power_on")
        elif kind == "broker_outage":
            assert rig.broker is not None
            rig.broker.start()
        elif kind == "gateway_crash":
            assert rig.gateway is not None
            rig.gateway.start()
        elif kind == "internet_outage":
            assert rig.link is not None
            rig.link.restore()

    def _flap(self, fault: PlannedFault) -> None:
        rig = self._rig(fault)
        device = fault.device or ""
        down, up = fault.params["down_s"], fault.params["up_s"]

        def left() -> float:
            return max(0.0, fault.end_s - self.elapsed())

        while True:
            rig.bus.set_wifi(device, False)
            if self._lift_now.wait(min(down, left())):
                return
            rig.bus.set_wifi(device, True)
            # Another drop only if all of it fits before the fault is lifted.
            if left() < up + down:
                self._lift_now.wait(left())
                return
            if self._lift_now.wait(up):
                return

    def _display_fault(self, rig: SchoolRig, device_id: str) -> None:
        """The display stops taking power-on; then someone switches the board on from the console."""
        display = rig.displays[device_id]
        display.inject("no_power_on")
        if display.power:
            self._command(device_id, "power_off")
            if not display.wait(lambda d: not d.power, 60):
                log.warning("display of %s did not switch off", device_id)
        self._command(device_id, "power_on")

    def _command(self, device_id: str, name: str) -> None:
        assert self.api is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                self.api.post("/commands", {"target": {"device": device_id}, "name": name, "args": {},
                                            "ttl_s": COMMAND_TTL_S})
                return
            except CloudApiError as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("command %s to %s not sent yet: %s", name, device_id, exc)
                time.sleep(1.0)

    # ---- tearing down -------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process and thread the county started."""
        self.stop_event.set()
        self._lift_now.set()
        for thread in self._fault_threads:
            thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for rig in self.schools.values():
            for vm in rig.vms:
                vm.stop()
        for rig in self.schools.values():
            rig.bus.stop()
            for display in rig.displays.values():
                display.stop()
            for part in (rig.gateway, rig.broker):
                if part is not None:
                    part.stop()
        self.links.stop()
        if self.api is not None:
            self.api.close()
        self.cloud.stop()


def fresh_workdir(path: Path) -> Path:
    """An empty work directory (what was there is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def wait_all_connected(county: County, timeout: float) -> None:
    """Wait until every device of the county is connected to its hardware bus."""
    wait_for(lambda: all(len(r.bus.connected()) == len(r.devices) for r in county.schools.values()), timeout,
             "every device to connect to its hardware bus", interval=0.5)
