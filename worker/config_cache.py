"""The label-config cache: how long a task's sync may use the label config the store holds.

``keys.config_checked(project)`` holds the hash of the config last fetched from Label Studio and
expires after ``LS_PANOPTIC_CONFIG_TTL_S``. While it lives and matches the store's project
record, a sync uses the stored config instead of fetching it again
(:func:`worker.reconcile.project_labels`). Every fetch renews it; enqueueing a rebuild drops it,
so syncs that start before the rebuild fetch the config again too. A TTL of 0 turns it off.
"""

from __future__ import annotations

import redis

from .keys import Keys

__all__ = ["ConfigCache"]


class ConfigCache:
    """Reads, renews and drops ``keys.config_checked``: nothing else touches that key."""

    def __init__(self, redis: redis.Redis, keys: Keys, ttl: float) -> None:
        self._redis = redis
        self._keys = keys
        self.ttl = ttl

    def remember(self, project: int, digest: str) -> None:
        """The config of hash ``digest`` was just fetched: the stored one is current for the
        next ``ttl`` seconds of syncs."""
        if self.ttl > 0:
            key = self._keys.config_checked(project)
            self._redis.set(key, digest, px=max(1, round(self.ttl * 1000)))

    def fetched_hash(self, project: int) -> str | None:
        """The hash of the config fetched less than ``ttl`` seconds ago, ``None`` when none
        was (or the cache was dropped, or is off)."""
        if self.ttl <= 0:
            return None
        checked = self._redis.get(self._keys.config_checked(project))
        if checked is None:
            return None
        return checked.decode() if isinstance(checked, bytes) else str(checked)

    def forget(self, project: int) -> None:
        """Drop it: the next sync of the project fetches the config (a rebuild is coming)."""
        self._redis.delete(self._keys.config_checked(project))
