"""The asyncpg pool every database-backed service uses: patient startup, retried queries, honest 503s."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson
import structlog
from prometheus_client import Gauge
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

log = structlog.get_logger(__name__)
T = TypeVar("T")

# Errors that say "the database is not reachable right now", as opposed to "your query is wrong".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,
)

CONNECT_ATTEMPTS = 5
# The contract's 2, 4, 8, 16, 32 s; DB_CONNECT_BASE_DELAY_S scales the schedule (tests, impatient operators).
CONNECT_BASE_DELAY_S = float(os.environ.get("DB_CONNECT_BASE_DELAY_S", "2.0"))
QUERY_RETRIES = 3
QUERY_RETRY_DELAY_S = 1.0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (an extra round trip on every request).

    asyncpg still ends any open transaction on release. The services keep no other session state: no
    LISTEN, no cursors, no session settings, and session advisory locks only inside `migrate`, which
    releases them itself.
    """


class DatabaseUnavailable(Exception):
    """The database stayed unreachable through the retries; answered as 503 `Database unavailable`."""


class DatabaseStartupFailed(Exception):
    """The first connection never succeeded; the service logs it and exits 1."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


class Database:
    """An asyncpg pool with the contract's retry rules and a connection-status gauge."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        status_gauge: Gauge | None = None,
        query_retries: int = QUERY_RETRIES,
        query_retry_delay_s: float = QUERY_RETRY_DELAY_S,
    ) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.status_gauge = status_gauge
        self.query_retries = query_retries
        self.query_retry_delay_s = query_retry_delay_s
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseUnavailable("pool not connected")
        return self._pool

    def _set_status(self, up: bool) -> None:
        if self.status_gauge is not None:
            self.status_gauge.set(1 if up else 0)

    async def connect(
        self, attempts: int = CONNECT_ATTEMPTS, base_delay_s: float = CONNECT_BASE_DELAY_S
    ) -> None:
        """Open the pool: one try, then `attempts` retries waiting 2, 4, 8, 16, 32 s."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts + 1),
            wait=wait_exponential(multiplier=base_delay_s, exp_base=2, min=base_delay_s),
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            before_sleep=lambda rs: log.warning(
                "Database connection attempt failed, retrying",
                attempt=rs.attempt_number,
                wait_s=round(rs.next_action.sleep if rs.next_action else 0, 1),
                error=str(rs.outcome.exception()) if rs.outcome else None,
            ),
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=self.min_size,
                        max_size=self.max_size,
                        timeout=5,
                        command_timeout=30,
                        init=_init_connection,
                        max_inactive_connection_lifetime=300,
                        reset=_keep_session,
                    )
        except RetryError as exc:
            self._set_status(False)
            raise DatabaseStartupFailed("Database connection failed after retries") from exc
        self._set_status(True)
        log.info("Database connected")

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=10)
            except TRANSIENT_ERRORS:
                self._pool.terminate()
            self._pool = None
        self._set_status(False)

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, transaction: bool = False) -> T:
        """Run `fn` on a pooled connection, retrying transient failures before giving up with a 503."""
        last: BaseException | None = None
        for attempt in range(self.query_retries + 1):
            try:
                async with self.pool.acquire(timeout=5) as conn:
                    if transaction:
                        async with conn.transaction():
                            result = await fn(conn)
                    else:
                        result = await fn(conn)
                self._set_status(True)
                return result
            except TRANSIENT_ERRORS as exc:
                last = exc
                self._set_status(False)
                if attempt < self.query_retries:
                    log.warning("Database query failed, retrying", attempt=attempt + 1, error=str(exc))
                    await asyncio.sleep(self.query_retry_delay_s)
        log.error("Database unavailable", error=str(last))
        raise DatabaseUnavailable(str(last))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.run(lambda c: c.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.run(lambda c: c.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.run(lambda c: c.fetchval(sql, *args))

    async def execute(self, sql: str, *args: Any) -> str:
        return await self.run(lambda c: c.execute(sql, *args))

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """One quick `SELECT 1` with no retries, for `/health`."""
        if self._pool is None:
            self._set_status(False)
            return False
        try:
            async with self._pool.acquire(timeout=timeout_s) as conn:
                await conn.fetchval("SELECT 1", timeout=timeout_s)
        except TRANSIENT_ERRORS:
            self._set_status(False)
            return False
        self._set_status(True)
        return True
