"""Publisher: delivers journaled messages to the API per channel, retries, fills and re-drives the failure queue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from tradingsystem.gateway.cursors import Cursors
from tradingsystem.gateway.failure_queue import REJECTED_PREFIX, FailureQueue, QueueFullError, ReplayOutcome
from tradingsystem.gateway.journal import Journal, JournalEntry, JournalError
from tradingsystem.gateway.metrics import GatewayMetrics
from tradingsystem.gateway.types import IngestPayload

log = structlog.get_logger(__name__)

BATCH_MAX = 1000  # the API's limit for one /ingest/batch request
# Statuses that say "this request, as it is, will never be accepted": re-sending it only hammers the
# API, so the message goes straight to the failure queue with the reason. 401/403 (a token being
# rotated), 408 and 429 are transient and take the normal retry schedule.
TRANSIENT_4XX = frozenset({401, 403, 408, 425, 429})


@dataclass(frozen=True, slots=True)
class ApiUrls:
    ingest: str
    batch: str
    channels: str


def api_urls(endpoint: str) -> ApiUrls:
    """`API_ENDPOINT` is the ingest URL (`…/ingest`); the batch and registry URLs share its base."""
    ingest = endpoint.rstrip("/")
    base = ingest[: -len("/ingest")] if ingest.endswith("/ingest") else ingest.rsplit("/", 1)[0]
    return ApiUrls(ingest=ingest, batch=f"{ingest}/batch", channels=f"{base}/gateway/channels")


@dataclass(frozen=True, slots=True)
class SendResult:
    """The API's answer to one message. `ok` covers stored and duplicate (both acknowledge it)."""

    ok: bool
    status: int | None = None
    duplicate: bool = False
    permanent: bool = False  # refused as invalid: do not retry
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BatchItemResult:
    message_id: int | None
    delivered: bool
    duplicate: bool = False
    error: str | None = None
    rejected: bool = False  # the API refused this message itself (validation), not the whole request
    refused: bool = False  # the API refused the whole request (a 4xx that a retry does not change)


class RetrySchedule:
    """`MAX_RETRIES` retries after `BASE_RETRY_DELAY_MS * 2^n` (n = 0, 1, …): 5, 10, 20 s by default."""

    def __init__(self, max_retries: int, base_delay_ms: int) -> None:
        self.max_retries = max_retries
        self.base_delay_s = base_delay_ms / 1000.0

    def delays(self) -> list[float]:
        return [self.base_delay_s * (2**n) for n in range(self.max_retries)]

    @property
    def window_s(self) -> float:
        return sum(self.delays())


class IngestClient:
    """HTTP client for the API's ingest endpoints and the registry, with the gateway token."""

    def __init__(
        self,
        endpoint: str,
        token: str,
        timeout_ms: int,
        *,
        metrics: GatewayMetrics | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.urls = api_urls(endpoint)
        self._headers = {"X-Gateway-Token": token, "Content-Type": "application/json"}
        self._metrics = metrics
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_ms / 1000.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, payload: IngestPayload) -> SendResult:
        started = time.perf_counter()
        try:
            resp = await self._client.post(self.urls.ingest, json=payload, headers=self._headers)
        except httpx.TimeoutException as exc:
            return SendResult(ok=False, error=f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        finally:
            if self._metrics is not None:
                self._metrics.publish_duration.observe(time.perf_counter() - started)
        return self._interpret(resp)

    @staticmethod
    def _interpret(resp: httpx.Response) -> SendResult:
        status = resp.status_code
        if 200 <= status < 300:
            duplicate = False
            with contextlib.suppress(ValueError):
                body = resp.json()
                duplicate = isinstance(body, dict) and body.get("stored") is False
            return SendResult(ok=True, status=status, duplicate=duplicate)
        text = resp.text[:500].strip()
        error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        permanent = 400 <= status < 500 and status not in TRANSIENT_4XX
        return SendResult(ok=False, status=status, permanent=permanent, error=error)

    async def send_batch(
        self,
        payloads: Sequence[IngestPayload],
        schedule: RetrySchedule,
        *,
        chunk_size: int = BATCH_MAX,
        on_chunk: Callable[[int], None] | None = None,
    ) -> list[BatchItemResult]:
        """POST `/ingest/batch` in chunks of at most 1000; a chunk is retried on the normal schedule.

        Returns one result per payload, in order. `on_chunk(n)` is called with each chunk's size.
        """
        size = max(1, min(chunk_size, BATCH_MAX))
        results: list[BatchItemResult] = []
        for start in range(0, len(payloads), size):
            chunk = list(payloads[start : start + size])
            results.extend(await self._send_chunk(chunk, schedule))
            if on_chunk is not None:
                on_chunk(len(chunk))
        return results

    async def _send_chunk(self, chunk: list[IngestPayload], schedule: RetrySchedule) -> list[BatchItemResult]:
        error = "not sent"
        refused = False
        for attempt, delay in enumerate([0.0, *schedule.delays()]):
            if attempt:
                if self._metrics is not None:
                    self._metrics.retry_attempts.labels(attempt_number=str(attempt)).inc()
                await asyncio.sleep(delay)
            started = time.perf_counter()
            try:
                resp = await self._client.post(self.urls.batch, json={"messages": chunk}, headers=self._headers)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            finally:
                if self._metrics is not None:  # one observation per POST, like the single path
                    self._metrics.publish_duration.observe(time.perf_counter() - started)
            if resp.status_code == 200:
                return self._batch_results(chunk, resp)
            error = f"HTTP {resp.status_code}: {resp.text[:300].strip()}"
            if 400 <= resp.status_code < 500 and resp.status_code not in TRANSIENT_4XX:
                refused = True
                break
        return [BatchItemResult(_message_id(p), delivered=False, error=error, refused=refused) for p in chunk]

    @staticmethod
    def _batch_results(chunk: list[IngestPayload], resp: httpx.Response) -> list[BatchItemResult]:
        try:
            items = resp.json().get("results", [])
        except (ValueError, AttributeError):
            items = []
        out: list[BatchItemResult] = []
        for i, payload in enumerate(chunk):
            item: dict[str, Any] = items[i] if i < len(items) and isinstance(items[i], dict) else {}
            if not item:
                out.append(BatchItemResult(_message_id(payload), False, error="no result for this message"))
            elif item.get("error"):
                details = item.get("details")
                error = str(item["error"]) + (f": {'; '.join(map(str, details))}" if isinstance(details, list) else "")
                out.append(BatchItemResult(_message_id(payload), False, error=error, rejected=True))
            else:
                duplicate = item.get("stored") is False
                out.append(BatchItemResult(_message_id(payload), True, duplicate=duplicate))
        return out

    async def probe(self) -> bool:
        """True when the API answers at all (any status below 500 on the registry URL)."""
        try:
            resp = await self._client.get(self.urls.channels, headers=self._headers)
        except httpx.HTTPError:
            return False
        return resp.status_code < 500

    async def fetch_channels(self) -> list[str]:
        """The API's active source channels (`GET …/gateway/channels`); raises on any failure."""
        resp = await self._client.get(self.urls.channels, headers=self._headers)
        resp.raise_for_status()
        body = resp.json()
        items = body.get("data", body.get("channels", [])) if isinstance(body, dict) else body
        out: list[str] = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                if item.get("status", "active") != "active" or item.get("channel_type", "source") != "source":
                    continue
                value = item.get("channel_id", item.get("channelId"))
            else:
                value = item
            if value is not None and str(value).strip():
                out.append(str(value).strip())
        return out


def replay_outcome(result: SendResult) -> ReplayOutcome:
    """How a failure-queue replay treats one answer: refused lines stay with the reason; anything
    transient (network, 5xx, 429) means the API is not taking messages now, so the replay stops."""
    if result.ok:
        return ReplayOutcome(delivered=True)
    if result.permanent:
        return ReplayOutcome(delivered=False, error=REJECTED_PREFIX + (result.error or "rejected"))
    return ReplayOutcome(delivered=False, error=result.error, unreachable=True)


NO_RETRIES = RetrySchedule(0, 0)  # a replay stops at the first transient failure instead of waiting


def batch_item_outcome(result: BatchItemResult) -> ReplayOutcome:
    if result.delivered:
        return ReplayOutcome(delivered=True)
    if result.rejected:
        return ReplayOutcome(delivered=False, error=REJECTED_PREFIX + (result.error or "rejected"))
    return ReplayOutcome(delivered=False, error=result.error, unreachable=True)


async def replay_batch(client: IngestClient, payloads: Sequence[IngestPayload]) -> list[ReplayOutcome]:
    """One `/ingest/batch` for a batch of failure-queue lines, one outcome per line (per-item errors kept).

    When the API refuses the request as a whole (for example 413, or an API without the batch route),
    each line is sent alone so that it gets its own answer."""
    results = await client.send_batch(payloads, NO_RETRIES)
    if results and all(r.refused for r in results):
        return [replay_outcome(await client.send(p)) for p in payloads]
    return [batch_item_outcome(r) for r in results]


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait for `event` at most `timeout_s`; True when it was set. (asyncio.timeout, unlike wait_for on
    Python 3.11, never swallows a cancellation that arrives together with the timeout.)"""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _message_id(payload: IngestPayload) -> int | None:
    value = payload.get("messageId")
    return value if isinstance(value, int) else None


class Publisher:
    """Runs apart from reception: one task per channel with pending messages, each waiting only on its
    own head, so a retrying channel never holds up the others. Also re-drives the failure queue."""

    def __init__(
        self,
        journal: Journal,
        queue: FailureQueue,
        cursors: Cursors,
        metrics: GatewayMetrics,
        client: IngestClient,
        schedule: RetrySchedule,
        *,
        redrive_interval_s: float | None = None,
        prune_interval_s: float = 30.0,
        idle_worker_s: float = 30.0,
    ) -> None:
        self.journal = journal
        self.queue = queue
        self.cursors = cursors
        self.metrics = metrics
        self.client = client
        self.schedule = schedule
        # Without a success to trigger it, the re-drive probes the API this often.
        self.redrive_interval_s = redrive_interval_s or max(1.0, schedule.window_s)
        self.prune_interval_s = prune_interval_s
        self.idle_worker_s = idle_worker_s
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._to_mark: list[int] = []
        self._marks_wanted = asyncio.Event()
        self._api_answered = asyncio.Event()
        self._redrive_lock = asyncio.Lock()
        self._permanent_only_size: int | None = None
        self._acked: set[int] = set()  # delivered, not yet recorded in the journal
        self.api_reachable: bool | None = None
        self.last_error: str | None = None
        self.oldest_pending_age_s = 0.0  # of the oldest entry the API has not acknowledged (refresh_gauges)
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._mark_loop(), name="publisher-marks"),
            loop.create_task(self._redrive_loop(), name="publisher-redrive"),
            loop.create_task(self._housekeeping_loop(), name="publisher-housekeeping"),
        ]
        for channel in await asyncio.to_thread(self.journal.pending_channels):
            self.notify(channel)
        await self.refresh_gauges()

    async def stop(self) -> None:
        self._stopping = True
        tasks = [*self._workers.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        await self._flush_marks()
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.cursors.flush)

    def notify(self, channel_id: str) -> None:
        """A message for `channel_id` was journaled: make sure a worker delivers it."""
        if self._stopping:
            return
        event = self._wake.setdefault(channel_id, asyncio.Event())
        event.set()
        if channel_id not in self._workers:
            self._workers[channel_id] = asyncio.get_running_loop().create_task(
                self._channel_worker(channel_id), name=f"publish-{channel_id}"
            )

    # -- delivery --------------------------------------------------------------------------------------

    async def _channel_worker(self, channel_id: str) -> None:
        wake = self._wake[channel_id]
        after = 0
        try:
            while True:
                wake.clear()
                entries = await asyncio.to_thread(self.journal.next_pending, channel_id, after, 100)
                entries = [e for e in entries if e.seq not in self._acked]
                if not entries:
                    if not await _wait(wake, self.idle_worker_s) and not wake.is_set():
                        return
                    continue
                if len(entries) == 1:
                    await self._deliver(entries[0])
                else:
                    # A backlog goes as one /ingest/batch: one round trip instead of one per message, so a
                    # channel catches up instead of queueing behind its own POSTs.
                    await self._deliver_batch(entries)
                after = entries[-1].seq
        finally:
            if self._workers.get(channel_id) is asyncio.current_task():
                del self._workers[channel_id]

    async def _deliver(self, entry: JournalEntry) -> None:
        attempts = 0
        result = SendResult(ok=False, error="not sent")
        for n, delay in enumerate([0.0, *self.schedule.delays()]):
            if n:
                self.metrics.retry_attempts.labels(attempt_number=str(n)).inc()
                await asyncio.sleep(delay)
            result = await self.client.send(entry.payload)
            attempts += 1
            if result.ok:
                self._acknowledged(entry.seq, entry.channel_id, entry.message_id)
                return
            if result.permanent:
                log.warning("Message rejected by the API", channel_id=entry.channel_id,
                            message_id=entry.message_id, error=result.error)
                self.metrics.publish_failures.labels(reason="rejected").inc()
                await self._to_queue(entry, attempts, REJECTED_PREFIX + (result.error or "rejected"))
                return
            self._api_down(result.error)
            log.warning("Publish failed", channel_id=entry.channel_id, message_id=entry.message_id,
                        attempt=attempts, retries_left=self.schedule.max_retries - n, error=result.error)
        log.error("Publish failed after retries, moving to the failure queue", channel_id=entry.channel_id,
                  message_id=entry.message_id, attempts=attempts, error=result.error)
        self.metrics.publish_failures.labels(reason="max_retries").inc()
        await self._to_queue(entry, attempts, result.error or "unknown error")

    async def _deliver_batch(self, entries: list[JournalEntry]) -> None:
        results = await self.client.send_batch([e.payload for e in entries], self.schedule)
        for entry, result in zip(entries, results, strict=True):
            if result.delivered:
                self._acknowledged(entry.seq, entry.channel_id, entry.message_id)
            elif result.rejected:
                log.warning("Message rejected by the API", channel_id=entry.channel_id,
                            message_id=entry.message_id, error=result.error)
                self.metrics.publish_failures.labels(reason="rejected").inc()
                await self._to_queue(entry, 1, REJECTED_PREFIX + (result.error or "rejected"))
            else:
                self._api_down(result.error)
                log.error("Publish failed after retries, moving to the failure queue",
                          channel_id=entry.channel_id, message_id=entry.message_id,
                          attempts=self.schedule.max_retries + 1, error=result.error)
                self.metrics.publish_failures.labels(reason="max_retries").inc()
                await self._to_queue(entry, self.schedule.max_retries + 1, result.error or "unknown error")

    def _acknowledged(self, seq: int | None, channel_id: str, message_id: int) -> None:
        self.metrics.messages_published.inc()
        if seq is not None:
            self._acked.add(seq)
            self._to_mark.append(seq)
            self._marks_wanted.set()
        self.cursors.advance(channel_id, message_id)
        if self.api_reachable is not True:
            log.info("API reachable", endpoint=self.client.urls.ingest)
        self.api_reachable = True
        self.last_error = None
        self._api_answered.set()

    def _api_down(self, error: str | None) -> None:
        if self.api_reachable is not False:
            log.warning("API unreachable", endpoint=self.client.urls.ingest, error=error)
        self.api_reachable = False
        self.last_error = error

    async def _to_queue(self, entry: JournalEntry, attempts: int, error: str) -> bool:
        """Move an entry to the failure queue (fsync'd there before the journal lets go of it).

        At the cap, or when the queue cannot be written, the entry is held in the journal instead."""
        try:
            await asyncio.to_thread(self.queue.append, entry.payload, attempts, error)
        except QueueFullError as exc:
            self.metrics.publish_failures.labels(reason="queue_full").inc()
            log.warning("Failure queue full, message kept in the journal", channel_id=entry.channel_id,
                        message_id=entry.message_id, error=str(exc))
            await self._hold(entry, attempts, error)
            return False
        except OSError as exc:
            log.error("Failure queue write failed, message kept in the journal", path=str(self.queue.path),
                      channel_id=entry.channel_id, message_id=entry.message_id, error=str(exc))
            await self._hold(entry, attempts, error)
            return False
        try:
            await asyncio.to_thread(self.journal.mark_queued, entry.seq, attempts, error)
        except JournalError as exc:
            # The line is safely in the queue; the journal still says pending, so a restart sends it
            # again (a duplicate the API drops). Do not let this worker re-send it now.
            self._acked.add(entry.seq)
            log.error("Journal update failed", seq=entry.seq, error=str(exc))
        await self.refresh_gauges()
        return True

    async def _hold(self, entry: JournalEntry, attempts: int, error: str) -> None:
        try:
            await asyncio.to_thread(self.journal.mark_held, entry.seq, attempts, error)
        except JournalError as exc:
            self._acked.add(entry.seq)  # stays pending on disk: the next start retries it
            log.error("Journal update failed", seq=entry.seq, error=str(exc))

    async def _flush_marks(self) -> None:
        batch, self._to_mark = self._to_mark, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self.journal.mark_delivered, batch)
        except JournalError as exc:
            self._to_mark = batch + self._to_mark  # delivered all the same; record it when the disk allows
            log.error("Journal update failed", error=str(exc), entries=len(batch))
            raise
        self._acked.difference_update(batch)

    async def _mark_loop(self) -> None:
        while not self._stopping:
            await self._marks_wanted.wait()
            self._marks_wanted.clear()
            try:
                await self._flush_marks()
            except JournalError:
                await _wait(self._api_answered, 1.0)
                self._marks_wanted.set()

    # -- failure queue re-drive ------------------------------------------------------------------------

    async def _send_for_replay(self, payloads: list[IngestPayload]) -> list[ReplayOutcome]:
        outcomes = await replay_batch(self.client, payloads)
        for payload, outcome in zip(payloads, outcomes, strict=True):
            if outcome.delivered:
                self._acknowledged(None, str(payload.get("channelId")), int(payload.get("messageId") or 0))
            elif outcome.unreachable:
                self._api_down(outcome.error)
        return outcomes

    async def redrive(self) -> None:
        """Send the failure queue (except lines the API refused as invalid) and held entries again."""
        async with self._redrive_lock:
            size = self.queue.size()
            if size and size != self._permanent_only_size:
                report = await self.queue.replay(self._send_for_replay, include_permanent=False)
                # A replay leaves the lines queued while it ran for the next one: the queue is skipped until
                # it changes only when nothing but refused lines is left in it.
                # (the size is read first: a line appended during the scan changes it, so it is not skipped)
                left = self.queue.size()
                clean = not report.unreachable and report.failed == 0
                self._permanent_only_size = (
                    left if clean and await asyncio.to_thread(self.queue.holds_only_refused) else None
                )
            await self._redrive_held()
            if self.api_reachable is False and await self.client.probe():
                # nothing was waiting to prove it, so ask: health must not stay "API unreachable"
                log.info("API reachable", endpoint=self.client.urls.ingest)
                self.api_reachable = True
                self.last_error = None
            await self.refresh_gauges()

    async def _redrive_held(self) -> None:
        while True:
            held = [e for e in await asyncio.to_thread(self.journal.held, 100) if e.seq not in self._acked]
            if not held:
                return
            for entry in held:
                result = await self.client.send(entry.payload)
                if result.ok:
                    self._acknowledged(entry.seq, entry.channel_id, entry.message_id)
                    continue
                if not result.permanent:
                    self._api_down(result.error)
                error = REJECTED_PREFIX + (result.error or "") if result.permanent else (result.error or "")
                if not await self._to_queue(entry, entry.attempts + 1, error):
                    return  # still no room: they wait in the journal
            await self._flush_marks()

    async def _redrive_loop(self) -> None:
        while not self._stopping:
            await _wait(self._api_answered, self.redrive_interval_s)
            self._api_answered.clear()
            try:
                await self.redrive()
            except (OSError, JournalError) as exc:
                log.error("Failure queue re-drive failed", error=str(exc))

    # -- housekeeping ----------------------------------------------------------------------------------

    async def refresh_gauges(self) -> int:
        status = await asyncio.to_thread(self.queue.status)
        self.metrics.failure_queue_size.set(status.lines)
        self.metrics.failure_queue_bytes.set(status.bytes)
        pending = await asyncio.to_thread(self.journal.pending_count)
        self.metrics.journal_pending.set(pending)
        oldest = await asyncio.to_thread(self.journal.oldest_pending_received_at) if pending else None
        self.oldest_pending_age_s = 0.0 if oldest is None else round(max(0.0, time.time() - oldest), 3)
        self.metrics.journal_oldest_pending_age.set(self.oldest_pending_age_s)
        return pending

    async def _housekeeping_loop(self) -> None:
        last_prune = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(1.0)
            try:
                await self.refresh_gauges()
                if self.cursors.dirty:
                    await asyncio.to_thread(self.cursors.flush)
                if time.monotonic() - last_prune >= self.prune_interval_s:
                    last_prune = time.monotonic()
                    await self._flush_marks()
                    removed = await asyncio.to_thread(self.journal.prune)
                    if removed:
                        log.debug("Journal pruned", entries=removed)
            except (OSError, JournalError) as exc:
                log.error("Gateway housekeeping failed", error=str(exc))

    async def publish_batch(
        self, payloads: Sequence[IngestPayload], on_chunk: Callable[[int], None] | None = None
    ) -> list[BatchItemResult]:
        """Bulk path (`gateway import`): `/ingest/batch` in chunks of at most 1000, same retry schedule."""
        results = await self.client.send_batch(payloads, self.schedule, on_chunk=on_chunk)
        for payload, result in zip(payloads, results, strict=True):
            if result.delivered:
                self._acknowledged(None, str(payload.get("channelId")), int(payload.get("messageId") or 0))
        return results
