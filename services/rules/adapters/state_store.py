"""Durable per-patient rule state: a write-through cache over the rules database.

The database is the source of truth, written (one transaction per poll batch) before the batch's
offsets are committed, so a restart or a partition move resumes from the last committed batch. The
cache holds only patients of partitions this instance owns; a revoked partition's entries are
dropped, so the next owner (or this instance, after a new assignment) reads them fresh.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.rules.adapters.tables import patient_states

S = TypeVar("S")


class SqlStateStore(Generic[S]):
    """Load, save in batches, forget; states are (de)serialized by the given codec."""

    def __init__(
        self, engine: AsyncEngine, *, encode: Callable[[S], str], decode: Callable[[str], S]
    ) -> None:
        self._engine = engine
        self._encode = encode
        self._decode = decode
        self._cache: dict[str, tuple[int, S]] = {}

    async def load(self, patient_id: str) -> S | None:
        """The patient's state, from the cache or the database."""
        hit = self._cache.get(patient_id)
        if hit is not None:
            return hit[1]
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(patient_states.c.partition, patient_states.c.state).where(
                        patient_states.c.patient_id == patient_id
                    )
                )
            ).first()
        if row is None:
            return None
        state = self._decode(row.state)
        self._cache[patient_id] = (row.partition, state)
        return state

    async def load_many(self, patient_ids: Iterable[str]) -> dict[str, S]:
        """The states of those patients who have one: the cache's, the rest in one SELECT."""
        wanted = set(patient_ids)
        found = {p: self._cache[p][1] for p in wanted if p in self._cache}
        missing = wanted - found.keys()
        if not missing:
            return found
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(
                    patient_states.c.patient_id, patient_states.c.partition, patient_states.c.state
                ).where(patient_states.c.patient_id.in_(missing))
            )
            for row in rows:
                state = self._decode(row.state)
                self._cache[row.patient_id] = (row.partition, state)
                found[row.patient_id] = state
        return found

    async def save_many(self, items: Iterable[tuple[str, int, S]]) -> None:
        """Upsert (patient, partition, state) rows in one transaction, then update the cache."""
        items = list(items)
        rows = [
            {
                "patient_id": p,
                "partition": part,
                "state": self._encode(s),
                "updated_at": datetime.now(UTC),
            }
            for p, part, s in items
        ]
        if not rows:
            return
        async with self._engine.begin() as conn:
            # executemany of one statement, built once per dialect (its construction was ~5 % of
            # rules' CPU) and compiled once (a VALUES list per batch size was compiled afresh
            # for each size)
            await conn.execute(_upsert(conn.dialect.name), rows)
        for p, part, s in items:
            self._cache[p] = (part, s)

    def cached(self) -> dict[str, S]:
        """The states this instance currently holds (its assigned partitions' patients)."""
        return {p: s for p, (_, s) in self._cache.items()}

    def partition_of(self, patient_id: str) -> int | None:
        """The partition a cached patient was last seen on."""
        hit = self._cache.get(patient_id)
        return None if hit is None else hit[0]

    async def load_partitions(self, partitions: set[int]) -> None:
        """Restore the states of newly assigned partitions (so silent patients are gap-checked)."""
        if not partitions:
            return
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(
                    patient_states.c.patient_id, patient_states.c.partition, patient_states.c.state
                ).where(patient_states.c.partition.in_(partitions))
            )
            for row in rows:
                self._cache[row.patient_id] = (row.partition, self._decode(row.state))

    async def drop_partitions(self, partitions: set[int]) -> None:
        """Forget cached states of revoked partitions (the database keeps them)."""
        for patient in [p for p, (part, _) in self._cache.items() if part in partitions]:
            del self._cache[patient]

    async def forget(self, patient_id: str) -> int:
        """Delete the patient's state everywhere (erasure, consent revoked); return rows deleted."""
        self._cache.pop(patient_id, None)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(patient_states).where(patient_states.c.patient_id == patient_id)
            )
        return int(result.rowcount or 0)


@functools.cache
def _upsert(dialect: str) -> Any:
    """INSERT … ON CONFLICT (patient_id) DO UPDATE of partition, state and updated_at."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(patient_states)
    return stmt.on_conflict_do_update(
        index_elements=[patient_states.c.patient_id],
        set_={k: stmt.excluded[k] for k in ("partition", "state", "updated_at")},
    )
