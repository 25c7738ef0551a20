"""Data functions of the cloud; every route reads and writes through these, and they enforce tenancy.

Reads take the acting `user`; writes take an `actor` (a user, a gateway or the admin command line) and
add an audit entry in the same transaction as the change.
"""

from cloud.crud.access import Scope, personal_data_school, read_scope
from cloud.crud.accounts import (
    authenticate,
    create_auth_token,
    create_user,
    get_user_by_username,
    revoke_auth_token,
    set_user_active,
    user_for_token,
)
from cloud.crud.attendance import (
    create_roster_entry,
    daily_attendance,
    delete_roster_entry,
    import_roster,
    list_attendance_events,
    list_roster,
    update_roster_entry,
)
from cloud.crud.audit import list_entries as list_audit_entries
from cloud.crud.common import Actor, database_ok
from cloud.crud.history import (
    list_alarms,
    list_health_hourly,
    list_health_samples,
    list_telemetry,
    prune_history,
    rollup_health,
    run_maintenance,
)
from cloud.crud.operations import OperationsReport, run_operations
from cloud.crud.signin import SignInPolicy, SignInResult, sign_in, unlock_sign_in

__all__ = [
    "Actor",
    "OperationsReport",
    "Scope",
    "SignInPolicy",
    "SignInResult",
    "authenticate",
    "create_auth_token",
    "create_roster_entry",
    "create_user",
    "daily_attendance",
    "database_ok",
    "delete_roster_entry",
    "get_user_by_username",
    "import_roster",
    "list_alarms",
    "list_attendance_events",
    "list_audit_entries",
    "list_health_hourly",
    "list_health_samples",
    "list_roster",
    "list_telemetry",
    "personal_data_school",
    "prune_history",
    "read_scope",
    "revoke_auth_token",
    "rollup_health",
    "run_operations",
    "run_maintenance",
    "set_user_active",
    "sign_in",
    "unlock_sign_in",
    "update_roster_entry",
    "user_for_token",
]
