"""Run the project's converter on an export and compare its snapshot with the reference.

Agreement is measured per pixel: the converter's class (``id2label[inst2class[id]]``) against
the reference's class; and its instance partition against the reference's regions (each
converter segment is matched to the reference region covering most of it).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner
from numpy.typing import NDArray

from .build_project import LabelStudioExport
from .reference import ReferenceImage

__all__ = ["Conversion", "class_map", "partition_agreement", "run_cli_convert"]

#: segments smaller than this many pixels are not held to a one-to-one match (edge slivers)
MIN_MATCHED_SEGMENT = 50


@dataclass(frozen=True)
class Conversion:
    """One ``ls-panoptic convert`` run.

    Attributes:
        exit_code: the command's exit status.
        output: what it printed (stdout and stderr).
        snapshot: the pickle's content ({} when none was written).
        id2label: class id -> label, from the sidecar ({} when none).
    """

    exit_code: int
    output: str
    snapshot: dict[str, dict[str, Any]]
    id2label: dict[int, str]


def run_cli_convert(export: Path, case: LabelStudioExport, out_dir: Path) -> Conversion:
    """``ls-panoptic convert EXPORT --images DIR --output OUT.pkl --label-config XML``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / "snapshot.pkl"
    args = [
        "convert", str(export),
        "--images", str(case.images_dir),
        "--output", str(output),
        "--label-config", str(case.label_config_path),
        "--quiet",
    ]  # fmt: skip
    from cli.main import cli  # the project under test; imported late so collection never fails

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    snapshot: dict[str, dict[str, Any]] = {}
    if output.exists():
        with output.open("rb") as f:
            snapshot = pickle.load(f)
    sidecar = out_dir / "snapshot.meta.json"
    id2label: dict[int, str] = {}
    if sidecar.exists():
        id2label = {int(k): v for k, v in json.loads(sidecar.read_text())["id2label"].items()}
    return Conversion(result.exit_code, result.output, snapshot, id2label)


def class_map(entry: dict[str, Any], id2label: dict[int, str]) -> NDArray[np.str_]:
    """Label name per pixel of a snapshot entry, str ``(H, W)``."""
    ids, inverse = np.unique(entry["panoptic_mask"], return_inverse=True)
    names = np.array([id2label[entry["inst2class"][int(i)]] for i in ids])
    per_pixel: NDArray[np.str_] = names[inverse.reshape(entry["panoptic_mask"].shape)]
    return per_pixel


def partition_agreement(
    mask: NDArray[np.uint32], reference: ReferenceImage
) -> tuple[float, list[str]]:
    """Share of pixels whose segment maps to the reference region under them, and problems.

    Each converter segment is matched to the reference region (or background, -1) covering
    most of it; segments of at least ``MIN_MATCHED_SEGMENT`` pixels must match distinct ones,
    and every reference region that large must be matched.
    """
    matched: dict[int, int] = {}
    agreeing = 0
    problems: list[str] = []
    for segment in np.unique(mask):
        under = reference.regions[mask == segment]
        regions, counts = np.unique(under, return_counts=True)
        best = int(regions[np.argmax(counts)])
        agreeing += int(counts.max())
        if under.size < MIN_MATCHED_SEGMENT:
            continue
        if best in matched.values():
            problems.append(f"segments {segment} and others all match reference region {best}")
        matched[int(segment)] = best
    visible, sizes = np.unique(reference.regions, return_counts=True)
    for region, size in zip(visible.tolist(), sizes.tolist(), strict=True):
        if size >= 4 * MIN_MATCHED_SEGMENT and region not in matched.values():
            problems.append(f"reference region {region} ({size} px) has no segment")
    return agreeing / mask.size, problems
