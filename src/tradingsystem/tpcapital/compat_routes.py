"""Routes the existing dashboard and older tools call under the old API's paths and shapes (see docs/api.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from tradingsystem.core.errors import Conflict, ServiceError, ValidationFailed
from tradingsystem.core.http import FastJSON, LeanRoute
from tradingsystem.core.openapi import read_json
from tradingsystem.core.timeutil import iso_ms
from tradingsystem.tpcapital.gateway_link import (
    BOT_TOKENS_ON_GATEWAY,
    GatewayLink,
    GatewayRefused,
    GatewayUnreachable,
    sync_answer,
    unreachable_message,
)
from tradingsystem.tpcapital.models import parse_iso
from tradingsystem.tpcapital.routes import Channel, _svc, require_api_key
from tradingsystem.tpcapital.service import TpCapitalService

log = structlog.get_logger(__name__)
router = APIRouter(route_class=LeanRoute)
ChannelIdValue = Annotated[str | int, Field(description="A channel id; numbers are accepted as the old API did")]


class GatewayDown(ServiceError):
    status = 503


def _link(request: Request) -> GatewayLink:
    link: GatewayLink = request.app.state.gateway
    return link


# Models of the answers


class OkId(BaseModel):
    status: Literal["ok"]
    id: str


class Ok(BaseModel):
    status: Literal["ok"]


class ChannelList(BaseModel):
    data: list[Channel]
    timestamp: str


class ConfiguredChannel(BaseModel):
    channelId: str
    type: Literal["source", "destination"]
    origin: Literal["env", "registry"] = Field(description="env: the gateway's settings; registry: this API's")
    label: str | None = None


class ConfiguredChannels(BaseModel):
    data: list[ConfiguredChannel]
    gateway: Literal["reachable", "unreachable"]
    timestamp: str


class Reloaded(BaseModel):
    success: bool
    channels: list[str]


class Bot(BaseModel):
    id: str
    username: str | None
    type: str
    bot_type: str
    status: str
    last_seen: str | None
    lastSeen: str | None


class BotList(BaseModel):
    data: list[Bot]
    timestamp: str


class SyncChannel(BaseModel):
    channelId: str
    label: str
    messagesSynced: int
    messagesSaved: int
    error: str | None = None


class SyncData(BaseModel):
    totalMessagesSynced: int
    totalMessagesSaved: int
    messagesSynced: int = Field(description="Same as totalMessagesSynced, for older dashboards")
    channelsSynced: list[SyncChannel]
    timestamp: str


class SyncDone(BaseModel):
    success: Literal[True]
    message: str
    data: SyncData


class SyncFailed(BaseModel):
    success: Literal[False]
    message: str
    reason: str | None = None
    state: str | None = None
    error: str | None = None


class ErrorBody(BaseModel):
    error: str


class DeleteBySignalStamp(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ingestedAt: str | int = Field(description="The signal's `ingested_at` as /signals gave it (or epoch ms)")


class OldChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    label: str = Field(min_length=1, max_length=200)
    channel_id: ChannelIdValue
    channel_type: Literal["source", "destination"] = "source"
    description: str = Field("", max_length=2000)
    status: Literal["active", "inactive"] = "active"


class OldChannelUpdate(BaseModel):
    """The old registry update; `signal_count` and `last_signal` are derived from signals, so they are ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    label: str | None = Field(None, min_length=1, max_length=200)
    channel_id: ChannelIdValue | None = None
    channel_type: Literal["source", "destination"] | None = None
    description: str | None = Field(None, max_length=2000)
    status: Literal["active", "inactive"] | None = None
    signal_count: int | None = None
    last_signal: str | None = None


def _channel_id(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.lstrip("-").isdigit() or len(text) > 21:
        raise ValidationFailed(["channel_id must be a string of an integer"])
    return text


GATEWAY_ERRORS: dict[int | str, dict[str, Any]] = {503: {"model": ErrorBody, "description": "Gateway unreachable"}}
KEY_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


# Signals


@router.delete("/signals", tags=["compat"], summary="Soft-delete the signal with this `ingested_at` (API key)",
               response_model=Ok, responses={**KEY_ERRORS, 400: {"description": "No or bad ingestedAt"},
                                             404: {"model": ErrorBody}},
               openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                   "schema": DeleteBySignalStamp.model_json_schema()}}}})
async def delete_signal_by_stamp(request: Request) -> FastJSON:
    require_api_key(request)
    body = await read_json(request)
    stamp = body.get("ingestedAt") if isinstance(body, dict) else None
    if stamp is None or stamp == "":
        raise ValidationFailed(["ingestedAt is required"])
    since = until = None
    if isinstance(stamp, int) and not isinstance(stamp, bool) and stamp > 0:
        try:
            since = datetime.fromtimestamp(stamp / 1000, tz=UTC)
            until = since + timedelta(microseconds=999)
        except (OverflowError, OSError, ValueError):
            since = None
    elif isinstance(stamp, str) and (moment := parse_iso(stamp)) is not None:
        try:
            since = until = moment.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00:00-05:00 is past the last representable moment
            since = None
    if since is None or until is None:
        raise ValidationFailed(["ingestedAt must be an ISO 8601 datetime or epoch milliseconds"])
    await _svc(request).delete_signal_stamped(since, until)
    log.info("Signal deleted by its ingest stamp", ingested_at=str(stamp))
    return FastJSON({"status": "ok"})


# Channels as configured


@router.get("/config/channels", tags=["compat"], summary="Configured source and destination channels",
            response_model=ConfiguredChannels)
async def config_channels(request: Request) -> FastJSON:
    service = _svc(request)
    registry = await service.registry_list("active", None)
    data: list[dict[str, Any]] = []
    gateway = "reachable"
    try:
        status = await _link(request).status()
    except (GatewayUnreachable, GatewayRefused):
        gateway = "unreachable"  # the registry below is still this API's own, real data
    else:
        channels = status.get("channels", {})
        data += [{"channelId": c, "type": "source", "origin": "env", "label": None}
                 for c in channels.get("configured", [])]
        if channels.get("destination"):
            data.append({"channelId": channels["destination"], "type": "destination", "origin": "env", "label": None})
    data += [{"channelId": c["channel_id"], "type": c["channel_type"], "origin": "registry", "label": c["label"]}
             for c in registry]
    return FastJSON({"data": data, "gateway": gateway, "timestamp": iso_ms()})


@router.post("/reload-channels", tags=["compat"], summary="Make the gateway fetch the channel registry now (API key)",
             response_model=Reloaded, responses={**KEY_ERRORS, **GATEWAY_ERRORS})
async def reload_channels(request: Request) -> FastJSON:
    require_api_key(request)
    link = _link(request)
    try:
        body = await link.reload_channels()
    except (GatewayUnreachable, GatewayRefused) as exc:
        raise GatewayDown(unreachable_message(link.base_url)) from exc
    return FastJSON({"success": bool(body.get("success")), "channels": list(body.get("channels", []))})


# History sync ("Checar Mensagens")


@router.post("/sync-messages", tags=["compat"], summary="Read recent history of the monitored channels (API key)",
             response_model=SyncDone,
             responses={**KEY_ERRORS, 409: {"model": SyncFailed}, 502: {"model": SyncFailed},
                        503: {"model": SyncFailed}})
async def sync_messages(request: Request) -> FastJSON:
    require_api_key(request)
    service: TpCapitalService = _svc(request)
    link = _link(request)
    log.info("History sync requested")
    try:
        code, body = await link.sync()
    except GatewayUnreachable as exc:
        return FastJSON({"success": False, "message": unreachable_message(link.base_url), "error": str(exc)},
                        status_code=503)
    except GatewayRefused as exc:
        return FastJSON({"success": False, "message": "O Telegram Gateway recusou a chamada de controle "
                         "(confira GATEWAY_SECRET_TOKEN e GATEWAY_CONTROL_ALLOWED_CIDRS).", "error": exc.detail},
                        status_code=502)
    status, answer = sync_answer(code, body, await service.registry_labels())
    return FastJSON(answer, status_code=status)


# Bots: listed from the gateway, never stored here


@router.get("/telegram/bots", tags=["compat"], summary="The bots the gateway runs (never a token)",
            response_model=BotList, responses=GATEWAY_ERRORS)
async def telegram_bots(request: Request) -> FastJSON:
    link = _link(request)
    try:
        status = await link.status()
    except (GatewayUnreachable, GatewayRefused) as exc:
        raise GatewayDown(unreachable_message(link.base_url)) from exc
    bots = [{"id": b["id"], "username": b.get("username"), "type": b.get("type", "ingestion"),
             "bot_type": b.get("type", "ingestion"), "status": b.get("status", "unknown"),
             "last_seen": b.get("lastSeen"), "lastSeen": b.get("lastSeen")}
            for b in status.get("bots", [])]
    return FastJSON({"data": bots, "timestamp": iso_ms()})


def _refuse_bot_write(request: Request) -> None:
    require_api_key(request)
    _svc(request).metrics.validation_failures.labels("bot_token_refused").inc()
    log.info("Refused a bot write: bot tokens live on the gateway", path=request.url.path)
    raise Conflict(BOT_TOKENS_ON_GATEWAY)


BOT_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Bot tokens are configured on the gateway"}, **KEY_ERRORS}
REFUSED_SUMMARY = "Refused: bots and their tokens are configured on the gateway"


@router.post("/telegram/bots", tags=["compat"], status_code=409, summary=REFUSED_SUMMARY, response_model=ErrorBody,
             responses=BOT_REFUSED)
async def create_bot(request: Request) -> None:
    _refuse_bot_write(request)


@router.put("/telegram/bots/{bot_id}", tags=["compat"], status_code=409, summary=REFUSED_SUMMARY,
            response_model=ErrorBody, responses=BOT_REFUSED)
async def update_bot(request: Request, bot_id: str) -> None:
    _refuse_bot_write(request)


@router.delete("/telegram/bots/{bot_id}", tags=["compat"], status_code=409, summary=REFUSED_SUMMARY,
               response_model=ErrorBody, responses=BOT_REFUSED)
async def delete_bot(request: Request, bot_id: str) -> None:
    _refuse_bot_write(request)


# The channel registry under its old path


@router.get("/telegram/channels", tags=["compat"], summary="Registered channels (old path)",
            response_model=ChannelList)
async def old_registry_list(request: Request) -> FastJSON:
    return FastJSON({"data": await _svc(request).registry_list(None, None), "timestamp": iso_ms()})


@router.post("/telegram/channels", tags=["compat"], status_code=201, summary="Register a channel (old path, API key)",
             response_model=OkId, responses={**KEY_ERRORS, 409: {"model": ErrorBody}},
             dependencies=[Depends(require_api_key)])
async def old_registry_create(request: Request, body: OldChannelCreate) -> FastJSON:
    values = {**body.model_dump(), "channel_id": _channel_id(body.channel_id)}
    created = await _svc(request).registry_create(values)
    return FastJSON({"status": "ok", "id": created["id"]}, status_code=201)


@router.put("/telegram/channels/{channel_pk}", tags=["compat"], summary="Update a channel (old path, API key)",
            response_model=OkId, responses={**KEY_ERRORS, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
            dependencies=[Depends(require_api_key)])
async def old_registry_update(request: Request, channel_pk: str, body: OldChannelUpdate) -> FastJSON:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True, exclude={"signal_count", "last_signal"}).items()
               if v is not None}
    if "channel_id" in changes:
        changes["channel_id"] = _channel_id(changes["channel_id"])
    updated = await _svc(request).registry_update(channel_pk, changes)
    return FastJSON({"status": "ok", "id": updated["id"]})


@router.delete("/telegram/channels/{channel_pk}", tags=["compat"], summary="Remove a channel (old path, API key)",
               response_model=OkId, responses={**KEY_ERRORS, 404: {"model": ErrorBody}})
async def old_registry_delete(request: Request, channel_pk: str) -> FastJSON:
    require_api_key(request)
    await _svc(request).registry_delete(channel_pk)
    return FastJSON({"status": "ok", "id": channel_pk})
