"""Previews: the mask over the photo, and a legend naming the classes shown."""

from __future__ import annotations

import numpy as np

from ls_panoptic.preview import _class_rgb, render_preview

ID2LABEL = {0: "leaf", 1: "stem", 2: "tomato", 3: "background"}


def scene() -> tuple[np.ndarray, dict[int, int]]:
    mask = np.full((120, 200), 4, dtype=np.uint32)  # 4: background
    mask[10:50, 10:60] = 1
    mask[60:100, 80:150] = 2
    mask[20:40, 160:190] = 3
    return mask, {1: 0, 2: 0, 3: 1, 4: 3}


def colours(picture: object) -> set[tuple[int, int, int]]:
    pixels = np.asarray(picture).reshape(-1, 3)
    return {tuple(int(v) for v in p) for p in np.unique(pixels, axis=0)}


def test_without_names_the_preview_is_the_mask_size_and_colours_each_instance() -> None:
    mask, inst2class = scene()
    picture = render_preview(mask, inst2class, background_id=3)
    assert picture.size == (200, 120)
    inside = np.asarray(picture)
    assert tuple(inside[30, 30]) != tuple(inside[5, 5])  # leaf over the grey canvas
    assert tuple(inside[30, 30]) != tuple(inside[30, 175])  # leaf and stem differ


def test_the_legend_names_the_classes_shown_with_their_colours() -> None:
    mask, inst2class = scene()
    picture = render_preview(mask, inst2class, background_id=3, id2label=ID2LABEL)
    assert picture.width == 200 and picture.height > 120
    assert np.array_equal(
        np.asarray(picture)[:120], np.asarray(render_preview(mask, inst2class, 3))
    )
    legend = colours(picture.crop((0, 120, 200, picture.height)))
    assert _class_rgb(0) in legend and _class_rgb(1) in legend  # leaf, stem swatches
    assert _class_rgb(2) not in legend  # tomato is not in this image


def test_a_long_legend_wraps_within_the_width() -> None:
    mask = np.arange(1, 13, dtype=np.uint32).repeat(10).reshape(1, 120).repeat(40, axis=0)
    inst2class = {i: i - 1 for i in range(1, 13)}
    id2label = {i: f"class-with-a-long-name-{i}" for i in range(12)}
    one_class = render_preview(np.ones((40, 120), np.uint32), {1: 0}, 99, id2label={0: "a"})
    wrapped = render_preview(mask, inst2class, 99, id2label=id2label)
    assert wrapped.width == 120
    assert wrapped.height - 40 > 3 * (one_class.height - 40)  # several lines, not one
