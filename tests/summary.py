"""Lines the test session prints at its end (``pytest_terminal_summary`` in tests/conftest.py):
how long the real servers took to start, where their logs are."""

from __future__ import annotations

import pytest

__all__ = ["SUMMARY", "summarise"]

SUMMARY = pytest.StashKey[list[str]]()


def summarise(config: pytest.Config, line: str) -> None:
    """Add ``line`` to the session's closing summary."""
    config.stash.setdefault(SUMMARY, []).append(line)
