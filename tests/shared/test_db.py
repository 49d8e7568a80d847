"""shared.db: the URLs services accept and the SQLite settings every service's file gets."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import async_url, make_engine


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/x.db", "sqlite+aiosqlite:///data/x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_async_url_maps_plain_urls_to_the_shipped_drivers(url: str, expected: str) -> None:
    assert async_url(url) == expected


@pytest.mark.parametrize("inline", [False, True], ids=["worker-thread", "inline"])
async def test_sqlite_files_are_durable_wal_with_a_busy_timeout(
    tmp_path: Path, inline: bool
) -> None:
    """WAL + synchronous=FULL: one fsync a commit, and a commit survives a power cut (services
    commit their Kafka offset after it); busy_timeout for other processes on the same file."""
    engine = make_engine(f"sqlite:///{tmp_path}/sub/state.db", sqlite_inline=inline)
    try:
        async with engine.begin() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            sync = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
            await conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO t VALUES ('committed')"))
    finally:
        await engine.dispose()
    assert (mode, sync, busy) == ("wal", 2, 5000)  # 2 = FULL
    with sqlite3.connect(tmp_path / "sub" / "state.db") as other:  # another process's view
        assert other.execute("SELECT k FROM t").fetchall() == [("committed",)]


async def test_an_open_reader_does_not_block_a_commit(tmp_path: Path) -> None:
    """With WAL a reader in the middle of a read transaction (a second replica, an operator's
    sqlite3) does not hold up a service's commit; with a rollback journal the commit would wait
    the busy timeout and fail 'database is locked'."""
    engine = make_engine(f"sqlite:///{tmp_path}/state.db")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY)"))
            await conn.execute(text("INSERT INTO t VALUES ('old')"))
        other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        try:
            other.execute("BEGIN")
            assert other.execute("SELECT k FROM t").fetchall() == [("old",)]  # holds its snapshot
            async with engine.begin() as conn:
                await conn.execute(text("PRAGMA busy_timeout=0"))  # fail at once, not in 5 s
                await conn.execute(text("INSERT INTO t VALUES ('new')"))
            assert other.execute("SELECT k FROM t").fetchall() == [("old",)]
            other.execute("COMMIT")
            assert sorted(other.execute("SELECT k FROM t").fetchall()) == [("new",), ("old",)]
        finally:
            other.close()
    finally:
        await engine.dispose()
