"""Group commit: many small units of work written in one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.notifier.adapters.store import Store, Tx

T = TypeVar("T")
Unit = tuple[Callable[[Tx], Awaitable[Any]], "asyncio.Future[Any]"]


class GroupCommit:
    """Writes many small units of work in one transaction (group commit): the dispatcher records
    each send's outcome through it, so throughput does not stop at one commit per message.

    A unit that raises is retried alone, so one bad unit never fails the others.
    """

    def __init__(self, store: Store, *, max_batch: int = 256) -> None:
        self._store = store
        self._max_batch = max_batch
        self.running = False
        self._queue: asyncio.Queue[Unit] = asyncio.Queue()

    async def submit(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `work` in the next batch's transaction; return its result once committed (in its
        own transaction when no batcher runs, e.g. in tests driving the dispatcher by hand)."""
        if not self.running:
            return await self._store.atomically(work)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((work, future))
        return await future

    async def run(self) -> None:
        """Commit batches until cancelled."""
        self.running = True
        try:
            while True:
                batch = [await self._queue.get()]
                while not self._queue.empty() and len(batch) < self._max_batch:
                    batch.append(self._queue.get_nowait())
                await self._commit(batch)
        finally:
            self.running = False

    async def _commit(self, batch: list[Unit]) -> None:
        async def together(tx: Tx) -> list[Any]:
            return [await work(tx) for work, _ in batch]

        try:
            results = await self._store.atomically(together)
        except Exception:
            for work, future in batch:  # alone, so only the failing unit fails
                await _settle(future, self._store.atomically(work))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


async def _settle(future: asyncio.Future[Any], outcome: Awaitable[Any]) -> None:
    try:
        result = await outcome
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(result)
