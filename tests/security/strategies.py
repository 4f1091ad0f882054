"""Hypothesis strategies shared by the fuzz tests of this folder."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["json_values"]


def json_values(
    max_text: int, max_items: int, max_key: int, max_leaves: int
) -> st.SearchStrategy[Any]:
    """Any JSON value: null, booleans, integers, floats (NaN and infinities too) and strings of
    up to ``max_text`` characters, nested in lists and objects of up to ``max_items`` items
    (keys of up to ``max_key`` characters), ``max_leaves`` scalars at most."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=max_text)
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=max_items)
            | st.dictionaries(st.text(max_size=max_key), inner, max_size=max_items)
        ),
        max_leaves=max_leaves,
    )
