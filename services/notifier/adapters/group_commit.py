"""Group commit: many small units of work written in one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.notifier.adapters.store import Store, Tx

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
Work = Callable[[Tx], Awaitable[Any]]
Bulk = Callable[[Tx, list[Any]], Awaitable[None]]
# A plain unit (work) or one item of a bulk unit (bulk, item); and the future its caller awaits.
Unit = tuple[Work | tuple[Bulk, Any], "asyncio.Future[Any]"]


@dataclass
class _Step:
    """One call inside a batch's transaction: a plain unit, or every item of one bulk function."""

    work: Work | None = None
    bulk: Bulk | None = None
    items: list[Any] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)

    async def run(self, tx: Tx) -> Any:
        if self.work is not None:
            return await self.work(tx)
        assert self.bulk is not None
        await self.bulk(tx, self.items)
        return None

    def alone(self) -> list[tuple[Work, asyncio.Future[Any]]]:
        """This step split into units that can be retried one by one."""
        if self.work is not None:
            return [(self.work, self.futures[0])]
        bulk = self.bulk
        assert bulk is not None
        return [(_one(bulk, item), f) for item, f in zip(self.items, self.futures, strict=True)]


class GroupCommit:
    """Writes many small units of work in one transaction (group commit): the dispatcher records
    each send's outcome through it, so throughput does not stop at one commit per message.

    A bulk unit (`submit_bulk`) goes further: every item of the batch given to the same function
    is handled by one call of it (one UPDATE for many sent rows instead of one each).
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

    async def submit_bulk(self, bulk: Callable[[Tx, list[I]], Awaitable[None]], item: I) -> None:
        """Have `bulk` handle `item` together with the batch's other items for it; return once
        committed."""
        if not self.running:
            return await self._store.atomically(_one(bulk, item))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(((bulk, item), future))
        await future

    async def run(self) -> None:
        """Commit batches until cancelled."""
        self.running = True
        try:
            while True:
                batch = [await self._queue.get()]
                while not self._queue.empty() and len(batch) < self._max_batch:
                    batch.append(self._queue.get_nowait())
                await self._commit(_steps(batch))
        finally:
            self.running = False

    async def _commit(self, steps: list[_Step]) -> None:
        async def together(tx: Tx) -> list[Any]:
            return [await step.run(tx) for step in steps]

        try:
            results = await self._store.atomically(together)
        except Exception:
            for step in steps:  # alone, so only the failing unit fails
                for work, future in step.alone():
                    await _settle(future, self._store.atomically(work))
            return
        for step, result in zip(steps, results, strict=True):
            for future in step.futures:
                if not future.done():
                    future.set_result(result)


def _steps(batch: list[Unit]) -> list[_Step]:
    """Plain units in order; a bulk function's items gathered at its first item's place."""
    steps: list[_Step] = []
    bulks: dict[Bulk, _Step] = {}
    for what, future in batch:
        if isinstance(what, tuple):
            bulk, item = what
            if bulk not in bulks:
                bulks[bulk] = _Step(bulk=bulk)
                steps.append(bulks[bulk])
            bulks[bulk].items.append(item)
            bulks[bulk].futures.append(future)
        else:
            steps.append(_Step(work=what, futures=[future]))
    return steps


def _one(bulk: Callable[[Tx, list[Any]], Awaitable[None]], item: Any) -> Work:
    async def work(tx: Tx) -> None:
        await bulk(tx, [item])

    return work


async def _settle(future: asyncio.Future[Any], outcome: Awaitable[Any]) -> None:
    try:
        result = await outcome
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(result)
