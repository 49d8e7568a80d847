"""Database helpers: async engine from DATABASE_URL, Alembic migrations run at startup."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import aiosqlite
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def async_url(url: str) -> str:
    """Map plain URLs to the async drivers we ship (aiosqlite, asyncpg)."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url.removeprefix(plain)
    return url


def make_engine(url: str, *, schema: str | None = None, sqlite_inline: bool = False) -> AsyncEngine:
    """Create the engine; SQLite files get their folder and SQLITE_PRAGMAS; `schema` sets
    PostgreSQL's search_path.

    `sqlite_inline`: run each SQLite call on the event loop's thread instead of aiosqlite's worker
    thread (see InlineSqliteConnection); for a service whose write transactions never await
    anything but the database while they hold SQLite's write lock.
    """
    url = async_url(url)
    connect_args: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    sqlite_file = url.startswith("sqlite+aiosqlite:///") and not url.endswith(":memory:")
    if sqlite_file:
        path = url.removeprefix("sqlite+aiosqlite:///")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if sqlite_inline:
            extra["async_creator"] = _inline_creator(path)
    if schema and url.startswith("postgresql+asyncpg://"):
        connect_args["server_settings"] = {"search_path": schema}
    # A local SQLite file cannot go stale like a network connection: no ping per checkout.
    pre_ping = not url.startswith("sqlite")
    engine = create_async_engine(url, connect_args=connect_args, pool_pre_ping=pre_ping, **extra)
    if sqlite_file:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


# Every SQLite file: WAL (readers run beside the writer, and a commit is one append + one fsync
# of the log instead of the rollback journal's several fsyncs: ~0.25 vs ~0.95 ms a commit here),
# synchronous=FULL (a committed transaction survives a power cut too: services commit their Kafka
# offset after the database commit, so NORMAL could lose an accepted event), and a busy timeout
# for the other processes sharing the file (migrations, a second replica, sqlite3 by hand).
SQLITE_PRAGMAS = ("PRAGMA busy_timeout=5000", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


class InlineSqliteConnection(aiosqlite.Connection):
    """aiosqlite's connection API with every call run at once on the calling (event loop) thread.

    aiosqlite hands each call (cursor, execute, fetch, close, commit) to a worker thread and waits
    for the answer: two thread wake-ups per call, which on a busy machine cost milliseconds each,
    so a transaction of a few statements took tens of ms. A SQLite call on a local file in WAL
    mode takes microseconds, so running it in place is cheaper. The cost: a call that must wait
    for SQLite's write lock (held by another process, up to busy_timeout) blocks the loop.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineSqliteConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, InlineSqliteConnection]:
        return self._connect().__await__()  # no worker thread to start

    def stop(self) -> None:
        """Close the sqlite3 connection (there is no thread to stop)."""
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        """Close the connection."""
        self.stop()


def _inline_creator(path: str) -> Callable[[], Any]:
    async def create() -> InlineSqliteConnection:
        # check_same_thread=False as SQLAlchemy sets for file databases (the pool may hand the
        # connection to another thread, e.g. a sync engine of the same URL in Alembic).
        return await InlineSqliteConnection(
            lambda: sqlite3.connect(path, check_same_thread=False), 64
        )

    return create


def sessions(engine: AsyncEngine) -> async_sessionmaker[Any]:
    """Session factory that keeps objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def migrate(engine: AsyncEngine, migrations_dir: Path) -> None:
    """Upgrade the database to the newest revision of a service's Alembic scripts."""

    def upgrade(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(migrations_dir))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)
