"""TP Capital HTTP routes: authenticate, validate the request, call the service, shape the answer."""

from __future__ import annotations

import hmac
import ipaddress
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tradingsystem.core.errors import Forbidden, Unauthorized, ValidationFailed
from tradingsystem.core.http import FastJSON, LeanRoute
from tradingsystem.core.logging import recent_records
from tradingsystem.core.openapi import json_body, read_json, responses
from tradingsystem.tpcapital.models import (
    ChannelPerformanceList,
    ChannelSummaries,
    EventName,
    IngestBatch,
    IngestBatchResult,
    IngestPayload,
    IngestResult,
    LogRecords,
    OneSignal,
    SignalEventPage,
    SignalPage,
    SourceFiguresList,
    Status,
)
from tradingsystem.tpcapital.parser import SIGNAL_TYPES
from tradingsystem.tpcapital.repository import EventFilter, SignalFilter
from tradingsystem.tpcapital.service import TpCapitalService

router = APIRouter(route_class=LeanRoute)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _svc(request: Request) -> TpCapitalService:
    service: TpCapitalService = request.app.state.tpcapital
    return service


def require_api_key(request: Request) -> None:
    """Mutations need `X-API-Key` when TP_CAPITAL_API_KEY is set, and a loopback client when it is not."""
    expected: str | None = request.app.state.api_key
    if expected:
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("Invalid or missing API key")
        return
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Forbidden("This endpoint accepts loopback clients only while TP_CAPITAL_API_KEY is unset")


def parse_when(value: str | None, name: str, end: bool = False) -> datetime | None:
    """`from`/`to`: an ISO date, an ISO datetime, or epoch milliseconds. A date `to` covers that whole day."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        if _DATE_RE.match(text):
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day + timedelta(days=1) - timedelta(microseconds=1) if end else day
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise ValidationFailed([f"{name} must be an ISO date, an ISO datetime or epoch milliseconds"]) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# The channel registry's answers (the gateway's view uses them too)


class Channel(BaseModel):
    id: str
    label: str
    channel_id: str
    channel_type: Literal["source", "destination"]
    description: str
    status: Literal["active", "inactive"]
    created_at: str
    updated_at: str


class ChannelAnswer(BaseModel):
    data: Channel


class ChannelWritten(BaseModel):
    """A registry write: `data` (this API) and `channel` (the old API) hold the same channel."""

    success: Literal[True]
    data: Channel
    channel: Channel


class ChannelUpdated(BaseModel):
    success: Literal[True]
    data: Channel


class ChannelRemoved(BaseModel):
    success: Literal[True]
    id: str


class ChannelListAnswer(BaseModel):
    data: list[Channel]


# Ingest (gateway token)


@router.post("/ingest", tags=["ingest"], summary="Store one message from the gateway", response_model=None,
             openapi_extra=json_body(IngestPayload), responses=responses(IngestResult, 200, 401, 503))
async def ingest(request: Request, x_gateway_token: Annotated[str | None, Header()] = None) -> FastJSON:
    service = _svc(request)
    service.authenticate(x_gateway_token)
    return FastJSON(await service.ingest_one(await read_json(request)))


@router.post("/ingest/batch", tags=["ingest"], summary="Store up to 1000 messages in one round trip",
             response_model=None, openapi_extra=json_body(IngestBatch),
             responses=responses(IngestBatchResult, 200, 401, 503))
async def ingest_batch(request: Request, x_gateway_token: Annotated[str | None, Header()] = None) -> FastJSON:
    service = _svc(request)
    service.authenticate(x_gateway_token)
    return FastJSON(await service.ingest_batch(await read_json(request)))


@router.get("/gateway/channels", tags=["gateway"], summary="Active source channels, for the gateway",
            response_model=None, responses=responses(ChannelListAnswer, 200, 401, 503))
async def gateway_channels(request: Request,
                           x_gateway_token: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    service = _svc(request)
    service.authenticate(x_gateway_token)
    return {"data": await service.gateway_channels()}


# Signals


@router.get("/signals", tags=["signals"], summary="Signals, newest first", response_model=None,
            responses=responses(SignalPage, 200, 503))
async def list_signals(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    channel: Annotated[str | None, Query(max_length=64)] = None,
    type: Annotated[str | None, Query(max_length=32)] = None,
    asset: Annotated[str | None, Query(max_length=32)] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    include_deleted: bool = False,
    status: Status | None = None,
) -> dict[str, Any]:
    f = SignalFilter(channel=channel, signal_type=type, asset=asset, search=search,
                     since=parse_when(from_, "from"), until=parse_when(to, "to", end=True),
                     include_deleted=include_deleted, status=status)
    data, total = await _svc(request).list_signals(f, limit, offset)
    return {"data": data, "count": total}


@router.get("/signals/{signal_id}", tags=["signals"], summary="One signal", response_model=None,
            responses=responses(OneSignal, 200, 404, 503))
async def get_signal(request: Request, signal_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict[str, Any]:
    return {"data": await _svc(request).get_signal(signal_id)}


@router.delete("/signals/{signal_id}", tags=["signals"], status_code=204, summary="Soft-delete a signal (API key)",
               response_model=None, responses=responses(None, 204, 401, 403, 404, 503, description="Deleted"))
async def delete_signal(request: Request, signal_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
    require_api_key(request)
    await _svc(request).delete_signal(signal_id)
    return Response(status_code=204)


# Signal lifecycle: what became of each signal, and how each channel's signals fare


@router.get("/signals/{signal_id}/events", tags=["signals"], summary="A signal's updates, newest first",
            response_model=None, responses=responses(SignalEventPage, 200, 404, 503))
async def signal_events(
    request: Request,
    signal_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> FastJSON:
    data, total = await _svc(request).signal_events(signal_id, limit, offset)
    return FastJSON({"data": data, "count": total})


@router.get("/signal-events", tags=["signals"], summary="Updates, linked to a signal or not, newest first",
            response_model=None, responses=responses(SignalEventPage, 200, 503))
async def list_signal_events(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    linked: bool | None = None,
    channel: Annotated[str | None, Query(max_length=64)] = None,
    asset: Annotated[str | None, Query(max_length=32)] = None,
    event: EventName | None = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
) -> FastJSON:
    f = EventFilter(linked=linked, channel=channel, asset=asset, event=event, since=parse_when(from_, "from"),
                    until=parse_when(to, "to", end=True))
    data, total = await _svc(request).list_events(f, limit, offset)
    return FastJSON({"data": data, "count": total})


def signal_type_of(value: str | None) -> str | None:
    """A `signal_type` filter: one of the parser's signal types, in any case."""
    if value is None or value == "":
        return None
    for known in SIGNAL_TYPES:
        if value.strip().lower() == known.lower():
            return known
    raise ValidationFailed([f"signal_type must be one of: {', '.join(SIGNAL_TYPES)}"])


@router.get("/channels/performance", tags=["signals"], summary="How each channel's signals fared",
            response_model=None, responses=responses(ChannelPerformanceList, 200, 503))
async def channel_performance(
    request: Request,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    signal_type: Annotated[str | None, Query(max_length=32)] = None,
) -> FastJSON:
    data = await _svc(request).performance(parse_when(from_, "from"), parse_when(to, "to", end=True),
                                           signal_type_of(signal_type))
    return FastJSON({"data": data})


@router.get("/channels", tags=["signals"], summary="Channels that have signals", response_model=None,
            responses=responses(ChannelSummaries, 200, 503))
async def channels(request: Request) -> dict[str, Any]:
    return {"data": await _svc(request).channels()}


@router.get("/bots", tags=["ingestion"], summary="Ingestion figures per source", response_model=None,
            responses=responses(SourceFiguresList, 200, 503))
async def bots(request: Request) -> dict[str, Any]:
    return {"data": await _svc(request).bots()}


class ForwardedMessage(BaseModel):
    id: int
    channel_id: str
    message_id: int
    message_text: str
    original_timestamp: str
    photos: list[Any]
    received_at: str
    kind: Literal["new", "edit", "delete"]
    edit_date: str | None
    ts: int = Field(description="Epoch ms of original_timestamp (old API name)")
    source_channel_id: str = Field(description="Same as channel_id (old API name)")
    source_channel_name: str | None = Field(description="The channel's title as Telegram gave it")
    forwarded_at: str = Field(description="Same as received_at (old API name)")


class ForwardedList(BaseModel):
    data: list[ForwardedMessage]


@router.get("/forwarded-messages", tags=["ingestion"], summary="Raw messages, newest first",
            response_model=ForwardedList, responses=responses(ForwardedList, 200, 503))
async def forwarded_messages(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    channelId: Annotated[str | None, Query(max_length=64)] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    data = await _svc(request).forwarded(limit, channelId, parse_when(from_, "from"), parse_when(to, "to", True))
    return {"data": data}


@router.get("/logs", tags=["operations"], summary="This service's recent log records, newest first",
            response_model=None, responses=responses(LogRecords, 200))
async def logs(
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    level: Literal["debug", "info", "warn", "warning", "error", "critical"] | None = None,
) -> dict[str, Any]:
    return {"data": recent_records(limit, level)}


# The channel registry


# Strict like every request body: JSON types as they are, unknown fields refused on create as on update.
class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    label: str = Field(min_length=1, max_length=200)
    channel_id: str = Field(pattern=r"^-?\d{1,20}$")
    channel_type: Literal["source", "destination"] = "source"
    description: str = Field("", max_length=2000)
    status: Literal["active", "inactive"] = "active"


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    label: str | None = Field(None, min_length=1, max_length=200)
    channel_id: str | None = Field(None, pattern=r"^-?\d{1,20}$")
    channel_type: Literal["source", "destination"] | None = None
    description: str | None = Field(None, max_length=2000)
    status: Literal["active", "inactive"] | None = None


@router.get("/telegram-channels", tags=["registry"], summary="Registered channels",
            response_model=ChannelListAnswer, responses=responses(ChannelListAnswer, 200, 503))
async def registry_list(
    request: Request,
    status: Literal["active", "inactive"] | None = None,
    channel_type: Literal["source", "destination"] | None = None,
) -> dict[str, Any]:
    return {"data": await _svc(request).registry_list(status, channel_type)}


@router.post("/telegram-channels", tags=["registry"], status_code=201, summary="Register a channel (API key)",
             response_model=ChannelWritten, dependencies=[Depends(require_api_key)],
             responses=responses(ChannelWritten, 201, 401, 403, 409, 503, description="Registered"))
async def registry_create(request: Request, body: ChannelCreate) -> FastJSON:
    channel = await _svc(request).registry_create(body.model_dump())
    return FastJSON({"success": True, "data": channel, "channel": channel}, status_code=201)


@router.get("/telegram-channels/{channel_pk}", tags=["registry"], summary="One registered channel",
            response_model=ChannelAnswer, responses=responses(ChannelAnswer, 200, 404, 503))
async def registry_get(request: Request, channel_pk: str) -> dict[str, Any]:
    return {"data": await _svc(request).registry_get(channel_pk)}


@router.put("/telegram-channels/{channel_pk}", tags=["registry"], summary="Update a registered channel (API key)",
            response_model=ChannelUpdated, dependencies=[Depends(require_api_key)],
            responses=responses(ChannelUpdated, 200, 401, 403, 404, 409, 503))
async def registry_update(request: Request, channel_pk: str, body: ChannelUpdate) -> dict[str, Any]:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return {"success": True, "data": await _svc(request).registry_update(channel_pk, changes)}


@router.delete("/telegram-channels/{channel_pk}", tags=["registry"], summary="Remove a registered channel (API key)",
               response_model=ChannelRemoved, responses=responses(ChannelRemoved, 200, 401, 403, 404, 503))
async def registry_delete(request: Request, channel_pk: str) -> FastJSON:
    require_api_key(request)
    await _svc(request).registry_delete(channel_pk)
    return FastJSON({"success": True, "id": channel_pk})
