"""Gateway settings: a TOML file, overridden by CLASSOPS_GATEWAY_* environment variables."""

from __future__ import annotations

import datetime as dt
import ssl
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.errors import ConfigError
from protocol import topics


class BrokerSettings(BaseModel):
    """How the gateway reaches the school's Mosquitto."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    # The broker takes a client's user name as its client id, so this is also the gateway's client id,
    # the key of its persistent session; empty means classops-gw-<school>, as mosquitto-config writes it.
    username: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    password: str = ""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    device_secret: str = Field(default="", description="derives each device's MQTT password")
    # A device's messages beyond this rate, after a burst, are flood: dropped (gateway/flood.py). A
    # healthy device sends a few a minute, and up to its event buffer (256) plus a birth at a reconnect.
    device_rate_per_s: float = Field(default=20.0, gt=0, description="messages a second, per device")
    device_burst: int = Field(default=1000, ge=1, description="messages at once, per device")

    @field_validator("username")
    @classmethod
    def _not_a_device(cls, value: str) -> str:
        if topics.is_device_id(value):
            raise ValueError("is a device's id: the gateway needs a user name of its own "
                             "(leave it out for classops-gw-<school>)")
        return value


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
    ca_file: Path | None = Field(
        default=None,
        description="PEM bundle of the county's own certificate authority, the only one the cloud's HTTPS "
        "certificate is then checked against; unset, the authorities the system trusts",
    )

    @field_validator("ca_file")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=value)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot read certificates (PEM) from {value}: {exc}") from exc
        return value

    def tls_verify(self) -> ssl.SSLContext | bool:
        """What the HTTP client checks the cloud's certificate against: ca_file's authorities, else the system's."""
        return True if self.ca_file is None else ssl.create_default_context(cafile=self.ca_file)


class StoreSettings(BaseModel):
    """The store's disk quota and what happens as it fills."""

    model_config = ConfigDict(extra="forbid")

    max_mb: float = Field(default=2048.0, gt=0, description="disk the store may use")
    retention_days: float = Field(default=7.0, ge=0, description="how long synced records are kept")
    downsample_at: float = Field(default=0.7, gt=0, le=1, description="share of the quota")
    refuse_samples_at: float = Field(default=0.9, gt=0, le=1, description="share of the quota")
    downsample_interval_s: float = Field(default=300.0, gt=0, description="one sample per device per ...")


class CalendarSettings(BaseModel):
    """The school's timetable, for rules that matter only while classes are on."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "Asia/Shanghai"
    weekdays: list[int] = Field(default=[1, 2, 3, 4, 5], description="ISO weekdays, Monday = 1")
    hours: tuple[dt.time, dt.time] = (dt.time(7, 30), dt.time(17, 30))
    holidays: list[dt.date] = Field(default_factory=list)
    school_days: list[dt.date] = Field(default_factory=list, description="make-up days on a weekend")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; for example Asia/Shanghai") from exc
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in value):
            raise ValueError("weekdays are 1 (Monday) to 7 (Sunday)")
        return value


class RangeRule(BaseModel):
    """A reading's allowed range; an alarm clears only once the value is back past the clear level."""

    model_config = ConfigDict(extra="forbid")

    reading: str
    high: float | None = None
    clear_high: float | None = None
    low: float | None = None
    clear_low: float | None = None

    @model_validator(mode="after")
    def _hysteresis(self) -> RangeRule:
        if self.high is None and self.low is None:
            raise ValueError(f"range for {self.reading} needs high or low")
        if self.high is not None:
            self.clear_high = self.high if self.clear_high is None else self.clear_high
            if self.clear_high > self.high:
                raise ValueError(f"{self.reading}: clear_high must not be above high")
        if self.low is not None:
            self.clear_low = self.low if self.clear_low is None else self.clear_low
            if self.clear_low < self.low:
                raise ValueError(f"{self.reading}: clear_low must not be below low")
        return self


def _default_ranges() -> list[RangeRule]:
    # Classroom limits after China's indoor air quality standard (GB/T 18883) and common practice.
    return [
        RangeRule(reading="co2_ppm", high=1500, clear_high=1200),
        RangeRule(reading="pm25_ugm3", high=75, clear_high=50),
        RangeRule(reading="temp_c", high=35, clear_high=33, low=10, clear_low=12),
    ]


class RulesSettings(BaseModel):
    """The edge rules' tunables."""

    model_config = ConfigDict(extra="forbid")

    offline_grace_s: float = Field(default=300.0, ge=0)
    evaluate_every_s: float = Field(default=10.0, gt=0)
    ranges: list[RangeRule] = Field(default_factory=_default_ranges)


class DisplaySettings(BaseModel):
    """A smart blackboard whose RS-232 control port is wired to the gateway's own serial port."""

    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(description="the id it shows up under, esp32-<12 hex digits>")
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0")
    addr: int = Field(default=1, ge=0, le=254)
    baudrate: int = Field(default=9600, gt=0)
    poll_s: float = Field(default=30.0, ge=1)

    @field_validator("device_id")
    @classmethod
    def _device(cls, value: str) -> str:
        if not topics.is_device_id(value):
            raise ValueError("must be esp32-<12 lowercase hex digits>, e.g. from the display's MAC address")
        return value


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
    calendar: CalendarSettings = CalendarSettings()
    rules: RulesSettings = RulesSettings()
    displays: list[DisplaySettings] = Field(default_factory=list)
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
    def broker_user(self) -> str:
        """The gateway's MQTT user name: the one `mosquitto-config` writes to the broker's files."""
        return self.broker.username or "classops-gw-" + self.school

    @property
    def client_id(self) -> str:
        """MQTT client id: the user name, which the broker enforces; fixed per school so the broker keeps
        the gateway's session across restarts."""
        return self.broker_user

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
