"""The gateway's Telegram sources (user account, bot, replay) and `build_sources` that picks the configured ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradingsystem.gateway.types import CursorReader, Monitored, Source

if TYPE_CHECKING:
    from tradingsystem.gateway.settings import GatewaySettings


def build_sources(settings: GatewaySettings, monitored: Monitored, cursors: CursorReader) -> list[Source]:
    """One source per configured input, each independent: user (API id+hash), bot (token), replay (file).

    The Telegram libraries are imported here, not at module level, so that the export reader and the
    command line do not pay for them.
    """
    sources: list[Source] = []
    if settings.user_configured:
        from tradingsystem.gateway.sessions import SessionStore
        from tradingsystem.gateway.sources.user import UserSource, telethon_client_factory

        assert settings.telegram_api_id is not None and settings.telegram_api_hash is not None
        sources.append(
            UserSource(
                SessionStore.from_settings(settings),
                telethon_client_factory(settings.telegram_api_id, settings.telegram_api_hash),
                monitored,
                cursors,
            )
        )
    if settings.bot_configured:
        from tradingsystem.gateway.sources.bot import BotSource

        assert settings.telegram_ingestion_bot_token is not None
        sources.append(
            BotSource(
                settings.telegram_ingestion_bot_token,
                monitored,
                api_url=settings.telegram_bot_api_url,
                destination_channel_id=settings.telegram_destination_channel_id,
            )
        )
    if settings.telegram_replay_file is not None:
        from tradingsystem.gateway.sources.replay import ReplaySource

        sources.append(ReplaySource(settings.telegram_replay_file, settings.replay_interval_ms))
    return sources
