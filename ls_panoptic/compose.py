"""Regions -> one panoptic mask: overlap, stuff merging, background and dense instance ids.

Layers are painted, in an order set by the overlap policy, as their layer number into the
narrowest unsigned canvas that holds them (``uint8`` for up to 255 regions; 0 = no region).
One histogram then tells each layer's visible pixels, and one lookup table turns layer numbers
into instance ids::

    canvas (uint8, H x W)  --lut[layer] -->  panoptic_mask (uint32, H x W)

Instance ids are ``1..N``, dense and deterministic: segments are numbered in ``result`` order
of their first visible region, and the background segment (uncovered pixels plus regions
labelled background) comes last. Every id in the mask is a key of ``inst2class`` and vice versa.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .rasterize import Shape

__all__ = ["Composition", "Layer", "Scratch", "compose", "paint_order"]

Overlap = Literal["last", "first", "smallest"]
_EXACT_FLOAT32 = 1 << 24  # float32 histogram counts are exact below this


@dataclass(frozen=True)
class Layer:
    """One region ready to paint: its id, class, ``result`` position and shape."""

    region_id: str
    class_id: int
    order: int
    shape: Shape


@dataclass
class Composition:
    """The composed mask and what composition did.

    Attributes:
        mask: ``uint32`` ``(height, width)``, C-contiguous, ids ``1..N``.
        inst2class: ``{instance_id: class_id}``, plain ints.
        dropped: region ids left with no visible pixel.
        overlapped_pixels: pixels hidden under another region (sum of areas minus covered).
        covered_pixels: pixels covered by at least one region.
    """

    mask: npt.NDArray[Any]
    inst2class: dict[int, int]
    dropped: list[str] = field(default_factory=list)
    overlapped_pixels: int = 0
    covered_pixels: int = 0


def paint_order(layers: Sequence[Layer], overlap: Overlap, areas: Sequence[int]) -> list[int]:
    """Indices of ``layers`` in painting order: the last painted ends on top."""
    indices = range(len(layers))
    if overlap == "last":
        return sorted(indices, key=lambda i: layers[i].order)
    if overlap == "first":
        return sorted(indices, key=lambda i: -layers[i].order)
    if overlap == "smallest":  # larger first, so smaller regions end on top; ties: later on top
        return sorted(indices, key=lambda i: (-areas[i], layers[i].order))
    raise ValueError(f"overlap must be 'last', 'first' or 'smallest', not {overlap!r}")


def _segment_ids(
    layers: Sequence[Layer],
    visible: npt.NDArray[Any],
    stuff: frozenset[int],
    background_class: int,
) -> tuple[npt.NDArray[Any], dict[int, int]]:
    """Lookup table layer number -> instance id, and inst2class. ``visible`` indexed by layer+1."""
    lut = np.zeros(len(layers) + 1, dtype=np.uint32)
    inst2class: dict[int, int] = {}
    stuff_ids: dict[int, int] = {}
    background_layers = [0] if visible[0] else []
    for number in sorted(range(1, len(layers) + 1), key=lambda n: layers[n - 1].order):
        layer = layers[number - 1]
        if not visible[number]:
            continue
        if layer.class_id == background_class:
            background_layers.append(number)
            continue
        if layer.class_id in stuff and layer.class_id in stuff_ids:
            lut[number] = stuff_ids[layer.class_id]
            continue
        instance = len(inst2class) + 1
        inst2class[instance] = int(layer.class_id)
        lut[number] = instance
        if layer.class_id in stuff:
            stuff_ids[layer.class_id] = instance
    if background_layers:
        instance = len(inst2class) + 1
        inst2class[instance] = int(background_class)
        lut[background_layers] = instance
    return lut, inst2class


class Scratch:
    """Reusable buffers for :func:`compose`: refilling memory is cheaper than fresh pages.

    With a scratch, the returned mask lives in the scratch's output buffer and is only valid
    until the next :func:`compose` call with the same scratch (batch conversion writes each
    entry before converting the next one).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, npt.NDArray[Any]] = {}

    def get(self, name: str, shape: tuple[int, int], dtype: type[np.generic]) -> npt.NDArray[Any]:
        """An uninitialised ``(height, width)`` buffer of ``dtype``, reused when it fits."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = np.empty(shape, dtype=dtype)
            self._buffers[name] = buffer
        return buffer


def _canvas_dtype(layers: int) -> type[np.unsignedinteger[Any]]:
    """The narrowest canvas that holds layer numbers ``0..layers``."""
    if layers <= np.iinfo(np.uint8).max:
        return np.uint8
    if layers <= np.iinfo(np.uint16).max:
        return np.uint16
    return np.uint32


def _visible_counts(canvas: npt.NDArray[Any], layers: int) -> npt.NDArray[Any]:
    """``int64`` ``(layers + 1,)``: pixels showing each layer number (0 = uncovered)."""
    if canvas.dtype == np.uint8 and canvas.size < _EXACT_FLOAT32:
        # OpenCV's histogram reads uint8 in place (counts are float32, exact below 2**24).
        hist = cv2.calcHist([canvas], [0], None, [256], [0, 256])
        return hist[: layers + 1, 0].astype(np.int64)
    return np.bincount(canvas.reshape(-1), minlength=layers + 1)


def _apply_lut(
    canvas: npt.NDArray[Any], lut: npt.NDArray[Any], out: npt.NDArray[Any] | None
) -> npt.NDArray[Any]:
    """``uint32`` mask ``lut[canvas]``, written into ``out`` when given."""
    if out is None:
        out = np.empty(canvas.shape, dtype=np.uint32)
    if canvas.dtype == np.uint8:
        # OpenCV's LUT writes the table's depth directly: int32 ids (< 2**31) into the uint32
        # buffer, one pass, no temporary.
        table = np.zeros(256, dtype=np.int32)
        table[: len(lut)] = lut
        cv2.LUT(canvas, table, dst=out.view(np.int32))
    else:
        np.take(lut, canvas, out=out)
    return out


def compose(
    layers: Sequence[Layer],
    *,
    height: int,
    width: int,
    background_class: int,
    stuff: frozenset[int] = frozenset(),
    overlap: Overlap = "last",
    scratch: Scratch | None = None,
) -> Composition:
    """Paint ``layers`` into one panoptic mask.

    Args:
        layers: regions with their class ids; ``order`` is their position in ``result``.
        height, width: mask shape.
        background_class: class id of uncovered pixels; regions of this class merge with them.
        stuff: class ids whose regions merge into one segment.
        overlap: ``last`` (later in ``result`` on top), ``first``, or ``smallest`` on top.
        scratch: reusable buffers; the mask then lives in it (see :class:`Scratch`).

    Returns:
        The composition; ``mask`` is ``uint32`` ``(height, width)``, C-contiguous.
    """
    shape = (height, width)
    dtype = _canvas_dtype(len(layers))
    canvas = scratch.get("canvas", shape, dtype) if scratch else np.empty(shape, dtype=dtype)
    canvas.fill(0)
    areas = [layer.shape.area() for layer in layers]
    for index in paint_order(layers, overlap, areas):
        layers[index].shape.paint(canvas, index + 1)
    visible = _visible_counts(canvas, len(layers))
    lut, inst2class = _segment_ids(layers, visible > 0, stuff, background_class)
    out = scratch.get("mask", shape, np.uint32) if scratch else None
    mask = _apply_lut(canvas, lut, out)
    covered = int(height * width - visible[0])
    return Composition(
        mask=mask,
        inst2class=inst2class,
        dropped=[layer.region_id for n, layer in enumerate(layers, 1) if not visible[n]],
        overlapped_pixels=int(sum(areas)) - covered,
        covered_pixels=covered,
    )
