"""What the console's pages show, gathered through the data layer with the signed-in user, so that the
same tenancy rules as the API's decide what each person sees."""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlmodel import Session

from cloud import policy, registry
from cloud.errors import NotFound
from cloud.figures import report as figures_report
from cloud.models import (
    ACTIVE_STATUSES,
    Building,
    Classroom,
    Device,
    DevicePublic,
    School,
    User,
    WorkOrderPublic,
    utcnow,
)
from cloud.web import charts, i18n
from cloud.workorders import TRANSITIONS, list_orders
from cloud.workorders import teams as teams_crud

PAGE_SIZE = 20
# Urgency sorting reads a user's open orders at once; a technician has tens, a county a few thousand.
MAX_SORTED = 2000
TREND_DAYS = 14
# Past days' figures barely move; keeping them a few minutes spares the database on every dashboard view.
TREND_CACHE_S = 300.0
ACTION_ORDER = ("accept", "start", "pending", "resume", "resolve", "assign", "close", "reopen", "cancel")

_trend_cache: dict[tuple, tuple[float, figures_report.FiguresReport]] = {}


@dataclass(frozen=True)
class Paging:
    """One page of a longer list."""

    page: int
    pages: int
    total: int

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.page - 1) * PAGE_SIZE

    @classmethod
    def of(cls, page: int, total: int) -> "Paging":
        """The page asked for, kept within the pages there are."""
        pages = max(1, math.ceil(total / PAGE_SIZE))
        return cls(page=min(max(1, page), pages), pages=pages, total=total)


def school_zones(session: Session, codes: Sequence[str]) -> dict[str, School]:
    """Schools by code, for their names and time zones."""
    found = {code: registry.get_school(session, code=code) for code in sorted(set(codes))}
    return {code: school for code, school in found.items() if school is not None}


# ---- work orders ---------------------------------------------------------------------------------


def deadline(order: WorkOrderPublic) -> datetime | None:
    """The SLA deadline the order is racing now: accepting until it is accepted, then resolving."""
    if order.status in ("new", "assigned"):
        dues = [d for d in (order.own_due_at, order.resolve_due_at) if d is not None]
        return min(dues) if dues else None
    if order.status in ("accepted", "in_progress", "pending"):
        return order.resolve_due_at
    return None


def urgency_key(order: WorkOrderPublic) -> tuple:
    """Running clocks first, nearest deadline first; paused (pending) next; finished orders last."""
    due = deadline(order)
    group = (
        0 if order.status in ("new", "assigned", "accepted", "in_progress") else 1 if order.status == "pending" else 2
    )
    return (group, due.timestamp() if due else math.inf, order.priority, order.id)


def order_page(
    session: Session, user: User, *, status: str, school: str | None, page: int
) -> tuple[list[WorkOrderPublic], Paging]:
    """A page of orders: open ones by SLA urgency, other selections newest first."""
    if status == "open":
        orders, total = list_orders(
            session, user=user, status=ACTIVE_STATUSES, school_code=school, limit=MAX_SORTED, offset=0
        )
        orders.sort(key=urgency_key)
        paging = Paging.of(page, len(orders))
        return orders[paging.offset : paging.offset + PAGE_SIZE], paging
    statuses = () if status == "all" else (status,)
    _, total = list_orders(session, user=user, status=statuses, school_code=school, limit=1)
    paging = Paging.of(page, total)
    orders, _ = list_orders(
        session, user=user, status=statuses, school_code=school, limit=PAGE_SIZE, offset=paging.offset
    )
    return orders, paging


def due_text(order: WorkOrderPublic, lang: str, now: datetime | None = None) -> tuple[str, str]:
    """What the order's SLA clock says, and a style for it: overdue, soon, paused or fine."""
    now = now or utcnow()
    if order.status == "pending":
        return i18n.translate(lang, "paused"), "paused"
    if order.status in ("resolved", "closed"):
        if order.resolve_met is None:
            return "", ""
        key = "sla_met" if order.resolve_met else "sla_missed"
        return i18n.translate(lang, key), "met" if order.resolve_met else "overdue"
    due = deadline(order)
    if due is None:
        return "", ""
    left = (due - now).total_seconds()
    if left < 0:
        return f"{i18n.translate(lang, 'overdue')} {i18n.duration(left, lang)}", "overdue"
    return i18n.translate(lang, "due_in", left=i18n.duration(left, lang)), "soon" if left < 3600 else "fine"


def order_actions(user: User, order: WorkOrderPublic) -> list[str]:
    """The actions the user's role may take on the order in its status, in the order people do them."""
    allowed = policy.order_actions(user)
    if policy.works_own_orders(user) and order.assignee != user.username:
        return []
    if policy.admins_one_school(user) and order.school_code != user.school_code:
        return []
    actions = [a for a in ACTION_ORDER if a in allowed and order.status in TRANSITIONS[a][0]]
    if "cancel" in actions and policy.admins_one_school(user) and order.reporter_id != user.id:
        actions.remove("cancel")
    return actions


def assignable_technicians(session: Session, user: User) -> list[str]:
    """Technicians the user may assign orders to: a manager's team, or every team for county admins."""
    if not policy.can_manage_work_orders(user):
        return []
    names = set()
    for team in teams_crud.list_teams(session, user=user):
        names.update(m.username for m in team.members if m.role in policy.TAKE_ORDERS and m.is_active)
    return sorted(names)


def location(
    session: Session, user: User, device: Device | DevicePublic | None
) -> tuple[Building | None, Classroom | None]:
    """The building and classroom a device the user sees is bound to, as far as the user may see them."""
    if device is None or device.classroom_id is None:
        return None, None
    try:
        classroom = registry.read_classroom(session, user=user, classroom_id=device.classroom_id)
    except NotFound:
        return None, None
    try:
        building = registry.read_building(session, user=user, building_id=classroom.building_id)
    except NotFound:
        building = None
    return building, classroom


def device_views(session: Session, devices: Sequence[Device], stale_s: float) -> list[DevicePublic]:
    """Devices as people see them: unknown while their gateway is silent."""
    return registry.device_views(session, devices, stale_after=timedelta(seconds=stale_s))


# ---- figures -------------------------------------------------------------------------------------


def _cached_report(session: Session, user: User, day: date) -> figures_report.FiguresReport:
    key = (user.id, user.role, user.district_code, day)
    hit = _trend_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < TREND_CACHE_S:
        return hit[1]
    report = figures_report.figures(session, user=user, scope="county", date_from=day, date_to=day)
    _trend_cache[key] = (time.monotonic(), report)
    return report


def trend(session: Session, user: User, last: date, lang: str) -> list[str]:
    """SVG charts of the county's daily figures over the last days up to `last`: rates, and orders."""
    days = [last - timedelta(days=n) for n in range(TREND_DAYS - 1, -1, -1)]
    reports = [
        figures_report.figures(session, user=user, scope="county", date_from=day, date_to=day)
        if day == last
        else _cached_report(session, user, day)
        for day in days
    ]
    labels = [day.strftime("%m-%d") for day in days]

    def pct(value: float | None) -> float | None:
        return None if value is None else round(value * 100, 1)

    rates = charts.line_chart(
        labels,
        [
            charts.Series(i18n.translate(lang, "online_rate"), [pct(r.figures.online_rate) for r in reports]),
            charts.Series(i18n.translate(lang, "sla_compliance"), [pct(r.figures.sla_compliance) for r in reports]),
            charts.Series(i18n.translate(lang, "fault_rate"), [pct(r.figures.fault_rate) for r in reports]),
        ],
        title=i18n.translate(lang, "trend", days=TREND_DAYS),
        unit="%",
    )
    counts = charts.line_chart(
        labels,
        [
            charts.Series(i18n.translate(lang, "opened"), [float(r.figures.failures) for r in reports]),
            charts.Series(i18n.translate(lang, "resolved_n"), [float(r.figures.resolved) for r in reports]),
        ],
        title=i18n.translate(lang, "orders"),
    )
    mttr = charts.line_chart(
        labels,
        [charts.Series(i18n.translate(lang, "mttr"), [r.figures.mttr_h for r in reports])],
        title=i18n.translate(lang, "mttr"),
        unit="h",
    )
    return [rates, counts, mttr]


@dataclass
class Scorecard:
    """A contractor team's figures over the report's days, and its orders open and overdue now."""

    team_id: int
    name: str
    figures: figures_report.Figures
    open_orders: int
    overdue: int


def scorecards(session: Session, user: User, date_from: date, date_to: date) -> list[Scorecard]:
    """A scorecard per contractor team the user sees."""
    if not policy.can_read_contractor_figures(user):
        return []
    now = utcnow()
    cards = []
    for team in teams_crud.list_teams(session, user=user):
        report = figures_report.figures(
            session, user=user, scope="contractor", scope_id=str(team.id), date_from=date_from, date_to=date_to
        )
        active, total = list_orders(session, user=user, status=ACTIVE_STATUSES, team_id=team.id, limit=MAX_SORTED)
        overdue = sum(
            1 for order in active if order.status != "pending" and (due := deadline(order)) is not None and due < now
        )
        cards.append(Scorecard(team.id, team.name, report.figures, total, overdue))
    return cards
