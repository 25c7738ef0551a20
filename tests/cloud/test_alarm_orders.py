"""Alarms -> work orders: one open per (device, fault), verified by the device after a hold, reopened when
the fault returns, flapping folded into one order, and a school's gateway outage kept to one gateway order."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from cloud import workorders
from cloud.core.db import begin_write
from cloud.crud import run_operations
from cloud.models import AuditEntry, Gateway, User, WorkOrder, WorkOrderEvent
from tests.cloud.helpers import DEVICE_A, DEVICE_B, DEVICE_C, TS, record

T0 = datetime.fromtimestamp(TS, UTC)
POLICY = workorders.FaultPolicy()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


class Gseq:
    """Gateway sequence numbers and device sequence numbers that only go up."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        self.value += 1
        return self.value


@pytest.fixture
def alarm(sync, crew):
    """Send one alarm record (device or, with device=None, the gateway's own) at T0 + `at` seconds."""
    gseq = Gseq()

    def send(code: str, state: str, at: float = 0, device: str | None = DEVICE_A, kind: str = "alarm", school="s1"):
        if device is None:
            kind = "gateway_alarm"
        rec = record(gseq(), kind, device, ts=TS + at, code=code, state=state, detail=f"{code} {state}")
        if kind == "gateway_alarm":
            rec.update(boot=None, seq=None)
        response = sync([rec], school)
        assert response.json()["confirmed"] == [rec["gseq"]], response.text
        return response

    return send


def _orders(session: Session) -> list[WorkOrder]:
    session.rollback()
    return list(session.exec(select(WorkOrder).order_by(col(WorkOrder.id))).all())


def _operate(session: Session, at: float) -> None:
    run_operations(session, policy=POLICY, now=T0 + timedelta(seconds=at))


def test_a_raise_opens_one_order_and_repeats_do_not_open_more(session, alarm):
    alarm("reader_fault", "raise")
    alarm("reader_fault", "raise", at=5)
    alarm("sensor_fault:co2", "raise", at=6)

    orders = _orders(session)

    assert [(o.fault_code, o.status, o.source, o.priority) for o in orders] == [
        ("reader_fault", "assigned", "alarm", 2),
        ("sensor_fault:co2", "assigned", "alarm", 4),
    ]
    assert orders[0].alarm_active and orders[0].flap_count == 0


def test_a_clear_verifies_only_after_it_stays_clear(session, alarm):
    alarm("reader_fault", "raise")
    alarm("reader_fault", "clear", at=60)
    _operate(session, 60 + 599)
    assert _orders(session)[0].verified_by_device_at is None

    _operate(session, 60 + 600)
    order = _orders(session)[0]

    assert order.verified_by_device_at is not None
    assert order.status == "resolved" and "verified by the device" in (order.resolution or "")


def test_a_raise_during_the_hold_keeps_the_order_open(session, alarm):
    alarm("reader_fault", "raise")
    alarm("reader_fault", "clear", at=60)
    alarm("reader_fault", "raise", at=300)
    _operate(session, 60 + 700)

    order = _orders(session)[0]

    assert order.status == "assigned" and order.verified_by_device_at is None and order.alarm_active


def test_a_fault_returning_within_the_window_reopens_the_same_order(session, alarm):
    alarm("reader_fault", "raise")
    alarm("reader_fault", "clear", at=60)
    _operate(session, 700)
    alarm("reader_fault", "raise", at=3600)
    orders = _orders(session)

    assert len(orders) == 1
    assert (orders[0].status, orders[0].reopen_count, orders[0].verified_by_device_at) == ("assigned", 1, None)


def test_a_fault_returning_after_the_window_opens_a_new_order(session, alarm):
    alarm("reader_fault", "raise")
    alarm("reader_fault", "clear", at=60)
    _operate(session, 700)
    alarm("reader_fault", "raise", at=700 + 24 * 3600 + 1)

    assert [o.status for o in _orders(session)] == ["resolved", "assigned"]


def test_flapping_is_counted_in_the_one_order(session, alarm):
    for minute in range(6):
        alarm("display_no_answer", "raise", at=minute * 60)
        alarm("display_no_answer", "clear", at=minute * 60 + 30)
    orders = _orders(session)

    assert len(orders) == 1
    assert (orders[0].flap_count, orders[0].flapping) == (5, True)
    _operate(session, 5 * 60 + 30 + 600)
    settled = _orders(session)[0]
    assert (settled.flapping, settled.status) == (False, "resolved")


def test_a_replayed_older_alarm_changes_nothing(session, alarm):
    alarm("reader_fault", "raise", at=100)
    alarm("reader_fault", "clear", at=200)
    alarm("reader_fault", "raise", at=150)

    order = _orders(session)[0]

    assert not order.alarm_active and order.clear_since == T0 + timedelta(seconds=200)


def test_a_gateway_alarm_without_device_opens_a_gateway_order(session, alarm, world):
    alarm("store_quota", "raise", device=None)
    alarm("store_quota", "clear", device=None, at=30)
    _operate(session, 30 + 600)

    order = _orders(session)[0]

    assert (order.kind, order.gateway_id, order.device_id, order.fault_code) == (
        "gateway",
        world.gateway_ids["s1"],
        None,
        "store_quota",
    )
    assert order.status == "resolved"


def _last_sync(session: Session, gateway_id: str, at: float) -> None:
    """Make the gateway's last sync T0 + `at`, the clock these tests run the periodic checks on."""
    begin_write(session)
    gateway = session.get(Gateway, gateway_id)
    assert gateway is not None
    gateway.last_sync_at = T0 + timedelta(seconds=at)
    session.add(gateway)
    session.commit()


def test_a_silent_gateway_gets_one_order_and_its_offline_devices_none(session, alarm, world):
    alarm("reader_fault", "raise", device=DEVICE_B)
    _last_sync(session, world.gateway_ids["s1"], 0)
    _operate(session, 121)
    _operate(session, 600)
    offline = [o for o in _orders(session) if o.fault_code == "gateway_offline"]
    assert len(offline) == 1 and offline[0].priority == 1 and offline[0].kind == "gateway"

    # The gateway comes back with the alarms its rules raised while the school was cut off.
    alarm("device_offline", "raise", at=200)
    alarm("sensor_fault:co2", "raise", device=DEVICE_B, at=200)
    codes = sorted(o.fault_code for o in _orders(session))

    assert codes == ["gateway_offline", "reader_fault", "sensor_fault:co2"]


def test_offline_alarms_after_an_outage_are_ignored_even_before_the_periodic_check(session, alarm, world):
    alarm("reader_fault", "raise", device=DEVICE_B)
    _last_sync(session, world.gateway_ids["s1"], 0)

    alarm("device_offline", "raise", at=300)

    assert [o.fault_code for o in _orders(session)] == ["reader_fault"]


def test_the_gateway_order_clears_when_the_gateway_syncs_again(session, sync, world, crew):
    gateway_id = world.gateway_ids["s1"]
    _last_sync(session, gateway_id, 0)
    _operate(session, 200)
    _last_sync(session, gateway_id, 300)
    _operate(session, 301)
    _last_sync(session, gateway_id, 900)
    _operate(session, 901)

    order = _orders(session)[0]

    assert (order.fault_code, order.status) == ("gateway_offline", "resolved")
    assert order.verified_by_device_at is not None and order.clear_since == T0 + timedelta(seconds=300)


def test_replayed_batches_do_not_change_orders_twice(session, sync, crew):
    batch = [
        record(1, "alarm", DEVICE_A, code="reader_fault", state="raise"),
        record(2, "alarm", DEVICE_A, code="reader_fault", state="clear", ts=TS + 10),
        record(3, "alarm", DEVICE_A, code="reader_fault", state="raise", ts=TS + 20),
    ]
    sync(batch)
    sync(batch)
    sync(batch[1:])

    order = _orders(session)[0]

    assert len(_orders(session)) == 1 and order.flap_count == 1 and order.alarm_active


def test_a_batch_of_alarms_changes_orders_as_the_same_alarms_one_by_one_would(session, sync, crew):
    sync([
        record(1, "alarm", DEVICE_A, code="reader_fault", state="raise"),
        record(2, "alarm", DEVICE_A, code="reader_fault", state="clear", ts=TS + 10),
    ])
    _operate(session, 700)
    response = sync([
        record(3, "alarm", DEVICE_B, code="reader_fault", state="raise", ts=TS + 800),
        record(4, "alarm", DEVICE_C, code="reader_fault", state="raise", ts=TS + 800),
        record(5, "alarm", DEVICE_B, code="sensor_fault:co2", state="raise", ts=TS + 800),
        record(6, "alarm", DEVICE_A, code="reader_fault", state="raise", ts=TS + 900),
        record(7, "alarm", DEVICE_C, code="reader_fault", state="clear", ts=TS + 950),
        record(8, "alarm", DEVICE_C, code="reader_fault", state="raise", ts=TS + 960),
        record(9, "alarm", DEVICE_C, code="reader_fault", state="raise", ts=TS + 970),
    ])
    assert response.status_code == 200 and not response.json()["rejected"], response.text

    orders = _orders(session)
    users = dict(session.exec(select(User.username, User.id)).all())
    summary = session.exec(
        select(AuditEntry.summary).where(AuditEntry.action == "sync").order_by(col(AuditEntry.id).desc())
    ).first()

    # Each new order goes to the technician with the fewest working orders, counting those the batch gave.
    assert [(o.device_id, o.fault_code, o.status, o.assignee_id) for o in orders] == [
        (DEVICE_A, "reader_fault", "assigned", users["tech"]),
        (DEVICE_B, "reader_fault", "assigned", users["tech"]),
        (DEVICE_C, "reader_fault", "assigned", users["tech2"]),
        (DEVICE_B, "sensor_fault:co2", "assigned", users["tech"]),
    ]
    assert orders[0].reopen_count == 1 and orders[0].open_key == f"d:{DEVICE_A}:reader_fault"
    assert (orders[2].alarm_active, orders[2].flap_count) == (True, 1)
    assert summary is not None and summary["orders"] == {
        "opened": 3, "reopened": 1, "cleared": 1, "raised_again": 1, "still_raised": 1
    }
    journal = session.exec(
        select(WorkOrderEvent.order_id, WorkOrderEvent.text).where(WorkOrderEvent.order_id == orders[2].id)
        .order_by(col(WorkOrderEvent.id))
    ).all()
    assert [text.split(":")[0] for _, text in journal] == [
        f"reader_fault on {DEVICE_C}", "auto-assigned to tech2", "cleared", "raised again"
    ]


def test_a_gateway_whose_store_cannot_write_gets_a_first_priority_order(session, sync, world):
    # Sent from the gateway's memory while its store could not write: a gseq far above the store's own.
    held = 2**62 + int(TS * 1000)
    raised = record(held, "gateway_alarm", None, ts=TS, code="store_unwritable", state="raise",
                    detail="the store cannot write: database or disk is full")
    raised.update(boot=None, seq=None)
    answer = sync([raised], "s1")
    assert answer.json()["confirmed"] == [held], answer.text

    order = _orders(session)[0]

    assert (order.kind, order.gateway_id, order.fault_code, order.priority) == (
        "gateway", world.gateway_ids["s1"], "store_unwritable", 1)


def test_a_device_the_gateway_finds_flooding_gets_an_equipment_order(session, alarm):
    alarm("device_flood", "raise", kind="gateway_alarm")
    alarm("device_flood", "clear", at=60, kind="gateway_alarm")

    order = _orders(session)[0]

    assert (order.kind, order.device_id, order.fault_code, order.priority) == ("device", DEVICE_A, "device_flood", 3)
    assert not order.alarm_active
