"""Settings of the cloud."""

import pytest
from pydantic import ValidationError

from cloud.core.config import Settings
from cloud.core.db import create_db_engine, normalize_url
from cloud.errors import UnsupportedDatabase


def test_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("CLASSOPS_CLOUD_DATABASE_URL", raising=False)
    assert Settings().database_url == "sqlite:///./var/cloud.db"

    monkeypatch.setenv("CLASSOPS_CLOUD_PORT", "8123")
    monkeypatch.setenv("CLASSOPS_CLOUD_ENVIRONMENT", "production")
    settings = Settings()
    assert (settings.port, settings.environment, settings.host) == (8123, "production", "127.0.0.1")


@pytest.mark.parametrize("password", ["postgres", "changethis", ""])
def test_production_refuses_a_default_database_password(password):
    url = f"postgresql://classops:{password}@db/classops"

    with pytest.raises(ValidationError, match="weak password"):
        Settings(environment="production", database_url=url)
    assert Settings(environment="development", database_url=url).database_url == url


def test_production_accepts_a_strong_or_absent_password():
    Settings(environment="production", database_url="postgresql://classops:Xq7!long-secret@db/classops")
    Settings(environment="production", database_url="postgresql://classops@db/classops")


def test_postgres_urls_get_psycopg3_and_others_are_refused():
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(UnsupportedDatabase):
        normalize_url("mysql://u@h/db")


def test_sqlite_file_directory_is_created(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'cloud.db'}")
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()
    assert (tmp_path / "a" / "b" / "cloud.db").exists()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("public_base_url", "ops.example.edu", "public_base_url"),
        ("gateway_stale_s", 0, "gateway_stale_s"),
        ("sync_rate_per_s", -1, "sync_rate_per_s"),
        ("maintenance_interval_s", -5, "maintenance_interval_s"),
        ("sample_retention_days", 1000, "sample_retention_days"),
    ],
)
def test_settings_refuse_unusable_values(field, value, words):
    with pytest.raises(ValidationError, match=words):
        Settings(**{field: value})


def test_public_base_url_loses_its_trailing_slash():
    assert Settings(public_base_url="https://ops.example.edu/").public_base_url == "https://ops.example.edu"
