"""Device history: alarms, health and telemetry samples, hourly roll-ups and retention."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import distinct, func, tuple_
from sqlalchemy import select as sql_select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session, col, delete, select

from cloud import registry
from cloud.core.db import begin_write
from cloud.crud import audit, signin
from cloud.crud.access import read_scope
from cloud.crud.common import Actor, as_utc, chunks, dialect_insert
from cloud.figures import summaries
from cloud.models import (
    Alarm,
    HealthHourly,
    HealthSample,
    MaintenanceMark,
    MaintenanceReport,
    TelemetrySample,
    User,
    utcnow,
)

ROLLUP_MARK = "health_rollup"
# Sync transactions commit a little after the time they stamp on their rows; look back this far for them.
LATE_COMMIT_SLACK = timedelta(minutes=5)
# Any constant will do; it only has to be the same for every API worker.
MAINTENANCE_LOCK_KEY = 0x436C4D61696E74  # "ClMaint"
ROLLUP_CHUNK = 400


def _window(column, since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(col(column) >= as_utc(since))
    if until is not None:
        conditions.append(col(column) < as_utc(until))
    return conditions


def list_alarms(
    session: Session,
    *,
    user: User,
    school_code: str | None = None,
    device_id: str | None = None,
    state: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> tuple[Sequence[Alarm], int]:
    """Alarms of the devices `user` may see, newest first, and how many match in all."""
    scope = read_scope(session, user).narrowed(school_code)
    conditions = _window(Alarm.ts, since, until)
    school_condition = scope.school_condition(Alarm.school_code)
    if school_condition is not None:
        conditions.append(school_condition)
    if scope.devices is not None:
        conditions.append(col(Alarm.device_id).in_(sorted(scope.devices)))
    if device_id is not None:
        conditions.append(col(Alarm.device_id) == device_id)
    if state is not None:
        conditions.append(col(Alarm.state) == state)
    total = session.exec(select(func.count()).select_from(Alarm).where(*conditions)).one()
    items = session.exec(
        select(Alarm)
        .where(*conditions)
        .order_by(col(Alarm.ts).desc(), col(Alarm.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return items, total


def list_health_samples(
    session: Session,
    *,
    user: User,
    device_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> Sequence[HealthSample]:
    """A device's health reports in a time window, oldest first."""
    registry.get_device(session, user=user, device_id=device_id)
    return session.exec(
        select(HealthSample)
        .where(col(HealthSample.device_id) == device_id, *_window(HealthSample.ts, since, until))
        .order_by(col(HealthSample.ts), col(HealthSample.id))
        .limit(limit)
    ).all()


def list_health_hourly(
    session: Session,
    *,
    user: User,
    device_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> Sequence[HealthHourly]:
    """A device's hourly health roll-ups in a time window, oldest first."""
    registry.get_device(session, user=user, device_id=device_id)
    return session.exec(
        select(HealthHourly)
        .where(col(HealthHourly.device_id) == device_id, *_window(HealthHourly.hour, since, until))
        .order_by(col(HealthHourly.hour))
        .limit(limit)
    ).all()


def list_telemetry(
    session: Session,
    *,
    user: User,
    device_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> Sequence[TelemetrySample]:
    """A device's sensor readings in a time window, oldest first."""
    registry.get_device(session, user=user, device_id=device_id)
    return session.exec(
        select(TelemetrySample)
        .where(col(TelemetrySample.device_id) == device_id, *_window(TelemetrySample.ts, since, until))
        .order_by(col(TelemetrySample.ts), col(TelemetrySample.id))
        .limit(limit)
    ).all()


# ---- roll-ups and retention ----------------------------------------------------------------------


def _hour_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _rollup_rows(session: Session, pairs: Sequence[tuple[str, datetime]]) -> list[dict[str, Any]]:
    # Core select: SQLModel's typed select takes at most four columns.
    statement = (
        sql_select(
            col(HealthSample.device_id),
            col(HealthSample.hour),
            func.max(HealthSample.school_code),
            func.count(),
            func.count(distinct(col(HealthSample.boot_id))),
            func.min(HealthSample.heap_free),
            func.avg(HealthSample.heap_free),
            func.min(HealthSample.heap_max_block),
            func.min(HealthSample.rssi),
            func.avg(HealthSample.rssi),
            func.max(HealthSample.uptime_s),
        )
        .where(tuple_(col(HealthSample.device_id), col(HealthSample.hour)).in_(list(pairs)))
        .group_by(col(HealthSample.device_id), col(HealthSample.hour))
    )
    return [
        {
            "device_id": device_id,
            "hour": hour,
            "school_code": school_code,
            "samples": samples,
            "boots": boots,
            "heap_free_min": _optional_int(heap_min),
            "heap_free_avg": _optional_float(heap_avg),
            "heap_max_block_min": _optional_int(block_min),
            "rssi_min": _optional_int(rssi_min),
            "rssi_avg": _optional_float(rssi_avg),
            "uptime_max": _optional_int(uptime_max),
        }
        for (
            device_id,
            hour,
            school_code,
            samples,
            boots,
            heap_min,
            heap_avg,
            block_min,
            rssi_min,
            rssi_avg,
            uptime_max,
        ) in session.execute(statement).all()
    ]


def rollup_health(session: Session, *, before: datetime | None = None, now: datetime | None = None) -> int:
    """Sum up health samples by device and UTC hour, for the whole hours before `before`.

    Only hours that gained samples since the last run are computed again, late arrivals included.
    Returns the number of (device, hour) roll-ups written. The caller commits.
    """
    return len(_rollup(session, before=before, now=now))


def _rollup(
    session: Session, *, before: datetime | None = None, now: datetime | None = None
) -> set[tuple[str, datetime]]:
    """rollup_health; returns the (device, hour) roll-ups written."""
    now = now or utcnow()
    end_hour = _hour_start(before or now)
    mark = session.get(MaintenanceMark, ROLLUP_MARK)
    conditions: list[ColumnElement[bool]] = [col(HealthSample.hour) < end_hour]
    if mark is not None and mark.hour_mark is not None and mark.received_mark is not None:
        conditions.append(
            (col(HealthSample.received_at) >= mark.received_mark) | (col(HealthSample.hour) >= mark.hour_mark)
        )
    dirty = session.exec(
        select(col(HealthSample.device_id), col(HealthSample.hour)).where(*conditions).distinct()
    ).all()
    written: set[tuple[str, datetime]] = set()
    for chunk in chunks([(device_id, hour) for device_id, hour in dirty], ROLLUP_CHUNK):
        rows = _rollup_rows(session, chunk)
        if not rows:
            continue
        insert = dialect_insert(session, HealthHourly).values(rows)
        excluded = insert.excluded
        session.exec(
            insert.on_conflict_do_update(
                index_elements=["device_id", "hour"],
                set_={name: excluded[name] for name in rows[0] if name not in ("device_id", "hour")},
            )
        )
        written.update((row["device_id"], row["hour"]) for row in rows)
    if mark is None:
        mark = MaintenanceMark(name=ROLLUP_MARK)
    if mark.hour_mark is None or end_hour > mark.hour_mark:
        mark.hour_mark = end_hour
    mark.received_mark = now - LATE_COMMIT_SLACK
    mark.ran_at = now
    session.add(mark)
    return written


def prune_history(
    session: Session,
    *,
    sample_retention: timedelta,
    rollup_retention: timedelta,
    now: datetime | None = None,
) -> tuple[int, int, int]:
    """Delete samples and roll-ups past their retention; health samples only once rolled up.

    Returns the numbers of health samples, telemetry samples and roll-ups deleted. The caller commits.
    """
    now = now or utcnow()
    cutoff = now - sample_retention
    mark = session.get(MaintenanceMark, ROLLUP_MARK)
    health = 0
    if mark is not None and mark.hour_mark is not None:
        health_cutoff = min(cutoff, mark.hour_mark)
        health = session.exec(delete(HealthSample).where(col(HealthSample.ts) < health_cutoff)).rowcount
    telemetry = session.exec(delete(TelemetrySample).where(col(TelemetrySample.ts) < cutoff)).rowcount
    hourly = session.exec(delete(HealthHourly).where(col(HealthHourly.hour) < now - rollup_retention)).rowcount
    return health, telemetry, hourly


def run_maintenance(
    session: Session,
    *,
    actor: Actor,
    sample_retention: timedelta,
    rollup_retention: timedelta,
    now: datetime | None = None,
) -> MaintenanceReport | None:
    """Roll up and prune in one transaction; None if another process is doing it right now."""
    begin_write(session)
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql":
        # API workers each run this on a timer; one at a time is enough and the others skip their turn.
        locked = session.exec(select(func.pg_try_advisory_xact_lock(MAINTENANCE_LOCK_KEY))).one()
        if not locked:
            session.rollback()
            return None
    rolled = _rollup(session, now=now)
    health, telemetry, hourly = prune_history(
        session, sample_retention=sample_retention, rollup_retention=rollup_retention, now=now
    )
    signin.prune_sign_in_records(session, now=now)
    # The daily summaries of the figures, from what the roll-up and the pruning left, in the same transaction:
    # a figures request never sees roll-ups and summaries that disagree.
    summarised = summaries.refresh_summaries(
        session,
        now=now,
        late_hours={hour for _device, hour in rolled},
        hourly_cutoff=now - rollup_retention if hourly else None,
        telemetry_cutoff=now - sample_retention if telemetry else None,
    )
    report = MaintenanceReport(
        rolled_up_hours=len(rolled),
        pruned_health_samples=health,
        pruned_telemetry_samples=telemetry,
        pruned_hourly=hourly,
        summarised_days=summarised,
    )
    if rolled or health or telemetry or hourly:
        audit.record(session, actor=actor, action="maintenance", entity="history", summary=report.model_dump(), at=now)
    session.commit()
    return report
