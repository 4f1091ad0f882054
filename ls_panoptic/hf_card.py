"""The dataset card (``README.md``) of a ``--format hf`` folder: YAML front matter with the
``configs`` that ``datasets.load_dataset`` and the Hub read (one split per ``data/<split>-*``
pattern), then id2label, images per split and each class's share of the pixels."""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["dataset_card"]


def dataset_card(
    id2label: Mapping[int, str], splits: Mapping[str, tuple[int, Mapping[int, int]]]
) -> str:
    """The folder's README.md: YAML ``configs`` for ``load_dataset``, then id2label, images
    per split and each class's share of the pixels."""
    yaml = ["---", "task_categories:", "- image-segmentation", "configs:",
            "- config_name: default", "  data_files:"]  # fmt: skip
    for name in splits:
        yaml += [f"  - split: {name}", f"    path: data/{name}-*"]
    total: dict[int, int] = {}
    for _count, pixels in splits.values():
        for class_id, n in pixels.items():
            total[class_id] = total.get(class_id, 0) + n
    all_pixels = sum(total.values()) or 1
    body = [
        "---", "", "# Panoptic segmentation ground truth (ls-panoptic)", "",
        "Written by `ls-panoptic convert --format hf` from a Label Studio project. Columns: "
        "`image`, `annotation` (PNG: channel 0 class id, channel 1 instance id, channel 2 "
        "zero), `semantic_class_to_id`, `image_name`, `task_id`, `inst2class`, `id2label`.", "",
        "| split | images |", "| --- | --- |",
        *(f"| {name} | {count} |" for name, (count, _px) in splits.items()), "",
        "| class id | label | share of pixels |", "| --- | --- | --- |",
        *(f"| {i} | {label} | {100 * total.get(i, 0) / all_pixels:.2f}% |"
          for i, label in sorted(id2label.items())), "",
        "id2label:", "", "```json",
        json.dumps({str(i): label for i, label in sorted(id2label.items())}), "```", "",
    ]  # fmt: skip
    return "\n".join(yaml + body)
