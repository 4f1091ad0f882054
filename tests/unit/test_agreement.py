"""Panoptic quality between two masks (:mod:`ls_panoptic.agreement`) on hand-made cases whose
PQ, SQ and RQ are known exactly."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from ls_panoptic.agreement import Segments, pairwise_quality, panoptic_quality
from ls_panoptic.joint_histogram import MAX_JOINT_BINS, joint_histogram, pair_histograms
from ls_panoptic.pq import ClassCounts, average

BG, LEAF, STEM = 2, 0, 1  # background is the last class, as the conversion appends it
STUFF = frozenset({BG})
Mask = npt.NDArray[np.uint32]


def _mask(height: int = 10, width: int = 10) -> Mask:
    return np.ones((height, width), dtype=np.uint32)  # id 1: background everywhere


def test_identical_annotations_have_pq_1() -> None:
    mask = _mask()
    mask[2:5, 2:5] = 2
    mask[6:9, 1:9] = 3
    seg = Segments.of(mask, {1: BG, 2: LEAF, 3: LEAF})
    result = panoptic_quality(seg, seg, STUFF)
    assert (result.overall.pq, result.overall.sq, result.overall.rq) == (1.0, 1.0, 1.0)
    assert result.per_class[LEAF] == ClassCounts(LEAF, tp=2, iou_sum=2.0)
    assert result.things is not None and result.things.pq == 1.0
    assert result.stuff is not None and result.stuff.pq == 1.0


def test_disjoint_annotations_have_pq_0() -> None:
    a, b = _mask(), _mask()
    a[:, :5] = 2  # leaf on the left half, background on the right
    b[:, 5:] = 2  # leaf on the right half, background on the left
    result = panoptic_quality(
        Segments.of(a, {1: BG, 2: LEAF}), Segments.of(b, {1: BG, 2: LEAF}), STUFF
    )
    assert result.overall.pq == 0.0
    assert result.per_class[LEAF] == ClassCounts(LEAF, fp=1, fn=1)
    assert result.per_class[BG] == ClassCounts(BG, fp=1, fn=1)


def test_one_region_split_in_two() -> None:
    """``a`` has one leaf of 40 pixels, ``b`` the same pixels as two leaves of 30 and 10: the
    30-pixel half matches (IoU 30/40), the other is a false positive; background matches."""
    a, b = _mask(), _mask()
    a[0:4, 0:10] = 2
    b[0:3, 0:10] = 2
    b[3:4, 0:10] = 3
    result = panoptic_quality(
        Segments.of(a, {1: BG, 2: LEAF}), Segments.of(b, {1: BG, 2: LEAF, 3: LEAF}), STUFF
    )
    leaf = result.per_class[LEAF]
    assert (leaf.tp, leaf.fp, leaf.fn) == (1, 0, 1)
    assert leaf.sq == pytest.approx(0.75)
    assert leaf.rq == pytest.approx(1 / 1.5)
    assert leaf.pq == pytest.approx(0.5)
    assert result.per_class[BG].pq == 1.0
    assert result.overall.pq == pytest.approx((0.5 + 1.0) / 2)
    assert result.things is not None and result.things.pq == pytest.approx(0.5)


def test_one_missing_segment() -> None:
    """``b`` lacks one of ``a``'s two stems: RQ 1/(1 + 1/2); SQ of the stems 1; the missing
    stem's 4 pixels are background in ``b``, so the background's IoU is 84/88."""
    a = _mask()
    a[0:2, 0:2] = 2
    a[5:7, 5:7] = 3
    b = a.copy()
    b[5:7, 5:7] = 1
    result = panoptic_quality(
        Segments.of(a, {1: BG, 2: STEM, 3: STEM}), Segments.of(b, {1: BG, 2: STEM}), STUFF
    )
    stem, background = result.per_class[STEM], result.per_class[BG]
    assert (stem.tp, stem.fp, stem.fn) == (1, 1, 0)
    assert stem.pq == pytest.approx(2 / 3)
    assert background.pq == pytest.approx(92 / 96)
    assert result.overall.pq == pytest.approx((2 / 3 + 92 / 96) / 2)
    assert result.overall.sq == pytest.approx((1 + 92 / 96) / 2)
    assert result.overall.rq == pytest.approx((2 / 3 + 1) / 2)


def test_classes_absent_from_both_are_not_averaged() -> None:
    a = _mask()
    a[0:5] = 2
    seg = Segments.of(a, {1: BG, 2: LEAF})
    result = panoptic_quality(seg, seg, frozenset({BG, STEM}))
    assert set(result.per_class) == {BG, LEAF}
    assert result.overall.classes == 2


def test_a_stuff_class_is_one_segment_whatever_its_ids() -> None:
    """Two ids of the stuff class in ``a``, one in ``b``, same pixels: one match, IoU 1."""
    a, b = _mask(), _mask()
    a[5:] = 2
    result = panoptic_quality(Segments.of(a, {1: BG, 2: BG}), Segments.of(b, {1: BG}), STUFF)
    assert result.per_class == {BG: ClassCounts(BG, tp=1, iou_sum=1.0)}


def test_same_pixels_under_another_class_do_not_match() -> None:
    a = _mask()
    a[0:5] = 2
    result = panoptic_quality(
        Segments.of(a, {1: BG, 2: LEAF}), Segments.of(a, {1: BG, 2: STEM}), STUFF
    )
    assert result.per_class[LEAF] == ClassCounts(LEAF, fp=1)
    assert result.per_class[STEM] == ClassCounts(STEM, fn=1)


def test_iou_of_exactly_one_half_is_no_match() -> None:
    a, b = _mask(), _mask()
    a[0:4] = 2  # 40 pixels
    b[0:2] = 2  # 20 of them: IoU 0.5
    result = panoptic_quality(
        Segments.of(a, {1: BG, 2: LEAF}), Segments.of(b, {1: BG, 2: LEAF}), STUFF
    )
    assert result.per_class[LEAF].tp == 0


def test_void_pixels_leave_the_union_and_excuse_unmatched_segments() -> None:
    """``b`` is void over rows 0-4; ``a``'s leaf there (wholly on void) is not a false positive,
    and the background's union leaves out the void: IoU 50/50."""
    a, b = _mask(), _mask()
    a[0:3] = 2
    b[0:5] = 0
    result = panoptic_quality(Segments.of(a, {1: BG, 2: LEAF}), Segments.of(b, {1: BG}), STUFF)
    assert result.per_class == {BG: ClassCounts(BG, tp=1, iou_sum=1.0)}


def test_pq_is_symmetric() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(1, 6, (20, 30)).astype(np.uint32)
    b = a.copy()
    b[rng.random(a.shape) < 0.3] = 1
    classes = {1: BG, 2: LEAF, 3: LEAF, 4: STEM, 5: STEM}
    sa, sb = Segments.of(a, classes), Segments.of(b, classes)
    ab, ba = panoptic_quality(sa, sb, STUFF), panoptic_quality(sb, sa, STUFF)
    assert ab.overall == ba.overall
    assert {c: (n.tp, n.fp, n.fn) for c, n in ab.per_class.items()} == {
        c: (n.tp, n.fn, n.fp) for c, n in ba.per_class.items()
    }


def test_joint_histogram_paths_agree() -> None:
    """The 8-bit ``calcHist`` path and the ``bincount`` path count the same pairs."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 200, (300, 500)).astype(np.uint8)
    b = rng.integers(0, 90, (300, 500)).astype(np.uint8)
    fast = joint_histogram(a, b, 200, 90)
    slow = joint_histogram(a.astype(np.uint32), b.astype(np.uint32), 200, 90)
    assert fast.dtype == np.int64 and (fast == slow).all() and fast.sum() == a.size


def test_three_masks_are_counted_in_one_pass_with_the_same_counts() -> None:
    rng = np.random.default_rng(5)
    masks = [rng.integers(0, n, (70, 90)).astype(np.uint8) for n in (40, 60, 30)]
    sizes = [40, 60, 30]
    pairs = [(0, 1), (2, 0), (1, 2)]
    together = pair_histograms(masks, sizes, pairs)
    for i, j in pairs:
        assert (together[(i, j)] == joint_histogram(masks[i], masks[j], sizes[i], sizes[j])).all()
    assert MAX_JOINT_BINS >= 40 * 60 * 30


def test_pairwise_quality_equals_pair_by_pair() -> None:
    rng = np.random.default_rng(8)
    classes = {1: BG, 2: LEAF, 3: LEAF, 4: STEM}
    segments = [
        Segments.of(rng.integers(1, 5, (30, 40)).astype(np.uint32), classes) for _ in range(4)
    ]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = [panoptic_quality(segments[i], segments[j], STUFF) for i, j in pairs]
    assert pairwise_quality(segments, pairs, STUFF) == expected
    assert pairwise_quality(segments, [(0, 3), (1, 3), (2, 3), (0, 1)], STUFF)[3] == expected[0]


def test_more_than_255_ids_take_the_wide_path() -> None:
    a = np.arange(1, 301, dtype=np.uint32).repeat(4).reshape(30, 40)
    classes = {i: LEAF for i in range(1, 301)}
    seg = Segments.of(a, classes)
    assert seg.ids.dtype == np.uint32
    assert panoptic_quality(seg, seg, STUFF).per_class[LEAF].tp == 300


def test_bad_masks_are_refused() -> None:
    with pytest.raises(ValueError, match="outside inst2class"):
        Segments.of(np.full((2, 2), 5, dtype=np.uint32), {1: BG})
    a = np.array([[1, 2]], dtype=np.uint32)
    with pytest.raises(ValueError, match="id 2 has no class"):
        panoptic_quality(Segments.of(a, {1: BG, 3: LEAF}), Segments.of(a, {1: BG, 3: LEAF}), STUFF)
    with pytest.raises(ValueError, match="shape"):
        panoptic_quality(Segments.of(a, {1: BG, 2: BG}), Segments.of(a.T, {1: BG, 2: BG}), STUFF)


def test_average_of_nothing_is_none() -> None:
    assert average([ClassCounts(LEAF)]) is None
