"""Group commit: concurrent callers' items go to the database together, each caller still gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
# One outcome per item, in the items' order: its result, or the exception that caller is to raise.
Flush = Callable[[list[Item]], Awaitable[list[Result | BaseException]]]


class GroupCommit(Generic[Item, Result]):
    """Items submitted while earlier groups are with the database wait together and go as the next group.

    A lone caller goes at the next turn of the event loop, so a quiet service answers as fast as before; under
    load the groups grow with concurrency and so the commits (the fsyncs) are shared. `submit` returns only when
    the flush that took its item has returned, that is after its commit. At most `max_inflight` groups are with
    the database at once, each of at most `max_size` items.
    """

    def __init__(self, flush: Flush[Item, Result], *, max_size: int, max_inflight: int) -> None:
        self._flush = flush
        self.max_size = max_size
        self.max_inflight = max_inflight
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._inflight < self.max_inflight:
            self._start()
        return await future

    def _start(self) -> None:
        self._inflight += 1
        task = asyncio.create_task(self._run(), name="group-commit")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        try:
            # Taken when the task runs, not when it was created: callers that arrived meanwhile join this group.
            group, self._pending = self._pending[:self.max_size], self._pending[self.max_size:]
            if not group:
                return
            try:
                outcomes = await self._flush([item for item, _ in group])
            except Exception as exc:  # the whole group failed alike (the database is away, say)
                outcomes = [exc, *(_fresh(exc) for _ in group[1:])]
            except BaseException:
                for _, future in group:
                    future.cancel()
                raise
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if future.done():  # its caller was cancelled; the item was written all the same
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        finally:
            self._inflight -= 1
            if self._pending and self._inflight < self.max_inflight:
                self._start()


def _fresh(exc: Exception) -> Exception:
    """A copy for each waiter: one instance raised in many tasks would collect every task's traceback."""
    try:
        copy = type(exc)(*exc.args)
    except Exception:  # a type that cannot be rebuilt from its args
        return exc
    copy.__cause__ = exc.__cause__
    return copy
