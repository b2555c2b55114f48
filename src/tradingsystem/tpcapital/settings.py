"""TP Capital's signal lifecycle settings: how long an unfinished trade stays open, and the session's zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tradingsystem.tpcapital.repository import StateRules


class LifecycleSettings(BaseSettings):
    """`SIGNAL_EXPIRY_DAYS` for swing and position trades; day trades and scalps end with their session's day."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    signal_expiry_days: int = Field(30, ge=1, le=3650, validation_alias="SIGNAL_EXPIRY_DAYS")
    signal_session_timezone: str = Field("America/Sao_Paulo", validation_alias="SIGNAL_SESSION_TIMEZONE")
    performance_metrics_interval_s: float = Field(60.0, gt=0, validation_alias="PERFORMANCE_METRICS_INTERVAL_S")

    @field_validator("signal_session_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def rules(self) -> StateRules:
        return StateRules(horizon_days=self.signal_expiry_days, timezone=self.signal_session_timezone)
