"""Bounded in-memory record of handled event ids (the notifier issue moves it to the database)."""

from __future__ import annotations

from collections import OrderedDict


class RecentEventIds:
    """Remember the last `capacity` event ids."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def seen(self, event_id: str) -> bool:
        """Return True when the id was remembered."""
        return event_id in self._ids

    def remember(self, event_id: str) -> None:
        """Remember an id, forgetting the oldest beyond capacity."""
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
