"""The one policy: roles are spelled only in cloud/policy.py and cloud/models/accounts.py, and the table keeps the
rules of the design (auditors read only, rosters are for the school's own admins, a gateway is no role)."""

import re
from pathlib import Path

import pytest

from cloud import policy
from cloud.models import ROLES, Role, User
from cloud.web.render import environment
from cloud.workorders import TRANSITIONS

CLOUD = Path(__file__).resolve().parents[2] / "cloud"
# Where role names may be written out: the enum, the table, and migrations frozen in their day.
ROLE_HOMES = (CLOUD / "policy.py", CLOUD / "models" / "accounts.py", CLOUD / "migrations")
NAMES = "|".join(re.escape(role.value) for role in Role)
ROLE_LITERAL = re.compile(rf"""(["'])({NAMES})\1""")
WRITE_PERMISSIONS = (
    policy.WRITE_SCHOOLS,
    policy.WRITE_DISTRICTS,
    policy.MANAGE_USERS,
    policy.MANAGE_TEAMS,
    policy.SET_CALENDARS,
    policy.REPORT_FAULTS,
    policy.MANAGE_WORK_ORDERS,
    policy.LOG_WORK,
    policy.SEND_COMMANDS,
)


def role_literals(text: str) -> list[str]:
    """The role names written as string literals in `text`."""
    return [match.group(0) for match in ROLE_LITERAL.finditer(text)]


def _person(role: Role, school_code: str | None = None) -> User:
    return User(username=f"a-{role}", role=role, school_code=school_code, password_hash="-")


def test_role_names_are_written_only_in_the_policy_and_the_models() -> None:
    found = []
    for path in sorted(CLOUD.rglob("*")):
        if path.suffix not in (".py", ".html", ".js") or any(path.is_relative_to(home) for home in ROLE_HOMES):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            found += [f"{path.relative_to(CLOUD.parent)}:{number}: {name}" for name in role_literals(line)]
    assert not found, "role checks go through cloud.policy; role names written elsewhere:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('if user.role == "county_admin":', ['"county_admin"']),
        ("{% if user.role in ('technician', 'auditor') %}", ["'technician'", "'auditor'"]),
        ('raise AccessDenied(f"a school_admin needs a school")', []),
        ('t("role_technician")', []),
    ],
)
def test_the_scan_sees_role_literals_and_only_those(text: str, expected: list[str]) -> None:
    assert role_literals(text) == expected


def test_the_role_enum_is_the_one_list_of_roles() -> None:
    assert ROLES == tuple(role.value for role in Role)
    assert "gateway" not in ROLES, "a gateway signs in with its own token, as a machine identity"


def test_auditors_read_and_never_write() -> None:
    auditor = _person(Role.AUDITOR)
    assert policy.is_read_only(auditor) and policy.sees_whole_county(auditor)
    assert all(Role.AUDITOR not in roles for roles in WRITE_PERMISSIONS)
    assert not policy.order_actions(auditor)


def test_only_a_schools_own_admin_reads_its_roster() -> None:
    assert policy.can_read_roster(_person(Role.SCHOOL_ADMIN, "s1"), "s1")
    assert not policy.can_read_roster(_person(Role.SCHOOL_ADMIN, "s1"), "s2")
    assert [role for role in Role if policy.can_read_roster(_person(role, "s1"), "s1")] == [Role.SCHOOL_ADMIN]


def test_every_role_has_its_work_order_actions_and_they_are_real_transitions() -> None:
    assert set(policy.ROLE_ORDER_ACTIONS) == set(Role)
    assert policy.ORDER_ACTIONS == set(TRANSITIONS)
    assert all(actions <= policy.ORDER_ACTIONS for actions in policy.ROLE_ORDER_ACTIONS.values())


def test_a_role_read_from_the_database_as_text_gets_the_same_answers() -> None:
    for role in Role:
        as_enum, as_text = _person(role), _person(role)
        as_text.role = role.value
        assert type(as_text.role) is str
        answers = [(f(as_enum), f(as_text)) for f in policy.TEMPLATE_GLOBALS.values()]
        assert all(a == b for a, b in answers), role


def test_templates_ask_the_policy() -> None:
    page = environment.from_string("{{ can_send_commands(user) }} {{ is_read_only(user) }}")
    assert page.render(user=_person(Role.TECHNICIAN)) == "True False"
    assert page.render(user=_person(Role.AUDITOR)) == "False True"
