"""Who may do what: the one table of roles and permissions that the domain, the API, the console and its
templates all read.

Each permission is a set of roles and a function of the user named after it. Tenancy (which schools,
devices and orders a role reaches) is cloud.crud.access's, built on these. Two writers stand outside the
roles: a gateway is a machine identity, signed in by its own token, that may sync only its own school;
the admin command line acts for the operator and is not checked here.
"""

from cloud.models import WORK_ORDER_ACTIONS, Role, User

COUNTY_STAFF = frozenset({Role.COUNTY_ADMIN, Role.AUDITOR})
CONTRACTOR_STAFF = frozenset({Role.TECHNICIAN, Role.CONTRACTOR_MANAGER})
SCHOOL_STAFF = frozenset({Role.SCHOOL_ADMIN})
READ_ONLY = frozenset({Role.AUDITOR})

# Changes to the registry: county admins in their district (or city-wide); school admins in their school.
WRITE_DISTRICTS = frozenset({Role.COUNTY_ADMIN})
WRITE_SCHOOLS = frozenset({Role.COUNTY_ADMIN, Role.SCHOOL_ADMIN})
MANAGE_USERS = frozenset({Role.COUNTY_ADMIN})
MANAGE_TEAMS = frozenset({Role.COUNTY_ADMIN})
SET_CALENDARS = frozenset({Role.COUNTY_ADMIN})
READ_AUDIT_LOG = COUNTY_STAFF
# Raw attendance and rosters are personal data: only the school's own admins read them.
READ_PERSONAL_DATA = SCHOOL_STAFF
# Contractors reach a school to repair its devices, not to follow its attendance.
READ_ATTENDANCE = frozenset(Role) - CONTRACTOR_STAFF
SEE_TEAMS = COUNTY_STAFF | CONTRACTOR_STAFF
TEAM_MEMBERS = CONTRACTOR_STAFF
CONTRACTOR_FIGURES = COUNTY_STAFF | {Role.CONTRACTOR_MANAGER}
SITE_FIGURES = COUNTY_STAFF | SCHOOL_STAFF
COUNTY_FIGURES = COUNTY_STAFF

# Work orders.
REPORT_FAULTS = frozenset({Role.COUNTY_ADMIN, Role.SCHOOL_ADMIN})
# Set an order's priority and assign it to a technician.
MANAGE_WORK_ORDERS = frozenset({Role.COUNTY_ADMIN, Role.CONTRACTOR_MANAGER})
LOG_WORK = frozenset({Role.COUNTY_ADMIN, Role.TECHNICIAN, Role.CONTRACTOR_MANAGER})
# Who orders are assigned to, and who then works only the orders assigned to them.
TAKE_ORDERS = frozenset({Role.TECHNICIAN})
ORDER_ACTIONS = frozenset(WORK_ORDER_ACTIONS)
# What each role may do to an order it can see (county admins: everything in their district).
ROLE_ORDER_ACTIONS: dict[str, frozenset[str]] = {
    Role.TECHNICIAN: frozenset({"accept", "start", "pending", "resume", "resolve"}),
    Role.CONTRACTOR_MANAGER: frozenset({"assign"}),
    Role.SCHOOL_ADMIN: frozenset({"close", "reopen", "cancel"}),
    Role.COUNTY_ADMIN: ORDER_ACTIONS,
    Role.AUDITOR: frozenset(),
}

# Commands: technicians only to single devices of their open orders; the others to what they may change.
SEND_COMMANDS = frozenset({Role.COUNTY_ADMIN, Role.SCHOOL_ADMIN, Role.TECHNICIAN})
COMMAND_REACH = frozenset({Role.COUNTY_ADMIN, Role.SCHOOL_ADMIN})
COMMAND_LEVELS: dict[str, frozenset[str]] = {
    Role.COUNTY_ADMIN: frozenset({"device", "classroom", "school", "district", "county"}),
    Role.SCHOOL_ADMIN: frozenset({"device", "classroom", "school"}),
    Role.TECHNICIAN: frozenset({"device"}),
}


def _in(user: User, roles: frozenset[Role]) -> bool:
    return user.role in roles


def sees_whole_county(user: User) -> bool:
    """County staff: every school of their district, or of the city when they have none."""
    return _in(user, COUNTY_STAFF)


def is_county_admin(user: User) -> bool:
    """A county admin: changes the registry, teams, calendars and accounts of their district."""
    return user.role == Role.COUNTY_ADMIN


def admins_one_school(user: User) -> bool:
    """A school admin: bound to one school, which they read and change."""
    return _in(user, SCHOOL_STAFF)


def works_on_orders(user: User) -> bool:
    """Contractor staff: they reach only the devices of their (or their team's) open work orders."""
    return _in(user, CONTRACTOR_STAFF)


def works_own_orders(user: User) -> bool:
    """A technician: takes the orders assigned to them, and works only those."""
    return _in(user, TAKE_ORDERS)


def manages_team(user: User) -> bool:
    """A contractor manager: reaches the orders of their team and assigns within it."""
    return user.role == Role.CONTRACTOR_MANAGER


def is_read_only(user: User) -> bool:
    """True if the role reads but never writes."""
    return _in(user, READ_ONLY)


def can_write_schools(user: User) -> bool:
    """May change buildings, classrooms and devices of the schools in reach."""
    return _in(user, WRITE_SCHOOLS)


def can_write_districts(user: User) -> bool:
    """May change the schools and gateways of their district (and, city-wide, cities and districts)."""
    return _in(user, WRITE_DISTRICTS)


def can_manage_users(user: User) -> bool:
    """May create and change accounts."""
    return _in(user, MANAGE_USERS)


def can_manage_teams(user: User) -> bool:
    """May create and change contractor teams."""
    return _in(user, MANAGE_TEAMS)


def can_set_calendars(user: User) -> bool:
    """May set service calendars."""
    return _in(user, SET_CALENDARS)


def can_read_audit_log(user: User) -> bool:
    """May read the audit log."""
    return _in(user, READ_AUDIT_LOG)


def can_read_roster(user: User, school_code: str | None = None) -> bool:
    """May read the personal data (roster, raw attendance) of `school_code`, or of some school if None."""
    if not _in(user, READ_PERSONAL_DATA) or not user.school_code:
        return False
    return school_code is None or school_code == user.school_code


def can_read_attendance(user: User) -> bool:
    """May read attendance aggregates (per class and day) of the schools in reach."""
    return _in(user, READ_ATTENDANCE)


def can_see_teams(user: User) -> bool:
    """May list contractor teams (county staff all, contractor staff their own)."""
    return _in(user, SEE_TEAMS)


def can_join_team(user: User) -> bool:
    """May be a member of a contractor team."""
    return _in(user, TEAM_MEMBERS)


def can_read_contractor_figures(user: User) -> bool:
    """May read a team's figures (a manager only their own team's)."""
    return _in(user, CONTRACTOR_FIGURES)


def can_read_site_figures(user: User) -> bool:
    """May read the figures of schools (and, for county staff, of the county)."""
    return _in(user, SITE_FIGURES)


def can_read_county_figures(user: User) -> bool:
    """May read the figures of a whole county."""
    return _in(user, COUNTY_FIGURES)


def can_report_faults(user: User) -> bool:
    """May report a fault on a device by hand."""
    return _in(user, REPORT_FAULTS)


def can_manage_work_orders(user: User) -> bool:
    """May set an order's priority and assign it to a technician."""
    return _in(user, MANAGE_WORK_ORDERS)


def can_log_work(user: User) -> bool:
    """May log parts used and time spent on an order."""
    return _in(user, LOG_WORK)


def order_actions(user: User) -> frozenset[str]:
    """The work order actions the user's role may take on an order it can see."""
    return ROLE_ORDER_ACTIONS.get(user.role, frozenset())


def can_send_commands(user: User) -> bool:
    """May send commands to devices at all."""
    return _in(user, SEND_COMMANDS)


def can_command_reach(user: User) -> bool:
    """May command every device of the schools they may change, not only those of their work orders."""
    return _in(user, COMMAND_REACH)


def can_command_level(user: User, level: str) -> bool:
    """May address a command to a whole `level` (device, classroom, school, district or county)."""
    return level in COMMAND_LEVELS.get(user.role, frozenset())


# The predicates the console's templates call, e.g. {% if can_send_commands(user) %}.
TEMPLATE_GLOBALS = {
    function.__name__: function
    for function in (
        sees_whole_county,
        is_county_admin,
        admins_one_school,
        works_on_orders,
        works_own_orders,
        manages_team,
        is_read_only,
        can_read_roster,
        can_read_attendance,
        can_send_commands,
        can_command_reach,
        can_report_faults,
        can_manage_work_orders,
    )
}
