"""Settings of the cloud service, read from CLASSOPS_CLOUD_* environment variables."""

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from protocol import limits

# A gateway's sync record: a device message of at most limits.MAX_MESSAGE_BYTES, and the envelope the gateway
# writes around it (gseq, kind, device, boot, seq, ts).
SYNC_RECORD_BYTES = limits.MAX_MESSAGE_BYTES + 512
# A multipart form's boundaries, part headers and small fields around the file it carries.
FORM_OVERHEAD_BYTES = 64 * 1024

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
    # Server processes (`classops cloud serve`) collect garbage less often and leave start-up's objects out
    # of the collector's passes; an app made inside another program (tests) leaves the collector alone.
    tune_gc: bool = False
    # Where people reach the service; QR labels encode <public_base_url>/d/<device id>.
    public_base_url: str = "http://127.0.0.1:8000"
    # A gateway silent for longer than this makes its school's devices "unknown" rather than offline.
    gateway_stale_s: float = 120.0
    # Token bucket per gateway on /gateway/sync: sustained batches per second, and the burst allowed.
    sync_rate_per_s: float = 5.0
    sync_burst: int = 60
    # Health and telemetry samples are kept this long; hourly roll-ups much longer.
    sample_retention_days: int = 31
    rollup_retention_days: int = 2 * 366
    # How often the app rolls up and prunes history; 0 leaves it to `classops cloud maintenance`.
    maintenance_interval_s: float = 600.0
    max_import_bytes: int = 10 * 1024 * 1024
    max_import_rows: int = 50_000
    # The load balancers and reverse proxies in front of the service, as networks ("10.0.0.0/8,::1"; env: a
    # comma-separated list). A request from one of them has its client's address read from X-Forwarded-For,
    # from the right, past every trusted hop; the left part is whatever the client wrote. None: the peer's.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = []
    # The interactive API documentation (/docs, /redoc) and the OpenAPI document behind it (/openapi.json).
    api_docs: bool = True
    openapi_schema: bool = True
    # How often the app checks stale gateways, cleared alarms, SLA deadlines and command expiry; 0 = never.
    operations_interval_s: float = 60.0
    # An alarm that clears must stay clear this long before the device counts as having verified the fix.
    verify_hold_s: float = 600.0
    # A fault that returns this soon after its order was resolved reopens that order.
    reopen_window_s: float = 24 * 3600.0
    # More than flap_threshold raises within flap_window_s mark an order's alarm as flapping.
    flap_window_s: float = 30 * 60.0
    flap_threshold: int = 3
    # Escalations are POSTed here as JSON (none if unset), retried with doubling delays.
    escalation_webhook_url: str | None = None
    webhook_max_attempts: int = 8
    webhook_retry_s: float = 30.0
    # Photos of work orders are stored under this directory.
    media_dir: str = "./var/media"
    max_attachment_bytes: int = 5 * 1024 * 1024
    # The longest a gateway's downlink request is held open waiting for something to send.
    downlink_max_wait_s: float = 30.0
    # A request body larger than its route allows is refused (413) as it arrives, before it is parsed or its
    # token checked: /gateway/sync allows its largest batch (max_sync_body_bytes), a route that takes a file
    # its largest file (max_upload_body_bytes), every other route this.
    max_body_bytes: int = 256 * 1024
    # Serve HTTPS with this certificate chain and private key (PEM files), both or neither.
    tls_certfile: str | None = None
    tls_keyfile: str | None = None

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        try:
            url = make_url(self.database_url)
        except ArgumentError as exc:
            raise ValueError(f"database_url is not a database URL: {exc}") from exc
        if self.environment == "production" and url.password is not None:
            if url.password in WEAK_DATABASE_PASSWORDS:
                raise ValueError("database_url uses a default or weak password; set a strong one for production")
        if self.access_token_ttl_minutes <= 0:
            raise ValueError("access_token_ttl_minutes must be positive")
        if self.max_sync_records <= 0:
            raise ValueError("max_sync_records must be positive")
        if not self.public_base_url.startswith(("http://", "https://")):
            raise ValueError("public_base_url must start with http:// or https://")
        self.public_base_url = self.public_base_url.rstrip("/")
        for name in (
            "gateway_stale_s",
            "reopen_window_s",
            "flap_window_s",
            "flap_threshold",
            "webhook_max_attempts",
            "max_attachment_bytes",
            "sync_rate_per_s",
            "sync_burst",
            "max_import_bytes",
            "max_import_rows",
            "max_body_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("operations_interval_s", "verify_hold_s", "webhook_retry_s", "downlink_max_wait_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.escalation_webhook_url is not None and not self.escalation_webhook_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("escalation_webhook_url must start with http:// or https://")
        if self.maintenance_interval_s < 0:
            raise ValueError("maintenance_interval_s must be 0 (off) or positive")
        if not 0 < self.sample_retention_days <= self.rollup_retention_days:
            raise ValueError("sample_retention_days must be positive and at most rollup_retention_days")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: set both to serve HTTPS, or neither")
        return self

    @property
    def max_sync_body_bytes(self) -> int:
        """The largest /gateway/sync body: a batch of max_sync_records records of the largest size."""
        return self.max_sync_records * SYNC_RECORD_BYTES

    @property
    def max_upload_body_bytes(self) -> int:
        """The largest body of a route that takes a file: the largest import or photo, in its form."""
        return max(self.max_import_bytes, self.max_attachment_bytes) + FORM_OVERHEAD_BYTES

    def fault_policy(self) -> "FaultPolicy":
        """How alarms become work orders, from these settings."""
        from cloud.workorders import FaultPolicy

        return FaultPolicy(
            verify_hold=timedelta(seconds=self.verify_hold_s),
            reopen_window=timedelta(seconds=self.reopen_window_s),
            flap_window=timedelta(seconds=self.flap_window_s),
            flap_threshold=self.flap_threshold,
            gateway_stale=timedelta(seconds=self.gateway_stale_s),
        )

    def webhook_policy(self) -> "WebhookPolicy":
        """Where and how escalations are POSTed, from these settings."""
        from cloud.notify import WebhookPolicy

        return WebhookPolicy(
            url=self.escalation_webhook_url,
            max_attempts=self.webhook_max_attempts,
            retry_base=timedelta(seconds=self.webhook_retry_s),
        )


if TYPE_CHECKING:
    from cloud.notify import WebhookPolicy
    from cloud.workorders import FaultPolicy
