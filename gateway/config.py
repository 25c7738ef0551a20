"""Gateway settings: a TOML file, overridden by CLASSOPS_GATEWAY_* environment variables."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.errors import ConfigError
from protocol import topics


class BrokerSettings(BaseModel):
    """How the gateway reaches the school's Mosquitto."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str = ""
    password: str = ""
    client_id: str = ""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    device_secret: str = Field(default="", description="derives each device's MQTT password")


class CloudSettings(BaseModel):
    """How the gateway reaches the county's cloud service."""

    model_config = ConfigDict(extra="forbid")

    url: str = "http://127.0.0.1:8000"
    token: str = ""
    batch_size: int = Field(default=500, ge=1, le=5000)
    heartbeat_s: float = Field(default=15.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)


class StatusSettings(BaseModel):
    """The local status page and Prometheus endpoint."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)


class GatewaySettings(BaseSettings):
    """Everything one school's gateway needs to run."""

    model_config = SettingsConfigDict(
        env_prefix="CLASSOPS_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    school: str
    school_secret: str = Field(min_length=16)
    data_dir: Path = Path("var/gateway")
    broker: BrokerSettings = BrokerSettings()
    cloud: CloudSettings = CloudSettings()
    status: StatusSettings = StatusSettings()
    presence_check_s: float = Field(default=5.0, gt=0)
    missed_health_periods: int = Field(default=3, ge=1)

    @field_validator("school")
    @classmethod
    def _school_code(cls, value: str) -> str:
        if not topics.is_school_code(value):
            raise ValueError("must be 1 to 32 letters, digits, '_' or '-'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, as an operator expects of a one-off override.
        return env_settings, init_settings

    @property
    def client_id(self) -> str:
        """MQTT client id; fixed per school so the broker keeps the gateway's session across restarts."""
        return self.broker.client_id or "classops-gw-" + self.school

    @property
    def db_path(self) -> Path:
        """The gateway's SQLite store."""
        return self.data_dir / "gateway.db"


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def load_settings(path: Path | None, **overrides: Any) -> GatewaySettings:
    """Read and validate the gateway's TOML file; raise ConfigError with a message naming the fix."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"gateway config {path}: no such file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"gateway config {path}: not valid TOML: {exc}") from exc
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GatewaySettings(**data)
    except ValidationError as exc:
        raise ConfigError(f"gateway config {path or '(environment)'} is invalid:\n{_describe(exc)}") from exc
