"""Result items: their types, their labels, and how they group into regions.

Rules (from what Label Studio and the tools around it write):

- Items sharing an ``id`` are one region: a tool's geometry item plus a ``<Labels>`` item
  that repeats the geometry, or one ``*labels`` item carrying both. The region's painter's order
  is the position of its first item.
- Items without ``id`` (JSON_MIN, some ML backends) are groups of their own, except that an
  id-less item from one control joins an earlier id-less item from another control with the same
  geometry: JSON_MIN repeats a tool region under the ``<Labels>`` control's name.
- An item without ``type`` (JSON_MIN) is typed by its value's keys (:func:`infer_type`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import RegionError
from .model import RegionKind

__all__ = [
    "KIND_OF_TYPE",
    "Group",
    "Grouper",
    "area_type",
    "group_items",
    "infer_type",
    "labels_of",
    "not_area_type",
    "type_of",
]

KIND_OF_TYPE: dict[str, RegionKind] = {
    "brushlabels": "brush",
    "brush": "brush",
    "magicwand": "brush",  # the magic-wand tool saves a brush-format RLE mask
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


def _is_label_key(key: str) -> bool:
    return key.endswith("labels")


def labels_of(value: Mapping[str, Any]) -> list[str]:
    labels: list[str] = []
    for key, item in value.items():
        if _is_label_key(key):
            if isinstance(item, list):
                labels.extend(str(label) for label in item)
            elif isinstance(item, str):
                labels.append(item)
    return labels


def type_of(item: Mapping[str, Any]) -> str:
    return str(item.get("type") or infer_type(item.get("value", {})))


def _geometry_key(item: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The geometry of an id-less item, comparable across controls (labels left out)."""
    value = item.get("value", {})
    parts: list[tuple[str, Any]] = []
    for key in sorted(k for k in value if not _is_label_key(k)):
        raw = value[key]
        if isinstance(raw, np.ndarray):  # brush RLE read by jsonload
            parts.append((key, (raw.dtype.str, raw.shape, raw.tobytes())))
        else:
            parts.append((key, json.dumps(raw, sort_keys=True, default=str)))
    return tuple(parts)


@dataclass
class Group:
    order: int
    items: list[Mapping[str, Any]] = field(default_factory=list)


class Grouper:
    """Groups result items into regions (see the module docstring for the rules)."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self._idless: dict[tuple[tuple[str, Any], ...], list[tuple[str, set[Any]]]] = {}

    def add(self, order: int, item: Mapping[str, Any]) -> None:
        region_id = item.get("id")
        if region_id is None or region_id == "":
            region_id = self._idless_group(order, item)
        self.groups.setdefault(str(region_id), Group(order)).items.append(item)

    def _idless_group(self, order: int, item: Mapping[str, Any]) -> str:
        control = item.get("from_name")
        candidates = self._idless.setdefault(_geometry_key(item), [])
        for group_id, controls in candidates:
            if control is not None and control not in controls:
                controls.add(control)
                return group_id
        candidates.append((f"#{order}", {control}))
        return f"#{order}"


def group_items(result: Sequence[Any]) -> dict[str, Group]:
    grouper = Grouper()
    for order, item in enumerate(result):
        if not isinstance(item, Mapping) or not isinstance(item.get("value", {}), Mapping):
            raise RegionError(f"#{order}", "result item is not an object with a 'value'")
        grouper.add(order, item)
    return grouper.groups


def area_type(group: Group) -> tuple[str, Mapping[str, Any]] | None:
    """The area type of a group and the item holding its geometry; ``None``: not an area."""
    for item in group.items:
        if type_of(item) in KIND_OF_TYPE:
            return type_of(item), item
    for item in group.items:  # a <Labels> item alone: its value carries the geometry too
        if type_of(item) == "labels":
            value = item.get("value", {})
            inferred = infer_type({k: v for k, v in value.items() if k != "labels"})
            if inferred in KIND_OF_TYPE:
                return inferred, item
    return None


def not_area_type(group: Group) -> str:
    """What a group without area geometry is counted as (``labels`` on a keypoint: keypoint)."""
    first = group.items[0]
    type_ = type_of(first)
    if type_ == "labels":
        inferred = infer_type({k: v for k, v in first.get("value", {}).items() if k != "labels"})
        return inferred if inferred != "unknown" else "labels"
    return type_
