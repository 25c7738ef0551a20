"""The county dashboard: figures, trends, per-school table, scorecards and exports."""

from datetime import date, timedelta

from fastapi import APIRouter, Request, Response
from sqlmodel import Session

from cloud import policy, registry
from cloud.api.deps import SessionDep
from cloud.api.exports import figures_csv, figures_xlsx
from cloud.api.params import From, To
from cloud.errors import AccessDenied, NotFound
from cloud.figures import report as figures_report
from cloud.models import User, utcnow
from cloud.web import i18n, views
from cloud.web.pages.common import Page
from cloud.web.render import WebRoute, render
from cloud.web.session import WebUser, language

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _require_county(user: User) -> None:
    if not policy.sees_whole_county(user):
        raise AccessDenied(f"the county dashboard is for county staff, not the role {user.role}")


def _period(date_from: date | None, date_to: date | None, session: Session, user: User) -> tuple[date, date]:
    schools = registry.list_schools(session, user=user)
    today = utcnow().astimezone(i18n.zone(schools[0].timezone if schools else None)).date()
    last = date_to or today
    return date_from or last - timedelta(days=figures_report.DEFAULT_DAYS - 1), last


@router.get("/county")
def county_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    date_from: From = None,
    date_to: To = None,
    page: Page = 1,
) -> Response:
    """The county's figures, their trends, a table per school and the contractors' scorecards."""
    _require_county(user)
    first, last = _period(date_from, date_to, session, user)
    report = figures_report.figures(session, user=user, scope="county", date_from=first, date_to=last)
    lang = language(request)
    paging = views.Paging.of(page, len(report.schools))
    return render(
        request,
        "county.html",
        user,
        report=report,
        charts=views.trend(session, user, last, lang),
        schools=report.schools[paging.offset : paging.offset + views.PAGE_SIZE],
        paging=paging,
        cards=views.scorecards(session, user, first, last),
        first=first,
        last=last,
        trend_days=views.TREND_DAYS,
    )


@router.get("/county/export.{extension}")
def county_export(
    extension: str,
    user: WebUser,
    session: SessionDep,
    date_from: From = None,
    date_to: To = None,
) -> Response:
    """The county's figures as the API exports them, for the dashboard's buttons."""
    _require_county(user)
    if extension not in ("csv", "xlsx"):
        raise NotFound(f"no export as .{extension}")
    report = figures_report.figures(session, user=user, scope="county", date_from=date_from, date_to=date_to)
    return figures_csv(report) if extension == "csv" else figures_xlsx(report)
