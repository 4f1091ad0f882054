"""Label Studio ``result`` lists -> :class:`~ls_panoptic.model.Region` objects.

What a ``result`` holds, as Label Studio and the tools around it write it::

    {"id": "r1", "type": "polygonlabels", "from_name": "label", "to_name": "image",
     "original_width": 640, "original_height": 480, "image_rotation": 0,
     "value": {"points": [[x%, y%], ...], "polygonlabels": ["leaf"]}}

- Items group into regions by ``id`` (JSON_MIN's id-less duplicates joined by geometry); the
  rules are in :mod:`ls_panoptic._results`.
- Size: ``original_width``/``original_height`` of the region; when a region lacks them, the
  size the annotation's other items give (area regions first, then any other result), else the
  image's (``image_size``), else an error whose remedy is the image.

Parsing happens once (:func:`read_result`); the image's size, when it is needed and known, is
applied afterwards (:meth:`ParsedResult.sized`), so a caller can tell from the parsed result
whether the image is needed at all before fetching it.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._results import (
    KIND_OF_TYPE,
    Group,
    Grouper,
    area_type,
    group_items,
    infer_type,
    labels_of,
    not_area_type,
    type_of,
)
from .errors import ImageError, RegionError, Remedy, naming_task
from .model import Region

__all__ = [
    "ParsedResult",
    "infer_type",
    "list_ids",
    "parse_result",
    "read_result",
    "region_labels",
]

_SIZE_KEYS = ("original_height", "original_width")
_LISTED_IDS = 5

Size = tuple[int, int]
"""``(height, width)`` in pixels."""


@dataclass
class ParsedResult:
    """What one annotation's ``result`` holds.

    Attributes:
        regions: area regions in painter's order (``order`` ascending), each with its size;
            ``0 x 0`` while ``size`` is ``None`` (see :meth:`sized`).
        ignored: non-area result groups by ``type``.
        size: the annotation's size ``(height, width)``: from its regions, else its other
            results, else the image's (:meth:`sized`); ``None`` when nothing gives one.
        declared: whether ``size`` came from the annotation itself (not from the image).
    """

    regions: list[Region] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    size: Size | None = None
    declared: bool = False

    def sized(self, image_size: Size | None) -> ParsedResult:
        """This result, its regions sized by the image's ``(height, width)`` when nothing in
        the annotation gives a size (``image_size``: ``None`` when the image is not at hand).

        Raises:
            RegionError: a region's size is known from nowhere (``remedy``: the image).
        """
        if self.size is not None:
            return self
        if image_size is None:
            if self.regions:
                raise RegionError(
                    self.regions[0].id,
                    "has no original_width/original_height and no other result of the "
                    "annotation gives the image size",
                    remedy=Remedy.IMAGE,
                )
            return self
        height, width = image_size
        regions = [replace(r, height=height, width=width) for r in self.regions]
        return replace(self, regions=regions, size=image_size)


def list_ids(ids: Sequence[str], most: int = _LISTED_IDS) -> str:
    """``a, b, c and 117 more``: a list of ids cut short for one line of a report."""
    shown = ", ".join(ids[:most])
    return shown if len(ids) <= most else f"{shown} and {len(ids) - most} more"


def _own_size(item: Mapping[str, Any], region_id: str) -> Size | None:
    """The item's ``(original_height, original_width)``; ``None`` when it gives neither."""
    raws = [item.get(name) for name in _SIZE_KEYS]
    if all(raw is None for raw in raws):
        return None
    sizes = []
    for name, raw in zip(_SIZE_KEYS, raws, strict=True):
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not _finite(raw):
            raise RegionError(region_id, f"{name} is missing or not a number ({raw!r})")
        if raw != int(raw) or raw <= 0:
            raise RegionError(region_id, f"{name} must be a positive integer, got {raw!r}")
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
class _Draft:
    """A region before its size is settled."""

    region: Region
    size: Size | None


def _draft(region_id: str, group: Group, parsed: ParsedResult) -> _Draft | None:
    found = area_type(group)
    if found is None:
        parsed.ignored[not_area_type(group)] += 1
        return None
    type_, source = found
    labels: list[str] = []
    for item in group.items:
        if type_of(item) in KIND_OF_TYPE or type_of(item) == "labels":
            labels.extend(x for x in labels_of(item.get("value", {})) if x not in labels)
        else:  # per-region choices, text areas, ...: not part of the mask
            parsed.ignored[type_of(item)] += 1
    if not labels:
        raise RegionError(region_id, "region has no label")
    region = Region(
        id=region_id,
        kind=KIND_OF_TYPE[type_],
        label=labels[0],
        order=group.order,
        height=0,
        width=0,
        value=source.get("value", {}),
        image_rotation=_rotation(source.get("image_rotation") or 0),
    )
    if len(labels) > 1:
        region = replace(region, extra_labels=tuple(labels[1:]))
    return _Draft(region, _own_size(source, region_id))


def region_labels(result: Sequence[Any]) -> list[str]:
    """The first label of each area region, in order, without checking anything else (for
    guessing a label set from an export). Never raises."""
    if not isinstance(result, Sequence) or isinstance(result, (str, bytes)):
        return []
    grouper = Grouper()
    for order, item in enumerate(result):
        if isinstance(item, Mapping) and isinstance(item.get("value", {}), Mapping):
            grouper.add(order, item)
    found = []
    for group in grouper.groups.values():
        if area_type(group) is not None:
            labels = [x for item in group.items for x in labels_of(item.get("value", {}))]
            found.extend(labels[:1])
    return found


def _declared_size(result: Sequence[Any]) -> Size | None:
    """The size an annotation's own items give (its regions first, then any other item), or
    ``None``: then only the image can give it. Never raises (bad sizes fail in parsing)."""
    other: Size | None = None
    for item in result if isinstance(result, Sequence) else ():
        if not isinstance(item, Mapping):
            continue
        try:
            size = _own_size(item, "-")
        except RegionError:
            continue
        if size is not None and type_of(item) in KIND_OF_TYPE:
            return size
        other = other or size
    return other


def _settle(drafts: list[_Draft], result: Sequence[Any]) -> Size | None:
    """The annotation's size from its regions (which must agree), else its other items."""
    by_size: dict[Size, list[str]] = {}
    for draft in drafts:
        if draft.size is not None:
            by_size.setdefault(draft.size, []).append(draft.region.id)
    if len(by_size) > 1:
        shown = "; ".join(
            f"{w}x{h} (region{'s' if len(ids) > 1 else ''} {list_ids(ids, 3)})"
            for (h, w), ids in sorted(by_size.items())
        )
        raise ImageError(f"regions disagree on the image size (width x height): {shown}")
    if by_size:
        return next(iter(by_size))
    return _declared_size(result)


def read_result(result: Sequence[Any]) -> ParsedResult:
    """Turn one annotation's ``result`` list into regions, sized where the annotation says how
    large the image is; otherwise ``size`` is ``None`` and the regions wait for the image's
    (:meth:`ParsedResult.sized`).

    Raises:
        RegionError: an item is malformed.
        ImageError: the regions disagree on the image size.
    """
    if not isinstance(result, Sequence) or isinstance(result, (str, bytes)):
        raise RegionError("-", "annotation 'result' is not a list")
    parsed = ParsedResult()
    drafts = []
    for region_id, group in group_items(result).items():
        draft = _draft(region_id, group, parsed)
        if draft is not None:
            drafts.append(draft)
    parsed.size = _settle(drafts, result)
    parsed.declared = parsed.size is not None
    for draft in sorted(drafts, key=lambda d: d.region.order):
        size = draft.size or parsed.size or (0, 0)
        parsed.regions.append(replace(draft.region, height=size[0], width=size[1]))
    return parsed


def parse_result(
    result: Sequence[Any], task_id: int | None = None, image_size: Size | None = None
) -> ParsedResult:
    """Turn one annotation's ``result`` list into regions with their sizes.

    Args:
        result: the annotation's ``result`` items.
        task_id: the task the result belongs to, named in errors.
        image_size: ``(height, width)`` of the image as displayed, when it is available: the
            size of regions that neither give one nor have a sibling that does.

    Raises:
        RegionError: an item is malformed, or a region's size is known from nowhere.
        ImageError: the regions disagree on the image size.
    """
    with naming_task(task_id):
        return read_result(result).sized(image_size)
