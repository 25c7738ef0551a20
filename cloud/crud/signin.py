"""Sign-in with throttling: the one way the API and the console check a password.

Failed sign-ins are counted three ways, in the database so that every API worker and instance shares them:
per account and address ("pair"), per account, and per address. Each count allows a few failures and then
locks for a minute, doubling with every further failure up to a ceiling; a lock lifts by itself, and a
locked attempt is refused without checking the password. The pair lock stops one guesser after a handful
of tries. The per-account lock (against guessing from many addresses) and the per-address lock (against
one address trying many accounts) have larger budgets and do not apply where the account has signed in
successfully from that address before, so the owner is not locked out by someone else's guessing.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, tuple_, update
from sqlmodel import Session, col, delete, select

from cloud.core import security
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.accounts import _require_user_admin, get_user_by_username
from cloud.crud.common import Actor, dialect_insert
from cloud.errors import NotFound
from cloud.models import SignInThrottle, SignInUnlocked, User, utcnow

# Where the request's address is unknown (no client information), all such requests share one address.
UNKNOWN_ADDRESS = "unknown"
# The failure count doubles the lock at most this many times; past it the ceiling holds anyway.
MAX_DOUBLINGS = 30


@dataclass(frozen=True)
class ThrottleRule:
    """Failures allowed before a lock, the first lock, and the longest."""

    free: int
    first_lock: timedelta
    max_lock: timedelta

    def lock(self, failures: int) -> timedelta:
        """How long `failures` failed sign-ins lock, counted from the last of them (zero below the budget)."""
        if failures < self.free:
            return timedelta(0)
        return min(self.max_lock, self.first_lock * 2 ** min(failures - self.free, MAX_DOUBLINGS))


@dataclass(frozen=True)
class SignInPolicy:
    """The throttle's budgets; see the module's docstring and docs/decisions.md."""

    pair: ThrottleRule = ThrottleRule(free=5, first_lock=timedelta(minutes=1), max_lock=timedelta(hours=1))
    account: ThrottleRule = ThrottleRule(free=20, first_lock=timedelta(minutes=1), max_lock=timedelta(minutes=15))
    address: ThrottleRule = ThrottleRule(free=30, first_lock=timedelta(minutes=1), max_lock=timedelta(hours=1))
    # Failures are forgotten after this long without another one.
    forget_after: timedelta = timedelta(days=1)
    # An address counts as the account's own for this long after a successful sign-in from it.
    known_for: timedelta = timedelta(days=90)

    def rule(self, scope: str) -> ThrottleRule:
        """The rule of one of the counts: "pair", "account" or "address"."""
        return {"pair": self.pair, "account": self.account, "address": self.address}[scope]


DEFAULT_SIGN_IN_POLICY = SignInPolicy()


@dataclass(frozen=True)
class SignInResult:
    """The user signed in, or None; when refused unchecked, the seconds until another try is taken."""

    user: User | None
    retry_after_s: int = 0
    checked: bool = True


def _keys(username: str, address: str) -> dict[str, tuple[str, str]]:
    return {"pair": (username, address), "account": (username, ""), "address": ("", address)}


def _failures(row: SignInThrottle, policy: SignInPolicy, now: datetime) -> int:
    if row.last_failure_at is None or now - row.last_failure_at > policy.forget_after:
        return 0
    return row.failures


def _locked_for(row: SignInThrottle, policy: SignInPolicy, now: datetime) -> timedelta:
    lock = policy.rule(row.scope).lock(_failures(row, policy, now))
    if not lock or row.last_failure_at is None:
        return timedelta(0)
    return max(timedelta(0), row.last_failure_at + lock - now)


def _rows(session: Session, keys: dict[str, tuple[str, str]]) -> dict[str, SignInThrottle]:
    """The three counts of an attempt, made if new and locked for this transaction."""
    session.exec(
        dialect_insert(session, SignInThrottle)
        .values([{"scope": scope, "username": u, "address": a, "failures": 0} for scope, (u, a) in keys.items()])
        .on_conflict_do_nothing(index_elements=["scope", "username", "address"])
    )
    wanted = [(scope, u, a) for scope, (u, a) in keys.items()]
    # One order for every request, so two attempts never wait for each other's rows crosswise.
    rows = session.exec(
        select(SignInThrottle)
        .where(tuple_(col(SignInThrottle.scope), col(SignInThrottle.username), col(SignInThrottle.address)).in_(wanted))
        .order_by(col(SignInThrottle.scope), col(SignInThrottle.username), col(SignInThrottle.address))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {row.scope: row for row in rows}


def _audit_failure(
    session: Session, *, username: str, address: str, user: User | None, now: datetime, summary: dict
) -> None:
    audit.record(
        session,
        actor=Actor(kind="anonymous", name="anonymous", client_ip=address),
        action="login_failed",
        entity="user",
        entity_id=username,
        school_code=user.school_code if user is not None else None,
        district_code=user.district_code if user is not None else None,
        summary=summary,
        at=now,
    )


def sign_in(
    session: Session,
    *,
    username: str,
    password: str,
    client_ip: str | None,
    policy: SignInPolicy = DEFAULT_SIGN_IN_POLICY,
    now: datetime | None = None,
) -> SignInResult:
    """Check a password under the throttle; every failure, checked or refused, goes into the audit log."""
    now = now or utcnow()
    username = username[:64]
    address = (client_ip or UNKNOWN_ADDRESS)[:64]
    keys = _keys(username, address)

    begin_write(session)
    rows = _rows(session, keys)
    user = get_user_by_username(session, username=username)
    pair = rows["pair"]
    known = pair.last_success_at is not None and now - pair.last_success_at <= policy.known_for
    applicable = [pair] if known else list(rows.values())
    wait = max(_locked_for(row, policy, now) for row in applicable)
    if wait > timedelta(0):
        retry_after = max(1, math.ceil(wait.total_seconds()))
        _audit_failure(
            session,
            username=username,
            address=address,
            user=user,
            now=now,
            summary={"reason": "throttled", "retry_after_s": retry_after},
        )
        session.commit()
        return SignInResult(user=None, retry_after_s=retry_after, checked=False)
    # The attempt counts as a failure before the password is checked, and is taken back if it was right:
    # parallel guesses then cannot all pass the check before the first of them is recorded.
    for row in rows.values():
        row.failures = _failures(row, policy, now) + 1
        row.last_failure_at = now
        session.add(row)
    password_hash = user.password_hash if user is not None else None
    active = user is not None and user.is_active
    session.commit()

    # bcrypt takes a quarter of a second; no transaction is held meanwhile.
    if password_hash is None:
        security.verify_password(password, security.dummy_password_hash())
        matches = False
    else:
        matches = security.verify_password(password, password_hash)

    begin_write(session)
    user = get_user_by_username(session, username=username)
    if matches and active and user is not None:
        rows = _rows(session, keys)
        for row in rows.values():
            row.failures = 0 if row.scope == "pair" else max(0, row.failures - 1)
            session.add(row)
        rows["pair"].last_success_at = now
        session.commit()
        session.refresh(user)
        return SignInResult(user=user)
    _audit_failure(
        session,
        username=username,
        address=address,
        user=user,
        now=now,
        summary={"reason": "disabled" if matches else "password"},
    )
    session.commit()
    return SignInResult(user=None)


def unlock_sign_in(session: Session, *, actor: Actor, username: str) -> SignInUnlocked:
    """Lift the sign-in locks of an account (its own count and its count at every address); county admins."""
    begin_write(session)
    user = get_user_by_username(session, username=username)
    if user is None:
        raise NotFound(f"user {username} does not exist")
    _require_user_admin(session, actor, role=user.role, school_code=user.school_code, district_code=user.district_code)
    lifted = session.exec(
        update(SignInThrottle)
        .where(
            col(SignInThrottle.username) == username,
            col(SignInThrottle.scope).in_(("pair", "account")),
            col(SignInThrottle.failures) > 0,
        )
        .values(failures=0)
    ).rowcount
    audit.record(
        session,
        actor=actor,
        action="unlock_sign_in",
        entity="user",
        entity_id=username,
        school_code=user.school_code,
        district_code=user.district_code,
        summary={"lifted": lifted},
    )
    session.commit()
    return SignInUnlocked(username=username, lifted=lifted)


def prune_sign_in_records(
    session: Session, *, now: datetime | None = None, policy: SignInPolicy = DEFAULT_SIGN_IN_POLICY
) -> int:
    """Delete the counts that no longer matter (no recent failure, no recent success); the caller commits."""
    now = now or utcnow()
    forgotten = now - policy.forget_after
    unknown = now - policy.known_for
    return session.exec(
        delete(SignInThrottle).where(
            or_(col(SignInThrottle.last_failure_at).is_(None), col(SignInThrottle.last_failure_at) < forgotten),
            or_(col(SignInThrottle.last_success_at).is_(None), col(SignInThrottle.last_success_at) < unknown),
        )
    ).rowcount
