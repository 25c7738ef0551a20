"""Reading orders: which orders a user may see, pages of them and one order with its journal and photos."""

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.crud.access import work_order_condition
from cloud.errors import NotFound
from cloud.models import (
    ContractorTeam,
    User,
    WorkOrder,
    WorkOrderAttachment,
    WorkOrderAttachmentPublic,
    WorkOrderDetail,
    WorkOrderEvent,
    WorkOrderEventPublic,
    WorkOrderPublic,
)


def _names(session: Session, orders: Sequence[WorkOrder]) -> tuple[dict[int, str], dict[int, str]]:
    user_ids = sorted({o.assignee_id for o in orders if o.assignee_id is not None})
    team_ids = sorted({o.team_id for o in orders if o.team_id is not None})
    users = (
        dict(session.exec(select(User.id, User.username).where(col(User.id).in_(user_ids))).all()) if user_ids else {}
    )
    teams = (
        dict(
            session.exec(
                select(ContractorTeam.id, ContractorTeam.name).where(col(ContractorTeam.id).in_(team_ids))
            ).all()
        )
        if team_ids
        else {}
    )
    return users, teams  # type: ignore[return-value]


def order_views(session: Session, orders: Sequence[WorkOrder]) -> list[WorkOrderPublic]:
    """Orders as people see them, with the assignee's and team's names."""
    users, teams = _names(session, orders)
    views = []
    for order in orders:
        view = WorkOrderPublic.model_validate(order, from_attributes=True)
        view.assignee = users.get(order.assignee_id) if order.assignee_id is not None else None
        view.team = teams.get(order.team_id) if order.team_id is not None else None
        views.append(view)
    return views


def visible_order(session: Session, user: User, order_id: int) -> WorkOrder:
    """An order `user` may read; NotFound otherwise."""
    condition = work_order_condition(session, user)
    statement = select(WorkOrder).where(WorkOrder.id == order_id)
    if condition is not None:
        statement = statement.where(condition)
    order = session.exec(statement).first()
    if order is None:
        raise NotFound(f"work order {order_id} not found")
    return order


def list_orders(
    session: Session,
    *,
    user: User,
    status: Sequence[str] = (),
    school_code: str | None = None,
    device_id: str | None = None,
    assignee: str | None = None,
    team_id: int | None = None,
    order_ids: Sequence[int] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[WorkOrderPublic], int]:
    """A page of the orders `user` may read, newest first, and how many match in all."""
    conditions = []
    condition = work_order_condition(session, user)
    if condition is not None:
        conditions.append(condition)
    if status:
        conditions.append(col(WorkOrder.status).in_(list(status)))
    if school_code is not None:
        conditions.append(col(WorkOrder.school_code) == school_code)
    if device_id is not None:
        conditions.append(col(WorkOrder.device_id) == device_id)
    if assignee is not None:
        user_id = session.exec(select(User.id).where(User.username == assignee)).first()
        conditions.append(col(WorkOrder.assignee_id) == (user_id or -1))
    if team_id is not None:
        conditions.append(col(WorkOrder.team_id) == team_id)
    if order_ids is not None:
        conditions.append(col(WorkOrder.id).in_(sorted(set(order_ids))))
    total = session.exec(select(func.count()).select_from(WorkOrder).where(*conditions)).one()
    orders = session.exec(
        select(WorkOrder).where(*conditions).order_by(col(WorkOrder.id).desc()).offset(offset).limit(limit)
    ).all()
    return order_views(session, orders), total


def read_order(session: Session, *, user: User, order_id: int) -> WorkOrderDetail:
    """One order with its journal, photos, time spent and parts used."""
    order = visible_order(session, user, order_id)
    return order_detail(session, order)


def order_detail(session: Session, order: WorkOrder) -> WorkOrderDetail:
    """An order with its journal and attachments."""
    events = session.exec(
        select(WorkOrderEvent).where(WorkOrderEvent.order_id == order.id).order_by(col(WorkOrderEvent.id))
    ).all()
    attachments = session.exec(
        select(WorkOrderAttachment)
        .where(WorkOrderAttachment.order_id == order.id)
        .order_by(col(WorkOrderAttachment.id))
    ).all()
    parts: dict[str, int] = {}
    for event in events:
        if event.kind == "part" and event.part is not None:
            parts[event.part] = parts.get(event.part, 0) + (event.quantity or 0)
    view = order_views(session, [order])[0]
    return WorkOrderDetail(
        **view.model_dump(),
        events=[WorkOrderEventPublic.model_validate(event) for event in events],
        attachments=[WorkOrderAttachmentPublic.model_validate(a) for a in attachments],
        time_spent_min=sum(event.minutes or 0 for event in events if event.kind == "time"),
        parts=parts,
    )
