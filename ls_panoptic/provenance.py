"""What an entry records about itself for the sidecar: where it came from, and short warnings.

A warning about regions is cut to their count and a few of their ids (:func:`note`), so one
annotation with thousands of regions still makes one short line of a report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from .model import Annotation, ConvertOptions
from .parse import ParsedResult, list_ids

__all__ = ["note", "provenance", "region_notes"]


def note(warnings: list[str], ids: Sequence[str], what: str) -> None:
    """One short warning: the count first, then a few of the region ids."""
    if ids:
        plural = "s" if len(ids) > 1 else ""
        warnings.append(f"{len(ids)} region{plural} {what}: {list_ids(ids)}")


def region_notes(parsed: ParsedResult, warnings: list[str]) -> None:
    """The warnings parsing leaves: regions with several labels, a size taken from the image."""
    multi = [r.id for r in parsed.regions if r.extra_labels]
    note(warnings, multi, "with several labels (the first is used)")
    if not parsed.declared and parsed.regions:
        h, w = parsed.size or (0, 0)
        warnings.append(
            f"no region gives original_width/original_height: drawn at the image's {w}x{h}"
        )


def provenance(
    task_id: int | None,
    annotation: Annotation,
    options: ConvertOptions,
    parsed: ParsedResult,
    warnings: list[str],
) -> dict[str, Any]:
    """An entry's sidecar record, but for what the mask itself tells (size, instances)."""
    regions = parsed.regions
    meta: dict[str, Any] = {
        "task_id": task_id,
        "annotation_id": annotation.id,
        "completed_by": annotation.completed_by,
        "is_prediction": annotation.is_prediction,
        "updated_at": annotation.updated_at or annotation.created_at,
        "orientation": options.orientation,
        "regions": dict(Counter(r.kind for r in regions)),
        "ignored": dict(parsed.ignored),
        "warnings": warnings,
    }
    rotations = sorted({r.image_rotation for r in regions} - {0.0})
    if rotations:  # recorded, never applied: coordinates are in the unrotated image
        meta["image_rotation"] = [int(x) if x.is_integer() else x for x in rotations]
    return meta
