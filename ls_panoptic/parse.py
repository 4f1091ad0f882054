"""Label Studio ``result`` lists -> :class:`~ls_panoptic.model.Region` objects.

A region may arrive as several result items sharing one ``id``: a geometry item from a tool
(``<Polygon>``, ``<Brush>``, ...) plus a ``labels`` item from a ``<Labels>`` control, or one
``*labels`` item carrying both. Items are grouped by ``id``; the region's painter's order is
the position of its first item. Items without an ``id`` (JSON_MIN) are regions of their own.

Result items that describe no area (keypoints, choices, text, relations, ...) are ignored
and counted by ``type``.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import RegionError
from .model import Region, RegionKind

__all__ = ["ParsedResult", "infer_type", "parse_result"]

_KIND_OF_TYPE: dict[str, RegionKind] = {
    "brushlabels": "brush",
    "brush": "brush",
    "bitmasklabels": "bitmask",
    "bitmask": "bitmask",
    "polygonlabels": "polygon",
    "polygon": "polygon",
    "rectanglelabels": "rectangle",
    "rectangle": "rectangle",
    "ellipselabels": "ellipse",
    "ellipse": "ellipse",
}
# Which value keys reveal a kind when an item has no "type" (JSON_MIN rows); all must be present.
_TYPE_BY_KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("rle",), "brushlabels"),
    (("imageDataURL",), "bitmasklabels"),
    (("points",), "polygonlabels"),
    (("radiusX", "radiusY"), "ellipselabels"),
    (("width", "height"), "rectanglelabels"),
    (("x", "y"), "keypoint"),
)


@dataclass
class ParsedResult:
    """What one annotation's ``result`` holds.

    Attributes:
        regions: area regions in painter's order (``order`` ascending).
        ignored: non-area result items by ``type``.
        warnings: human-readable notes (several labels on one region, ...).
    """

    regions: list[Region] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)


def infer_type(value: Mapping[str, Any]) -> str:
    """Guess a result ``type`` from the keys of a ``value`` (for items that lack one).

    A ``<kind>labels`` key names the type outright (``keypointlabels`` too, so keypoints are
    never mistaken for rectangles); otherwise the geometry keys decide.
    """
    for key in value:
        if key.endswith("labels") and key != "labels":
            return key
    for keys, type_ in _TYPE_BY_KEYS:
        if all(key in value for key in keys):
            return type_
    return "unknown"


def _labels_of(value: Mapping[str, Any]) -> list[str]:
    labels: list[str] = []
    for key, item in value.items():
        if key == "labels" or key.endswith("labels"):
            if isinstance(item, list):
                labels.extend(str(label) for label in item)
            elif isinstance(item, str):
                labels.append(item)
    return labels


def _size_of(item: Mapping[str, Any], task_id: int | None, region_id: str) -> tuple[int, int]:
    sizes = []
    for name in ("original_height", "original_width"):
        raw = item.get(name)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not _finite(raw):
            raise RegionError(task_id, region_id, f"{name} is missing or not a number ({raw!r})")
        if raw != int(raw) or raw <= 0:
            raise RegionError(task_id, region_id, f"{name} must be a positive integer, got {raw!r}")
        sizes.append(int(raw))
    return sizes[0], sizes[1]


def _finite(number: float) -> bool:
    """``math.isfinite`` that takes ints of any size (it raises past the float range)."""
    return isinstance(number, int) or math.isfinite(number)


def _rotation(raw: object) -> float:
    """``image_rotation`` in degrees; NaN (refused later) when it is not a usable number."""
    if isinstance(raw, (int, float)) and abs(raw) <= sys.float_info.max:  # not NaN, inf, 10**400
        return float(raw)
    return math.nan


@dataclass
class _Group:
    order: int
    items: list[Mapping[str, Any]] = field(default_factory=list)


def _group(result: Sequence[Any], task_id: int | None, ignored: Counter[str]) -> dict[str, _Group]:
    groups: dict[str, _Group] = {}
    for order, item in enumerate(result):
        if not isinstance(item, Mapping) or not isinstance(item.get("value", {}), Mapping):
            raise RegionError(task_id, f"#{order}", "result item is not an object with a 'value'")
        value = item.get("value", {})
        type_ = str(item.get("type") or infer_type(value))
        if type_ not in _KIND_OF_TYPE and type_ != "labels":
            ignored[type_] += 1
            continue
        region_id = str(item.get("id") or f"#{order}")
        groups.setdefault(region_id, _Group(order)).items.append(item)
    return groups


def _region(region_id: str, group: _Group, task_id: int | None, warnings: list[str]) -> Region:
    geometry = [i for i in group.items if str(i.get("type") or "") != "labels"]
    source = geometry[0] if geometry else group.items[0]
    value: Mapping[str, Any] = source.get("value", {})
    type_ = str(source.get("type") or infer_type(value))
    if type_ == "labels":  # a <Labels> item alone: its value carries the geometry too
        type_ = infer_type({k: v for k, v in value.items() if k != "labels"})
    if type_ not in _KIND_OF_TYPE:
        raise RegionError(task_id, region_id, "labels without any geometry")
    labels: list[str] = []
    for item in group.items:
        labels.extend(lab for lab in _labels_of(item.get("value", {})) if lab not in labels)
    if not labels:
        raise RegionError(task_id, region_id, "region has no label")
    if len(labels) > 1:
        warnings.append(f"region {region_id} has labels {labels}: using {labels[0]!r}")
    height, width = _size_of(source, task_id, region_id)
    return Region(
        id=region_id,
        kind=_KIND_OF_TYPE[type_],
        label=labels[0],
        order=group.order,
        height=height,
        width=width,
        value=value,
        image_rotation=_rotation(source.get("image_rotation") or 0),
    )


def parse_result(result: Sequence[Any], task_id: int | None = None) -> ParsedResult:
    """Turn one annotation's ``result`` list into regions.

    Raises:
        RegionError: an item is malformed (names the task and region id).
    """
    if not isinstance(result, Sequence) or isinstance(result, (str, bytes)):
        raise RegionError(task_id, "-", "annotation 'result' is not a list")
    parsed = ParsedResult()
    groups = _group(result, task_id, parsed.ignored)
    for region_id, group in groups.items():
        parsed.regions.append(_region(region_id, group, task_id, parsed.warnings))
    parsed.regions.sort(key=lambda region: region.order)
    return parsed
