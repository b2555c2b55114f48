"""The gateway's authenticated control surface: on-demand history sync, bot and channel status, registry reload."""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING, Any, Literal

import structlog
from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Scope

from tradingsystem.core.errors import Forbidden, Unauthorized
from tradingsystem.core.http import FastJSON
from tradingsystem.core.timeutil import iso_ms, iso_ms_or_none
from tradingsystem.gateway.settings import Network, parse_networks

__all__ = ["ControlGuard", "control_router", "parse_networks"]

if TYPE_CHECKING:
    from tradingsystem.gateway.service import GatewayService

log = structlog.get_logger(__name__)
MAX_SYNC_LIMIT = 500



class ControlGuard:
    """Who may call the control surface: the shared gateway token, from loopback or an allowed network."""

    def __init__(self, tokens: list[str], allowed: list[Network]) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._allowed = allowed

    def _valid(self, token: str | None) -> bool:
        candidate = (token or "").encode()
        ok = False
        for expected in self._tokens:  # every token is compared, so timing does not say which one matched
            ok |= hmac.compare_digest(candidate, expected)
        return bool(token) and ok

    def exempt(self, scope: Scope) -> bool:
        """For the rate limiter: a control call that carries a valid token is not throttled."""
        if not scope["path"].startswith("/control/"):
            return False
        for name, value in scope["headers"]:
            if name == b"x-gateway-token":
                return self._valid(value.decode("latin-1"))
        return False

    def check(self, request: Request, token: str | None) -> None:
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is None or not (address.is_loopback or any(address in net for net in self._allowed)):
            log.warning("Control call refused: address not allowed", client=host)
            raise Forbidden("The control surface accepts loopback clients and GATEWAY_CONTROL_ALLOWED_CIDRS only")
        if not self._valid(token):
            log.warning("Control call refused: invalid or missing gateway token", client=host)
            raise Unauthorized("Invalid or missing authentication token")


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(MAX_SYNC_LIMIT, ge=1, le=MAX_SYNC_LIMIT, description="Messages per channel, at most 500")


class ChannelSynced(BaseModel):
    channelId: str
    label: str
    messagesSynced: int = Field(description="Messages read from the channel's history")
    messagesSaved: int = Field(description="Payloads written to the journal, each delivered to the API")
    error: str | None = None


class SyncData(BaseModel):
    totalMessagesSynced: int
    totalMessagesSaved: int
    channelsSynced: list[ChannelSynced]
    timestamp: str


class SyncDone(BaseModel):
    success: Literal[True]
    data: SyncData


class SyncRefused(BaseModel):
    """No source that can read history: `reason` says why, `message` says what to do."""

    success: Literal[False]
    reason: Literal["bot_only", "not_configured", "user_not_connected", "no_channels"]
    state: str
    message: str


class BotStatus(BaseModel):
    id: str
    username: str | None
    type: str
    status: str
    lastSeen: str | None


class ChannelConfig(BaseModel):
    configured: list[str] = Field(description="TELEGRAM_SOURCE_CHANNEL_IDS")
    registry: list[str] = Field(description="Active sources of the API's registry, as last fetched")
    destination: str | None = Field(description="TELEGRAM_DESTINATION_CHANNEL_ID")


class ControlStatus(BaseModel):
    telegram: str
    sources: dict[str, str]
    bots: list[BotStatus]
    channels: ChannelConfig
    timestamp: str


class ReloadDone(BaseModel):
    success: bool
    channels: list[str]


REFUSALS: dict[str, str] = {
    "bot_only": "Only a bot is configured, and bots cannot read channel history (the Bot API delivers new posts "
                "only). Configure the user account (TELEGRAM_API_ID, TELEGRAM_API_HASH) and run "
                "`tradingsystem gateway login` to sync history.",
    "not_configured": "No Telegram user account is configured (TELEGRAM_API_ID, TELEGRAM_API_HASH): nothing can "
                      "read channel history.",
    "user_not_connected": "The Telegram user account is not connected; history can be read once it is "
                          "(run `tradingsystem gateway login` if it asks for a login).",
    "no_channels": "No channel is monitored explicitly (TELEGRAM_SOURCE_CHANNEL_IDS or the API's registry), so "
                   "there is no channel whose history to read.",
}


def bot_status(service: GatewayService) -> list[BotStatus]:
    bots: list[BotStatus] = []
    for source in service.sources:
        if source.name != "bot":
            continue
        username = getattr(source, "username", None)
        bots.append(BotStatus(
            id=f"bot-{getattr(source, 'bot_id', None) or 'ingestion'}",
            username=username,
            type="ingestion",
            status=str(source.state),
            lastSeen=iso_ms_or_none(getattr(source, "last_seen", None)),
        ))
    return bots


def control_router(service: GatewayService, guard: ControlGuard) -> APIRouter:
    """The routes; each one checks the caller first."""
    router = APIRouter(prefix="/control", tags=["control"])

    @router.post("/sync", summary="Read the monitored channels' history into the journal now",
                 response_model=SyncDone,
                 responses={409: {"model": SyncRefused}, 503: {"model": SyncRefused},
                            401: {"description": "Invalid or missing token"},
                            403: {"description": "Address not allowed"}})
    async def sync(request: Request, body: SyncRequest | None = None,
                   x_gateway_token: str | None = Header(None)) -> FastJSON:
        guard.check(request, x_gateway_token)
        limit = body.limit if body is not None else MAX_SYNC_LIMIT
        from tradingsystem.gateway.sources.user import SyncUnavailable, UserSource

        user = next((s for s in service.sources if isinstance(s, UserSource)), None)
        if user is None:
            reason = "bot_only" if any(s.name == "bot" for s in service.sources) else "not_configured"
            return _refused(409, reason, service.telegram_state())
        if not service.registry.channel_ids():
            return _refused(409, "no_channels", str(user.state))
        try:
            results = await user.sync_history(limit)
        except SyncUnavailable as exc:
            return _refused(503, "user_not_connected", str(exc.state))
        channels = [ChannelSynced(channelId=r.channel_id, label=r.title or r.channel_id,
                                  messagesSynced=r.messages_read, messagesSaved=r.payloads_journaled, error=r.error)
                    for r in results]
        data = SyncData(totalMessagesSynced=sum(c.messagesSynced for c in channels),
                        totalMessagesSaved=sum(c.messagesSaved for c in channels),
                        channelsSynced=channels, timestamp=iso_ms())
        log.info("History sync done", channels=len(channels), messages=data.totalMessagesSynced,
                 journaled=data.totalMessagesSaved)
        return FastJSON(SyncDone(success=True, data=data).model_dump())

    @router.get("/status", summary="Sources, bots (never a token) and channel configuration",
                response_model=ControlStatus)
    async def status(request: Request, x_gateway_token: str | None = Header(None)) -> FastJSON:
        guard.check(request, x_gateway_token)
        settings = service.settings
        body = ControlStatus(
            telegram=service.telegram_state(),
            sources=service.source_states(),
            bots=bot_status(service),
            channels=ChannelConfig(
                configured=sorted(settings.source_channel_ids),
                registry=sorted(service.registry.registry_ids()),
                destination=settings.telegram_destination_channel_id,
            ),
            timestamp=iso_ms(),
        )
        return FastJSON(body.model_dump())

    @router.post("/reload-channels", summary="Fetch the API's channel registry now", response_model=ReloadDone)
    async def reload_channels(request: Request, x_gateway_token: str | None = Header(None)) -> FastJSON:
        guard.check(request, x_gateway_token)
        refreshed = await service.registry.refresh()
        return FastJSON(ReloadDone(success=refreshed, channels=sorted(service.registry.channel_ids())).model_dump())

    return router


def _refused(status: int, reason: str, state: str) -> FastJSON:
    body: dict[str, Any] = {"success": False, "reason": reason, "state": state, "message": REFUSALS[reason]}
    log.info("History sync refused", reason=reason, state=state)
    return FastJSON(body, status_code=status)
