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


class StoreSettings(BaseModel):
    """The store's disk quota and what happens as it fills."""

    model_config = ConfigDict(extra="forbid")

    max_mb: float = Field(default=2048.0, gt=0, description="disk the store may use")
    retention_days: float = Field(default=7.0, ge=0, description="how long synced records are kept")
    downsample_at: float = Field(default=0.7, gt=0, le=1, description="share of the quota")
    refuse_samples_at: float = Field(default=0.9, gt=0, le=1, description="share of the quota")
    downsample_interval_s: float = Field(default=300.0, gt=0, description="one sample per device per ...")


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
    store: StoreSettings = StoreSettings()
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


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Line number of the key at `loc` (e.g. ("broker", "port")) in a TOML text, when it is there."""
    if not loc:
        return None
    table, key = tuple(str(p) for p in loc[:-1]), str(loc[-1])
    current: tuple[str, ...] = ()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = tuple(part.strip() for part in line.strip("[]").split("."))
            if current == (*table, key):
                return number
        elif current == table and line.split("=", 1)[0].strip().strip('"') == key and "=" in line:
            return number
    return None


_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it, or check its spelling",
}


def _describe(exc: ValidationError, text: str) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        number = _line_of(text, tuple(err["loc"]))
        at = f"line {number}: " if number else ""
        fix = _FIXES.get(err["type"])
        lines.append(f"  {at}{where}: {err['msg']}" + (f" ({fix})" if fix else ""))
    return "\n".join(lines)


def load_settings(path: Path | None, **overrides: Any) -> GatewaySettings:
    """Read and validate the gateway's TOML file; raise ConfigError with a message naming the fix."""
    data: dict[str, Any] = {}
    text = ""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except FileNotFoundError as exc:
            raise ConfigError(f"gateway config {path}: no such file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"gateway config {path}: cannot be read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"gateway config {path}: not valid TOML: {exc}") from exc
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GatewaySettings(**data)
    except ValidationError as exc:
        raise ConfigError(
            f"gateway config {path or '(environment)'} is invalid:\n{_describe(exc, text)}"
        ) from exc
