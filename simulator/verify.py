"""`classops sim verify`: the ledger's ground truth against what the cloud says through its API.

- every tap a device took is in the cloud exactly once (as its school's pseudonym of the card);
- every injected device fault has its alarm and its work order, and that order is verified by the
  device once the fault is lifted; a long enough gateway crash or internet outage has its school's
  gateway_offline order, verified once the link is back;
- no work order exists that no injected fault explains: a school's internet outage is one gateway
  order, not one per device; a broker outage, a short gateway crash or a cloud outage opens none.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gateway.privacy import card_pseudonym
from simulator.cloudapi import CloudApi, CloudApiError
from simulator.ledger import LedgerRecord, read_ledger
from simulator.stack import CloudServer, port_open

# An alarm belongs to a fault if raised from a little before the injection until this long after the lift.
ALARM_SLACK_S = 120.0
EVENTS_PAGE = 10_000


@dataclass
class Row:
    """One line of the verification table."""

    check: str
    subject: str
    expected: str
    found: str
    ok: bool


@dataclass
class Report:
    """The table and its verdict."""

    rows: list[Row] = field(default_factory=list)
    taps_expected: int = 0
    taps_found: int = 0
    faults: int = 0
    orders: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing differs."""
        return all(row.ok for row in self.rows)

    def differences(self) -> list[Row]:
        """The rows that differ."""
        return [row for row in self.rows if not row.ok]

    def summary(self) -> str:
        """One line: counts and the verdict."""
        verdict = "ok" if self.ok else f"failed ({len(self.differences())} differences)"
        return (f"verify={'ok' if self.ok else 'failed'}: {self.faults} faults, {self.orders} work orders, "
                f"{self.taps_found}/{self.taps_expected} taps in the cloud: {verdict}")

    def print(self, out: TextIO | None = None, only_differences: bool = False) -> None:
        """Print the table and the summary."""
        out = out or sys.stdout
        rows = self.differences() if only_differences else self.rows
        headers = ("check", "subject", "expected", "found", "result")
        cells = [(r.check, r.subject, r.expected, r.found, "ok" if r.ok else "DIFFERS") for r in rows]
        widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
        widths = [min(w, 90) for w in widths]
        line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
        print(line, file=out)
        print("  ".join("-" * w for w in widths), file=out)
        for c in cells:
            print("  ".join(v[:w].ljust(w) for v, w in zip(c, widths, strict=True)), file=out)
        print(self.summary(), file=out, flush=True)


def _family(code: str) -> str:
    return code.split(":", 1)[0]


class Verifier:
    """Compares one ledger with one cloud; keeps its signed-in sessions between rounds."""

    def __init__(self, record: LedgerRecord, cloud_url: str | None = None) -> None:
        self.record = record
        stack = record.stack
        if not stack:
            raise ValueError("the ledger has no stack record: the run did not get as far as starting the county")
        self.cloud_url = cloud_url or stack["cloud_url"]
        user, password = stack["county_admin"]
        self.county = CloudApi(self.cloud_url, user, password)
        self._schools: dict[str, CloudApi] = {}

    def close(self) -> None:
        """Close the sessions."""
        self.county.close()
        for api in self._schools.values():
            api.close()

    def _school_api(self, code: str) -> CloudApi:
        api = self._schools.get(code)
        if api is None:
            info = self.record.stack["schools"][code]
            api = self._schools[code] = CloudApi(self.cloud_url, info["admin"],
                                                 self.record.stack["school_admin_password"])
        return api

    def run(self) -> Report:
        """One full comparison."""
        report = Report()
        self._check_taps(report)
        self._check_faults(report)
        return report

    def _check_taps(self, report: Report) -> None:
        stack = self.record.stack["schools"]
        expected: dict[str, Counter[tuple[str, str]]] = {code: Counter() for code in self.record.schools}
        for tap in self.record.taps_taken():
            secret = stack[tap["school"]]["secret"]
            expected[tap["school"]][(tap["device"], card_pseudonym(secret, tap["card"]))] += 1
        for code in self.record.schools:
            got: Counter[tuple[str, str]] = Counter()
            keys: Counter[tuple[str, str, int]] = Counter()
            for event in self._school_api(code).pages("/attendance-events", limit=EVENTS_PAGE, school=code):
                got[(event["device_id"], event["card_pseudonym"])] += 1
                keys[(event["device_id"], event["boot_id"], event["seq"])] += 1
            want = expected[code]
            missing = sum((want - got).values())
            extra = sum((got - want).values())
            twice = sum(n - 1 for n in keys.values() if n > 1)
            report.taps_expected += sum(want.values())
            report.taps_found += sum(got.values())
            found = f"{sum(got.values())} events"
            if missing or extra or twice:
                found += f": {missing} missing, {extra} unexpected, {twice} twice"
            report.rows.append(Row("taps exactly once", code, f"{sum(want.values())} taps", found,
                                   not (missing or extra or twice)))

    def _check_faults(self, report: Report) -> None:
        orders = list(self.county.pages("/work-orders", limit=1000))
        report.orders = len(orders)
        raises: dict[str, list[dict[str, Any]]] = {}
        for alarm in self.county.pages("/alarms", limit=EVENTS_PAGE, state="raise"):
            raises.setdefault(alarm["device_id"], []).append(alarm)
        gateway_school = {info["gateway_id"]: code for code, info in self.record.stack["schools"].items()}
        explained: set[int] = set()
        silent: list[tuple[str, str, str | None]] = []
        for fault_id, outcome in sorted(self.record.faults.items()):
            fault = outcome.fault
            if outcome.started is None:
                continue
            report.faults += 1
            where = fault["device"] or fault["school"] or "county"
            label = f"{fault_id} {fault['kind']}"
            if not fault["expect"]:
                silent.append((label, where, fault["school"]))
                continue
            for want in fault["expect"]:
                if want["subject"] == "device":
                    matched = [o for o in orders if o["kind"] == "device" and o["device_id"] == fault["device"]
                               and _family(o["fault_code"]) == want["code"]]
                else:
                    gateway_id = self.record.stack["schools"][fault["school"]]["gateway_id"]
                    matched = [o for o in orders if o["kind"] == "gateway" and o["gateway_id"] == gateway_id
                               and o["fault_code"] == want["code"]]
                explained.update(o["id"] for o in matched)
                problems = []
                if want["subject"] == "device":
                    lo = outcome.started - 30
                    hi = (outcome.ended or outcome.started) + ALARM_SLACK_S
                    alarms = [a for a in raises.get(fault["device"], [])
                              if _family(a["code"]) == want["code"] and lo <= _epoch(a["ts"]) <= hi]
                    if not alarms:
                        problems.append("no alarm")
                if not matched:
                    problems.append("no work order")
                elif outcome.ended is not None and not all(o.get("verified_by_device_at") for o in matched):
                    problems.append("not verified")
                found = ", ".join(f"#{o['id']} {o['fault_code']} {o['status']}"
                                  + (" verified" if o.get("verified_by_device_at") else "") for o in matched)
                what = f"alarm + {want['code']} order" if want["subject"] == "device" else f"{want['code']} order"
                report.rows.append(Row(label, where, f"{what}, verified",
                                       "; ".join(problems + ([found] if found else [])) or "-", not problems))
        unexplained = [o for o in orders if o["id"] not in explained]
        for label, where, school in silent:
            # The unexpected orders' own rows are the differences; this row says where to look.
            near = [o for o in unexplained if school is None or o["school_code"] == school]
            found = f"{len(near)} unexplained orders in {school or 'the county'}, listed below" if near else "none"
            report.rows.append(Row(label, where, "no work order", found, True))
        for order in unexplained:
            subject = order["device_id"] or f"gateway of {gateway_school.get(order['gateway_id'], order['gateway_id'])}"
            report.rows.append(Row("unexpected order", subject, "none",
                                   f"#{order['id']} {order['fault_code']} {order['status']}", False))


def _epoch(value: str) -> float:
    from datetime import UTC, datetime

    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def verify_ledger(path: Path, cloud_url: str | None = None, out: TextIO | None = None,
                  only_differences: bool = False) -> Report:
    """Verify a ledger file against its cloud; when that cloud no longer runs, serve its database
    read-only-in-effect (no periodic operations) on a spare port for the comparison."""
    record = read_ledger(path)
    url = cloud_url or record.stack.get("cloud_url")
    server: CloudServer | None = None
    if url is None:
        raise ValueError(f"{path}: no cloud URL in the ledger; give --cloud")
    host_port = url.rsplit(":", 1)
    if cloud_url is None and not port_open("127.0.0.1", int(host_port[1])):
        server = CloudServer(path.parent / "verify-cloud", database_url=record.stack["database_url"],
                             env={"CLASSOPS_CLOUD_OPERATIONS_INTERVAL_S": "0",
                                  "CLASSOPS_CLOUD_MAINTENANCE_INTERVAL_S": "0"})
        server.start()
        url = server.url
    verifier = Verifier(record, url)
    try:
        report = verifier.run()
    except CloudApiError as exc:
        raise ValueError(f"the cloud could not be read: {exc}") from exc
    finally:
        verifier.close()
        if server is not None:
            server.stop()
    report.print(out, only_differences=only_differences)
    return report


def find_ledger(path: str | os.PathLike[str]) -> Path:
    """The ledger file itself, or ledger.jsonl inside a run's work directory."""
    candidate = Path(path)
    return candidate / "ledger.jsonl" if candidate.is_dir() else candidate
