"""The gateway's configuration, read from the environment and `.env` (contract names and defaults)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> list[Network]:
    """`GATEWAY_CONTROL_ALLOWED_CIDRS`: a comma list of addresses or CIDR blocks (raises ValueError on a bad one)."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


class GatewaySettings(BaseSettings):
    """Every variable the Telegram Gateway reads; the gateway has no database settings at all."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    gateway_port: int = Field(4006, validation_alias="GATEWAY_PORT")
    gateway_host: str = Field("127.0.0.1", validation_alias="GATEWAY_HOST")
    gateway_data_dir: Path = Field(Path("./var/gateway"), validation_alias="GATEWAY_DATA_DIR")

    telegram_api_id: int | None = Field(None, validation_alias="TELEGRAM_API_ID")
    telegram_api_hash: str | None = Field(None, validation_alias="TELEGRAM_API_HASH")
    telegram_phone_number: str | None = Field(None, validation_alias="TELEGRAM_PHONE_NUMBER")
    telegram_ingestion_bot_token: str | None = Field(None, validation_alias="TELEGRAM_INGESTION_BOT_TOKEN")
    telegram_bot_api_url: str = Field("https://api.telegram.org", validation_alias="TELEGRAM_BOT_API_URL")
    telegram_source_channel_ids: str = Field("", validation_alias="TELEGRAM_SOURCE_CHANNEL_IDS")
    telegram_destination_channel_id: str | None = Field(None, validation_alias="TELEGRAM_DESTINATION_CHANNEL_ID")
    telegram_session_dir: Path | None = Field(None, validation_alias="TELEGRAM_SESSION_DIR")
    telegram_session_name: str = Field("telegram-gateway", validation_alias="TELEGRAM_SESSION_NAME")
    telegram_replay_file: Path | None = Field(None, validation_alias="TELEGRAM_REPLAY_FILE")
    replay_interval_ms: int = Field(2000, ge=0, validation_alias="REPLAY_INTERVAL_MS")

    api_endpoint: str = Field("http://localhost:4005/ingest", validation_alias="API_ENDPOINT")
    gateway_secret_token: str | None = Field(
        None, validation_alias=AliasChoices("GATEWAY_SECRET_TOKEN", "API_SECRET_TOKEN")
    )
    api_timeout_ms: int = Field(10000, gt=0, validation_alias="API_TIMEOUT_MS")
    max_retries: int = Field(3, ge=0, validation_alias="MAX_RETRIES")
    base_retry_delay_ms: int = Field(5000, ge=0, validation_alias="BASE_RETRY_DELAY_MS")
    failure_queue_path: Path | None = Field(None, validation_alias="FAILURE_QUEUE_PATH")
    failure_queue_max_bytes: int = Field(104857600, gt=0, validation_alias="FAILURE_QUEUE_MAX_BYTES")
    failure_queue_warn_bytes: int = Field(52428800, gt=0, validation_alias="FAILURE_QUEUE_WARN_BYTES")
    # /health is `degraded` past either threshold: the API is not keeping up (or is away) for that long
    gateway_health_max_pending: int = Field(1000, gt=0, validation_alias="GATEWAY_HEALTH_MAX_PENDING")
    gateway_health_max_pending_age_s: float = Field(120.0, gt=0, validation_alias="GATEWAY_HEALTH_MAX_PENDING_AGE_S")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    # Addresses besides loopback that may call the control surface (the API's container network, say).
    gateway_control_allowed_cidrs: str = Field("", validation_alias="GATEWAY_CONTROL_ALLOWED_CIDRS")

    @field_validator("gateway_control_allowed_cidrs")
    @classmethod
    def _valid_cidrs(cls, value: str) -> str:
        parse_networks(value)  # a ValueError names the bad entry
        return value

    @field_validator(
        "telegram_api_hash",
        "telegram_phone_number",
        "telegram_ingestion_bot_token",
        "telegram_destination_channel_id",
        "gateway_secret_token",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("telegram_api_id", "telegram_session_dir", "telegram_replay_file", "failure_queue_path",
                     mode="before")
    @classmethod
    def _blank_path_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def session_dir(self) -> Path:
        return self.telegram_session_dir or self.gateway_data_dir / ".session"

    @property
    def session_file(self) -> Path:
        return self.session_dir / f"{self.telegram_session_name}.session"

    @property
    def queue_path(self) -> Path:
        return self.failure_queue_path or self.gateway_data_dir / "failure-queue.jsonl"

    @property
    def source_channel_ids(self) -> frozenset[str]:
        from tradingsystem.gateway.types import normalize_channel_id

        return frozenset(
            normalize_channel_id(part) for part in self.telegram_source_channel_ids.split(",") if part.strip()
        )

    @property
    def user_configured(self) -> bool:
        return bool(self.telegram_api_id and self.telegram_api_hash)

    @property
    def bot_configured(self) -> bool:
        return bool(self.telegram_ingestion_bot_token)

    @property
    def tokens(self) -> list[str]:
        """The gateway sends the first token of a comma list (the API accepts any of its list)."""
        if not self.gateway_secret_token:
            return []
        return [t.strip() for t in self.gateway_secret_token.split(",") if t.strip()]
