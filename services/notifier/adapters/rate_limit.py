"""Per-Slack-channel pacing (a token bucket: ≤ 1 message/s, no burst by default) and per-key locks.

Slack allows about one message per second per channel and answers 429 with Retry-After beyond it;
a 429 pauses the whole channel for that long. The bucket is keyed by the recipient string of the
delivery row; every row of one alert (post, reply, update) carries the configured channel as given
in the routing file, so one channel named once there is one bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `pause` empties it until a time."""

    def __init__(self, rate: float, burst: int, *, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now
        self.paused_until = 0.0

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available."""
        self._refill(now)
        if now < self.paused_until:
            return self.paused_until - now + max(0.0, 1.0 - self.tokens) / self.rate
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def take(self, now: float) -> None:
        """Spend a token (may go negative when taken before it was due)."""
        self._refill(now)
        self.tokens -= 1.0

    def pause(self, now: float, seconds: float) -> None:
        """Stop for `seconds` (a 429's Retry-After); the bucket restarts empty."""
        self.paused_until = max(self.paused_until, now + seconds)
        self.tokens = 0.0
        self.updated = self.paused_until

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
            self.updated = now


class ChannelPacer:
    """One token bucket per Slack channel; a send reserves its token up front (first come, first
    served) and waits out the reservation, so concurrent sends never exceed the rate."""

    def __init__(
        self, *, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, channel: str) -> TokenBucket:
        if channel not in self._buckets:
            self._buckets[channel] = TokenBucket(self._rate, self._burst, now=self._clock())
        return self._buckets[channel]

    async def token(self, channel: str, *, max_wait: float) -> float:
        """Take a token, waiting up to `max_wait` for it; return 0.0, or the delay when it would
        be longer (nothing is taken: the caller reschedules instead of holding a send slot)."""
        bucket = self._bucket(channel)
        wait = bucket.wait_time(self._clock())
        if wait > max_wait:
            return wait
        bucket.take(self._clock())  # reserved now, so the next caller waits behind this one
        if wait > 0:
            await asyncio.sleep(wait)
        return 0.0

    def pause(self, channel: str, seconds: float) -> None:
        """Hold every send to the channel for `seconds`."""
        self._bucket(channel).pause(self._clock(), seconds)


class KeyedLocks:
    """An asyncio lock per key, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: object) -> AsyncIterator[None]:
        """Run the block while holding the key's lock (FIFO among waiters)."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
