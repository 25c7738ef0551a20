"""Commands to a school's or a classroom's devices, sent from the console."""

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from cloud import policy, registry
from cloud.api.deps import SessionDep
from cloud.crud import commands as commands_crud
from cloud.errors import AccessDenied, InvalidInput
from cloud.web import i18n, views
from cloud.web.pages.common import CONSOLE_COMMANDS, chosen_classroom, done
from cloud.web.render import WebRoute, render
from cloud.web.session import Csrf, WebActor, WebUser, language, safe_next

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/commands")
def commands_page(request: Request, user: WebUser, session: SessionDep, school: str = "") -> Response:
    """Send a command to a school's or a classroom's devices, and follow the recent ones."""
    if not policy.can_command_reach(user):
        raise AccessDenied(f"the role {user.role} sends commands to single devices of its orders only")
    schools = registry.list_schools(session, user=user)
    chosen = school or (user.school_code or "")
    rooms = registry.list_classrooms(session, user=user, school_code=chosen) if chosen else []
    buildings = {b.id: b for b in registry.list_buildings(session, user=user, school_code=chosen)} if chosen else {}
    batches = commands_crud.list_batches(session, user=user, limit=views.PAGE_SIZE)
    return render(
        request,
        "commands.html",
        user,
        schools=schools,
        school=chosen,
        rooms=rooms,
        buildings=buildings,
        batches=batches,
        commands=CONSOLE_COMMANDS,
    )


@router.post("/commands")
def send_command(
    request: Request,
    actor: WebActor,
    session: SessionDep,
    _csrf: Csrf,
    name: Annotated[str, Form(max_length=32)],
    school: Annotated[str, Form(max_length=32)] = "",
    classroom: Annotated[str, Form(max_length=12)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    back: Annotated[str, Form(max_length=200)] = "/commands",
) -> Response:
    """Queue a command for every device of a school or classroom (of one role, if chosen)."""
    if name not in CONSOLE_COMMANDS:
        raise InvalidInput(f"the console sends {', '.join(CONSOLE_COMMANDS)}")
    if role not in ("", "sensor", "attendance", "blackboard"):
        raise InvalidInput("role is sensor, attendance or blackboard")
    room = chosen_classroom(classroom)
    target: dict = {"classroom": room} if room is not None else {"school": school}
    if room is None and not school:
        raise InvalidInput("choose a school or a classroom")
    if role:
        target["role"] = role
    batch = commands_crud.send_command(session, actor=actor, target=target, name=name, args={})
    return done(request, safe_next(back), i18n.translate(language(request), "command_sent", n=batch.devices))
