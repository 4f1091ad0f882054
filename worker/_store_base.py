"""Plumbing shared by the store's parts: the client, the key schema, optimistic transactions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import redis
from redis.client import Pipeline

from ._store_codec import StoreError
from .keys import Keys

__all__ = ["DEFAULT_GRACE_SECONDS", "MAX_ATTEMPTS", "StoreBase", "utc_now"]

DEFAULT_GRACE_SECONDS = 3600  # how long a superseded blob outlives its replacement
MAX_ATTEMPTS = 100  # optimistic transactions retried before giving up
_T = TypeVar("_T")


def utc_now() -> str:
    """Now, UTC, ISO 8601 with microseconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


class StoreBase:
    """Holds the client (bytes replies), the key schema and the grace period."""

    def __init__(
        self, redis: redis.Redis, keys: Keys, grace_seconds: int = DEFAULT_GRACE_SECONDS
    ) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the store needs a Redis client with decode_responses=False")
        if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int):
            raise ValueError(f"grace_seconds must be an integer, not {grace_seconds!r}")
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds must be >= 0, not {grace_seconds}")
        self._redis = redis
        self._keys = keys
        self.grace_seconds = grace_seconds

    def _transact(self, watch: list[str], body: Callable[[Pipeline], _T]) -> _T:
        """Run ``body`` under ``WATCH watch`` until no other writer interferes.

        ``body`` reads in immediate mode, then either returns (nothing to write) or calls
        ``pipe.multi()`` and queues its writes, which run as one ``MULTI``/``EXEC``. When a
        watched key changed meanwhile, ``EXEC`` fails and ``body`` runs again on fresh data.

        Raises:
            StoreError: still conflicting after ``MAX_ATTEMPTS`` attempts.
        """
        with self._redis.pipeline() as pipe:
            for _attempt in range(MAX_ATTEMPTS):
                try:
                    pipe.watch(*watch)  # type: ignore[no-untyped-call]
                    result = body(pipe)
                    if pipe.explicit_transaction:
                        pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise StoreError(f"{watch[0]}: gave up after {MAX_ATTEMPTS} conflicting writes")
