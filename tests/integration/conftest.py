"""Integration tests run against a real Redis: fixtures ``redis_url`` and ``redis_client`` come
from ``tests/conftest.py`` (one database, flushed around each test; see there)."""
