"""Settings shared by the database-backed services: database location and the HTTP edge."""

from __future__ import annotations

import sys
from urllib.parse import quote

import structlog
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = structlog.get_logger(__name__)


class ConfigError(Exception):
    """A required setting is missing; the message is the operator-facing `FATAL: …` line."""


class DatabaseSettings(BaseSettings):
    """`DATABASE_URL` wins; otherwise the `TIMESCALEDB_*` variables build the URL."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    timescaledb_host: str | None = Field(None, validation_alias="TIMESCALEDB_HOST")
    timescaledb_port: int = Field(5433, validation_alias="TIMESCALEDB_PORT")
    timescaledb_user: str | None = Field(None, validation_alias="TIMESCALEDB_USER")
    timescaledb_password: str | None = Field(None, validation_alias="TIMESCALEDB_PASSWORD")
    timescaledb_database: str | None = Field(None, validation_alias="TIMESCALEDB_DATABASE")
    db_pool_min: int = Field(1, ge=0, validation_alias="DB_POOL_MIN")
    db_pool_max: int = Field(10, ge=1, validation_alias="DB_POOL_MAX")

    @field_validator("database_url", "timescaledb_host", "timescaledb_user", "timescaledb_password",
                     "timescaledb_database", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def configured(self) -> bool:
        """True when the operator pointed the services at a database of their own."""
        return bool(self.database_url or self.timescaledb_host)

    def missing(self) -> list[str]:
        if self.database_url:
            return []
        required = {
            "TIMESCALEDB_HOST": self.timescaledb_host,
            "TIMESCALEDB_USER": self.timescaledb_user,
            "TIMESCALEDB_PASSWORD": self.timescaledb_password,
            "TIMESCALEDB_DATABASE": self.timescaledb_database,
        }
        return [name for name, value in required.items() if not value]

    def dsn(self) -> str:
        """The connection URL; raises ConfigError naming the first missing variable."""
        if self.database_url:
            if not self.database_url.startswith(("postgresql://", "postgres://")):
                raise ConfigError("FATAL: DATABASE_URL must be a postgresql:// URL")
            return self.database_url
        missing = self.missing()
        if missing:
            raise ConfigError(f"FATAL: {missing[0]} is required")
        user = quote(self.timescaledb_user or "", safe="")
        password = quote(self.timescaledb_password or "", safe="")
        return (f"postgresql://{user}:{password}@{self.timescaledb_host}:{self.timescaledb_port}/"
                f"{self.timescaledb_database}")


class HttpSettings(BaseSettings):
    """The HTTP edge every service shares: CORS, rate limit, body limit."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    cors_origin: str = Field("", validation_alias="CORS_ORIGIN")
    rate_limit_max: int = Field(120, ge=1, validation_alias="RATE_LIMIT_MAX")
    rate_limit_window_ms: int = Field(60000, ge=1, validation_alias="RATE_LIMIT_WINDOW_MS")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    host: str = Field("127.0.0.1", validation_alias="HOST")

    def origins(self, own_port: int) -> list[str]:
        configured = [o.strip() for o in self.cors_origin.split(",") if o.strip()]
        if configured:
            return configured
        return ["http://localhost:3103", f"http://localhost:{own_port}", f"http://127.0.0.1:{own_port}"]


def fatal(message: str) -> None:
    """Log an operator-facing fatal configuration error and exit 1."""
    log.critical(message)
    print(message, file=sys.stderr)
    raise SystemExit(1)
