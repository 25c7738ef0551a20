"""Settings of the cloud service, read from CLASSOPS_CLOUD_* environment variables."""

from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Passwords that ship in examples and container defaults; never acceptable in production.
WEAK_DATABASE_PASSWORDS = frozenset({"", "postgres", "password", "changethis", "classops", "secret"})


class Settings(BaseSettings):
    """Everything the cloud needs to know about where it runs."""

    model_config = SettingsConfigDict(env_prefix="CLASSOPS_CLOUD_", extra="ignore")

    database_url: str = "sqlite:///./var/cloud.db"
    host: str = "127.0.0.1"
    port: int = 8000
    environment: Literal["development", "production"] = "development"
    access_token_ttl_minutes: int = 8 * 60
    max_sync_records: int = 5000
    sql_echo: bool = False

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        try:
            url = make_url(self.database_url)
        except ArgumentError as exc:
            raise ValueError(f"database_url is not a database URL: {exc}") from exc
        if self.environment == "production" and url.password is not None:
            if url.password in WEAK_DATABASE_PASSWORDS:
                raise ValueError(
                    "database_url uses a default or weak password; set a strong one for production"
                )
        if self.access_token_ttl_minutes <= 0:
            raise ValueError("access_token_ttl_minutes must be positive")
        if self.max_sync_records <= 0:
            raise ValueError("max_sync_records must be positive")
        return self
