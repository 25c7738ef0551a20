"""People who sign in: roles, user accounts, login sessions and the sign-in throttle."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic import Field as PydanticField
from sqlmodel import Field, SQLModel

from cloud.models.base import UTCDateTime, utcnow


class Role(StrEnum):
    """What a person is to ClassOps; what each role may do is cloud.policy's. (A gateway is no role: it
    signs in with its own token as a machine identity.)"""

    COUNTY_ADMIN = "county_admin"
    SCHOOL_ADMIN = "school_admin"
    TECHNICIAN = "technician"
    CONTRACTOR_MANAGER = "contractor_manager"
    AUDITOR = "auditor"


# The role names as plain strings, for the users table's column and for command-line choices.
ROLES = tuple(role.value for role in Role)


class UserBase(SQLModel):
    username: str = Field(unique=True, max_length=64)
    role: str = Field(max_length=32)
    school_code: str | None = Field(default=None, foreign_key="school.code", max_length=32)
    # County roles with a district see that district's schools; without one, every school.
    district_code: str | None = Field(default=None, foreign_key="district.code", max_length=32)
    is_active: bool = True


class User(UserBase, table=True):
    """A person who signs in to the console or the API."""

    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserPublic(UserBase):
    id: int
    role: Role


class AuthToken(SQLModel, table=True):
    """A login session: an opaque bearer token, stored only as its sha256."""

    __tablename__ = "auth_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user_account.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins counted per account and address ("pair"), per account, and per address, in the
    database so that every API worker and instance sees the same count."""

    __tablename__ = "sign_in_throttle"

    scope: str = Field(primary_key=True, max_length=8)
    # The name as typed (the account need not exist); "" in the per-address rows.
    username: str = Field(primary_key=True, max_length=64)
    # "" in the per-account rows.
    address: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    last_failure_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Per-pair rows: when this account last signed in from this address.
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SignInUnlocked(BaseModel):
    """What lifting an account's sign-in locks did."""

    username: str
    lifted: int = PydanticField(description="locked or counting records reset (the account's, and per address)")


class LoginRequest(BaseModel):
    """Credentials of a person signing in."""

    model_config = ConfigDict(extra="forbid")

    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class TokenPublic(BaseModel):
    """A bearer token handed out at login."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
