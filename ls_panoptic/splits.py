"""Splits of a folder output (``--split validation=0.1 --seed N``).

An image's split is a pure function of its key and the seed (:func:`split_of`): SHA-256 of
both, read as a uniform draw in [0, 1), placed on the fractions in the order given, ``train``
past them. Nothing else counts, so an image stays in its split when others are added to the
project and the export is converted again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

__all__ = ["DEFAULT_SPLIT", "parse_splits", "split_of"]

#: the split of every image that no ``--split`` fraction takes
DEFAULT_SPLIT = "train"


def parse_splits(specs: tuple[str, ...] | list[str]) -> dict[str, float]:
    """``["validation=0.1"]`` -> ``{"validation": 0.1}``; the rest of the images is ``train``.

    Raises:
        ValueError: a spec not ``NAME=FRACTION``, a fraction outside (0, 1), fractions adding
            up to 1 or more, a repeated name, or the name ``train``.
    """
    splits: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not sep or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{spec!r}: write NAME=FRACTION, e.g. validation=0.1")
        if not 0 < fraction < 1:
            raise ValueError(f"{spec!r}: the fraction must be between 0 and 1, e.g. 0.1")
        if name == DEFAULT_SPLIT or name in splits:
            raise ValueError(f"{spec!r}: {name!r} is given twice ({DEFAULT_SPLIT} takes the rest)")
        splits[name] = fraction
    if sum(splits.values()) >= 1:
        raise ValueError(f"the fractions add up to 1 or more, leaving no {DEFAULT_SPLIT} images")
    return splits


def split_of(key: str, splits: Mapping[str, float], seed: int = 0) -> str:
    """The split of image ``key``: a uniform draw in [0, 1) from SHA-256 of the seed and key,
    placed on the fractions in the order given; ``train`` past them. It depends on nothing
    else, so adding images never moves one from its split."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, fraction in splits.items():
        edge += fraction
        if draw < edge:
            return name
    return DEFAULT_SPLIT
