"""Composition: overlap policies, stuff merging, background, dense deterministic ids."""

from __future__ import annotations

import numpy as np
import pytest

from ls_panoptic.compose import Layer, Scratch, compose

H, W = 8, 10
BG = 3  # leaf=0, stem=1, tomato=2, background=3


class BoxShape:
    """A rectangle of pixels [r0:r1, c0:c1] (a real Shape implementation, for tests)."""

    def __init__(self, r0: int, r1: int, c0: int, c1: int) -> None:
        self.box = (slice(r0, r1), slice(c0, c1))

    def area(self) -> int:
        return int(np.zeros((H, W), dtype=bool)[self.box].size)

    def paint(self, canvas: np.ndarray, value: int) -> None:
        canvas[self.box] = value


def _layer(rid: str, cls: int, order: int, box: tuple[int, int, int, int]) -> Layer:
    return Layer(rid, cls, order, BoxShape(*box))


def _check_contract(mask: np.ndarray, inst2class: dict[int, int]) -> None:
    assert mask.dtype == np.uint32 and mask.shape == (H, W) and mask.flags.c_contiguous
    assert set(np.unique(mask).tolist()) == set(inst2class)
    assert sorted(inst2class) == list(range(1, len(inst2class) + 1))
    assert all(type(k) is int and type(v) is int for k, v in inst2class.items())


def test_empty_annotation_is_one_background_segment() -> None:
    comp = compose([], height=H, width=W, background_class=BG)
    _check_contract(comp.mask, comp.inst2class)
    assert comp.inst2class == {1: BG} and (comp.mask == 1).all()


def test_last_region_is_on_top_by_default() -> None:
    layers = [_layer("a", 0, 0, (0, 4, 0, 4)), _layer("b", 2, 1, (2, 6, 2, 6))]
    comp = compose(layers, height=H, width=W, background_class=BG)
    _check_contract(comp.mask, comp.inst2class)
    assert comp.inst2class == {1: 0, 2: 2, 3: BG}
    assert comp.mask[3, 3] == 2 and comp.mask[0, 0] == 1 and comp.mask[7, 9] == 3
    assert comp.overlapped_pixels == 4 and comp.covered_pixels == 16 + 16 - 4


def test_first_policy_keeps_earlier_region_on_top() -> None:
    layers = [_layer("a", 0, 0, (0, 4, 0, 4)), _layer("b", 2, 1, (2, 6, 2, 6))]
    comp = compose(layers, height=H, width=W, background_class=BG, overlap="first")
    assert comp.mask[3, 3] == 1


def test_smallest_policy_puts_smaller_area_on_top_whatever_the_order() -> None:
    small_first = [_layer("s", 0, 0, (2, 3, 2, 3)), _layer("big", 1, 1, (0, 8, 0, 10))]
    comp = compose(small_first, height=H, width=W, background_class=BG, overlap="smallest")
    assert comp.inst2class[int(comp.mask[2, 2])] == 0
    assert comp.inst2class[int(comp.mask[0, 0])] == 1
    _check_contract(comp.mask, comp.inst2class)
    assert BG not in comp.inst2class.values()  # fully covered: no background segment


def test_fully_hidden_region_is_dropped_and_has_no_id() -> None:
    layers = [_layer("hidden", 0, 0, (1, 2, 1, 2)), _layer("cover", 1, 1, (0, 4, 0, 4))]
    comp = compose(layers, height=H, width=W, background_class=BG)
    assert comp.dropped == ["hidden"]
    _check_contract(comp.mask, comp.inst2class)
    assert comp.inst2class == {1: 1, 2: BG}


def test_stuff_regions_merge_and_things_stay_apart() -> None:
    layers = [
        _layer("l1", 0, 0, (0, 2, 0, 2)),
        _layer("l2", 0, 1, (5, 7, 5, 7)),
        _layer("t1", 2, 2, (0, 2, 5, 7)),
        _layer("t2", 2, 3, (5, 7, 0, 2)),
    ]
    comp = compose(layers, height=H, width=W, background_class=BG, stuff=frozenset({0}))
    _check_contract(comp.mask, comp.inst2class)
    assert comp.mask[0, 0] == comp.mask[5, 5]  # leaf is stuff: one segment
    assert comp.mask[0, 5] != comp.mask[5, 0]  # tomatoes are things: two segments
    assert sorted(comp.inst2class.values()) == [0, 2, 2, BG]


def test_regions_labelled_background_merge_with_uncovered_pixels() -> None:
    layers = [_layer("bg", BG, 0, (0, 8, 0, 5)), _layer("t", 2, 1, (0, 2, 0, 2))]
    comp = compose(layers, height=H, width=W, background_class=BG)
    _check_contract(comp.mask, comp.inst2class)
    assert list(comp.inst2class.values()).count(BG) == 1
    assert comp.mask[7, 0] == comp.mask[7, 9]


def test_ids_follow_result_order_not_paint_order_and_are_deterministic() -> None:
    layers = [_layer("a", 1, 0, (0, 3, 0, 3)), _layer("b", 0, 1, (4, 8, 4, 8))]
    one = compose(layers, height=H, width=W, background_class=BG, overlap="smallest")
    two = compose(layers, height=H, width=W, background_class=BG, overlap="smallest")
    assert one.inst2class == {1: 1, 2: 0, 3: BG}
    assert one.mask.tobytes() == two.mask.tobytes()


def test_reused_scratch_gives_the_same_result() -> None:
    scratch = Scratch()
    scratch.get("canvas", (H, W), np.uint8).fill(99)  # stale content must not leak
    scratch.get("mask", (H, W), np.uint32).fill(77)
    layers = [_layer("a", 1, 0, (0, 3, 0, 3))]
    fresh = compose(layers, height=H, width=W, background_class=BG)
    reused = compose(layers, height=H, width=W, background_class=BG, scratch=scratch)
    np.testing.assert_array_equal(fresh.mask, reused.mask)
    assert fresh.inst2class == reused.inst2class


@pytest.mark.parametrize("count", [254, 255, 300])
def test_many_regions_use_wider_canvases_with_the_same_contract(count: int) -> None:
    # One-pixel regions along the rows of a 20 x 20 image: 254 fit a uint8 canvas with the
    # background, 255 and 300 need uint16 and ids above 255.
    size = 20
    layers = [Layer(f"r{i}", i % 3, i, _Pixel(i // size, i % size)) for i in range(count)]
    comp = compose(layers, height=size, width=size, background_class=BG)
    assert comp.mask.dtype == np.uint32
    assert set(np.unique(comp.mask).tolist()) == set(comp.inst2class)
    expected = count + (1 if count < size * size else 0)
    assert len(comp.inst2class) == expected
    assert comp.mask[(count - 1) // size, (count - 1) % size] == count


class _Pixel:
    def __init__(self, row: int, col: int) -> None:
        self.row, self.col = row, col

    def area(self) -> int:
        return 1

    def paint(self, canvas: np.ndarray, value: int) -> None:
        canvas[self.row, self.col] = value


def test_unknown_overlap_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap must be"):
        compose(
            [_layer("a", 1, 0, (0, 1, 0, 1))],
            height=H,
            width=W,
            background_class=BG,
            overlap="biggest",
        )  # type: ignore[arg-type]
