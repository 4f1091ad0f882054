"""The agreement's PQ, SQ and RQ equal torchmetrics' ``PanopticQuality`` (an independent
implementation) to 1e-6 on seeded random masks: overlapping blobs, split and merged segments,
stuff given as several ids, and void."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ls_panoptic.agreement import Segments, panoptic_quality
from tests.torch_pq import assert_same_as_torchmetrics

CLASSES = (0, 1, 2, 3, 4)
STUFF = frozenset({3, 4})  # 4 plays background


def _blobs(rng: np.random.Generator, shape: tuple[int, int], count: int) -> npt.NDArray[np.uint32]:
    """Rectangles painted over a background of id 1, later ones on top."""
    mask = np.ones(shape, dtype=np.uint32)
    for instance in range(2, count + 2):
        top, left = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        height, width = rng.integers(3, shape[0] // 2), rng.integers(3, shape[1] // 2)
        mask[top : top + height, left : left + width] = instance
    return mask


def _perturbed(rng: np.random.Generator, mask: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Another annotator's take: shifted by a few pixels, some segments merged, some noise."""
    out = np.roll(mask, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1)).copy()
    ids = np.unique(out)
    merge = rng.choice(ids, size=min(2, len(ids)), replace=False)
    out[out == merge[0]] = merge[-1]
    out[rng.random(out.shape) < 0.02] = 1
    return out


def _classes(rng: np.random.Generator, mask: npt.NDArray[np.uint32]) -> dict[int, int]:
    ids = [int(i) for i in np.unique(mask)]
    return {i: 4 if i == 1 else int(rng.choice(CLASSES)) for i in ids}


@pytest.mark.parametrize("seed", range(12))
def test_random_masks_match_torchmetrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _blobs(rng, (60, 80), int(rng.integers(1, 25)))
    b = _perturbed(rng, a) if seed % 3 else _blobs(rng, (60, 80), int(rng.integers(1, 25)))
    classes_a = _classes(rng, a)
    classes_b = {i: classes_a.get(i, int(rng.choice(CLASSES))) for i in np.unique(b).tolist()}
    if seed % 4 == 0:
        b[rng.random(b.shape) < 0.1] = 0  # void in b
        a[:5] = 0  # and in a
    ours = panoptic_quality(Segments.of(a, classes_a), Segments.of(b, classes_b), STUFF)
    assert_same_as_torchmetrics(ours, (a, classes_a), (b, classes_b), CLASSES, STUFF)


def test_more_than_255_ids_match_torchmetrics() -> None:
    rng = np.random.default_rng(99)
    a = _blobs(rng, (120, 160), 300)
    b = _perturbed(rng, a)
    classes_a = _classes(rng, a)
    classes_b = {i: classes_a.get(i, 0) for i in np.unique(b).tolist()}
    ours = panoptic_quality(Segments.of(a, classes_a), Segments.of(b, classes_b), STUFF)
    assert_same_as_torchmetrics(ours, (a, classes_a), (b, classes_b), CLASSES, STUFF)
