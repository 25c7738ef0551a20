"""People: accounts, passwords and login sessions."""

from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, select

from cloud import policy
from cloud.core import security
from cloud.core.db import begin_write
from cloud.crud import audit
from cloud.crud.access import read_scope
from cloud.crud.common import Actor
from cloud.errors import AccessDenied, AlreadyExists, InvalidInput, NotFound
from cloud.models import ROLES, AuthToken, District, School, User, utcnow


def get_user_by_username(session: Session, *, username: str) -> User | None:
    """The user named `username`, if any."""
    return session.exec(select(User).where(User.username == username)).first()


def _check_binding(session: Session, *, role: str, school_code: str | None, district_code: str | None) -> None:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    if role in policy.SCHOOL_STAFF:
        if school_code is None:
            raise InvalidInput("a school_admin needs a school")
        if district_code is not None:
            raise InvalidInput("a school_admin is bound to a school, not a district")
    elif school_code is not None:
        raise InvalidInput(f"a {role} is not bound to a school; only a school_admin is")
    if role in policy.CONTRACTOR_STAFF and district_code is not None:
        raise InvalidInput(f"a {role} reaches devices through work orders, not a district")
    if school_code is not None and session.get(School, school_code) is None:
        raise NotFound(f"school {school_code} does not exist")
    if district_code is not None and session.get(District, district_code) is None:
        raise NotFound(f"district {district_code} does not exist")


def _require_user_admin(
    session: Session, actor: Actor, *, role: str, school_code: str | None, district_code: str | None
) -> None:
    """County admins manage the accounts of their district (a city-wide one, every account)."""
    if actor.kind == "cli":
        return
    user = actor.user
    if actor.kind != "user" or user is None or not policy.can_manage_users(user) or not user.is_active:
        raise AccessDenied("only county admins manage accounts")
    # Contractors' people are bound to no district; any county admin may register them.
    if user.district_code is None or role in policy.CONTRACTOR_STAFF:
        return
    if school_code is not None and read_scope(session, user).allows_school(school_code):
        return
    if school_code is None and district_code == user.district_code:
        return
    raise AccessDenied(f"county admin {user.username} manages only the accounts of district {user.district_code}")


def create_user(
    session: Session,
    *,
    actor: Actor,
    username: str,
    password: str,
    role: str,
    school_code: str | None = None,
    district_code: str | None = None,
) -> User:
    """Register a person: school admins name their school; county roles may name their district."""
    begin_write(session)
    if not username or len(username) > 64 or username != username.strip():
        raise InvalidInput("username must be 1 to 64 characters without surrounding spaces")
    _check_binding(session, role=role, school_code=school_code, district_code=district_code)
    _require_user_admin(session, actor, role=role, school_code=school_code, district_code=district_code)
    problem = security.password_problem(password)
    if problem is not None:
        raise InvalidInput(problem)
    if get_user_by_username(session, username=username) is not None:
        raise AlreadyExists(f"user {username} already exists")
    user = User(
        username=username,
        password_hash=security.hash_password(password),
        role=role,
        school_code=school_code,
        district_code=district_code,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="user",
        entity_id=user.username,
        school_code=school_code,
        district_code=district_code,
        summary={"role": role, "school_code": school_code, "district_code": district_code},
    )
    session.commit()
    session.refresh(user)
    return user


def set_user_active(session: Session, *, actor: Actor, username: str, is_active: bool) -> User:
    """Enable or disable a user's account; disabling also ends their login sessions."""
    begin_write(session)
    user = get_user_by_username(session, username=username)
    if user is None:
        raise NotFound(f"user {username} does not exist")
    _require_user_admin(session, actor, role=user.role, school_code=user.school_code, district_code=user.district_code)
    user.is_active = is_active
    session.add(user)
    if not is_active:
        session.exec(delete(AuthToken).where(col(AuthToken.user_id) == user.id))
    audit.record(
        session,
        actor=actor,
        action="enable" if is_active else "disable",
        entity="user",
        entity_id=user.username,
        school_code=user.school_code,
        district_code=user.district_code,
    )
    session.commit()
    session.refresh(user)
    return user


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The active user whose credentials these are, or None."""
    user = get_user_by_username(session, username=username)
    if user is None:
        security.verify_password(password, security.dummy_password_hash())
        return None
    if not security.verify_password(password, user.password_hash) or not user.is_active:
        return None
    return user


def create_auth_token(
    session: Session,
    *,
    user: User,
    ttl: timedelta,
    now: datetime | None = None,
    client_ip: str | None = None,
) -> tuple[str, AuthToken]:
    """Open a login session for `user`; return the bearer token and its stored record."""
    begin_write(session)
    if user.id is None:
        raise InvalidInput("the user has not been stored yet")
    now = now or utcnow()
    session.exec(delete(AuthToken).where(col(AuthToken.user_id) == user.id, col(AuthToken.expires_at) < now))
    token = security.new_token()
    record = AuthToken(token_hash=security.hash_token(token), user_id=user.id, created_at=now, expires_at=now + ttl)
    session.add(record)
    audit.record(
        session,
        actor=Actor.of_user(user, client_ip),
        action="login",
        entity="user",
        entity_id=user.username,
        school_code=user.school_code,
        district_code=user.district_code,
        at=now,
    )
    session.commit()
    session.refresh(record)
    return token, record


def user_for_token(session: Session, *, token: str, now: datetime | None = None) -> User | None:
    """The active user whose unexpired login session `token` is, or None."""
    now = now or utcnow()
    record = session.get(AuthToken, security.hash_token(token))
    if record is None or record.expires_at <= now:
        return None
    user = session.get(User, record.user_id)
    if user is None or not user.is_active:
        return None
    return user


def revoke_auth_token(session: Session, *, token: str, client_ip: str | None = None) -> None:
    """End the login session `token`; a no-op if it has already ended."""
    begin_write(session)
    record = session.get(AuthToken, security.hash_token(token))
    if record is None:
        session.commit()
        return
    user = session.get(User, record.user_id)
    session.delete(record)
    if user is not None:
        audit.record(
            session,
            actor=Actor.of_user(user, client_ip),
            action="logout",
            entity="user",
            entity_id=user.username,
            school_code=user.school_code,
            district_code=user.district_code,
        )
    session.commit()
