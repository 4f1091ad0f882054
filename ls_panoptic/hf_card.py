"""The dataset card (``README.md``) of a ``--format hf`` folder: YAML front matter with the
``configs`` that ``datasets.load_dataset`` and the Hub read (one split per ``data/<split>-*``
pattern) and ``dataset_info`` (the features, as ``datasets`` writes them, and each split's
row count: what the Hub's viewer shows before it reads a shard), then id2label, images per
split and each class's share of the pixels. Every name in the YAML is written as a JSON
string (valid YAML), so a label such as ``a: b`` stays one name."""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["dataset_card"]


def _name(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)  # a JSON string is a YAML string


def _struct(fields: list[tuple[str, str]], indent: str) -> list[str]:
    lines = []
    for name, dtype in fields:
        lines += [f"{indent}- name: {_name(name)}", f"{indent}  dtype: {dtype}"]
    return lines


def _features(id2label: Mapping[int, str]) -> list[str]:
    """The columns as ``datasets`` writes ``dataset_info.features`` (``Features._to_yaml_list``)."""
    labels = [(label, "int64") for _i, label in sorted(id2label.items())]
    pairs = [("instance_id", "int64"), ("class_id", "int64")]
    return [
        *_struct([("image", "image"), ("annotation", "image")], "  "),
        '  - name: "semantic_class_to_id"', "    struct:", *_struct(labels, "    "),
        *_struct([("image_name", "string"), ("task_id", "int64")], "  "),
        '  - name: "inst2class"', "    list:", *_struct(pairs, "    "),
        '  - name: "id2label"', "    struct:",
        *_struct([(str(i), "string") for i in sorted(id2label)], "    "),
    ]  # fmt: skip


def dataset_card(
    id2label: Mapping[int, str], splits: Mapping[str, tuple[int, Mapping[int, int]]]
) -> str:
    """The folder's README.md: YAML ``configs`` for ``load_dataset``, then id2label, images
    per split and each class's share of the pixels."""
    yaml = ["---", "task_categories:", "- image-segmentation", "configs:",
            "- config_name: default", "  data_files:"]  # fmt: skip
    for name in splits:
        yaml += [f"  - split: {name}", f"    path: data/{name}-*"]
    yaml += ["dataset_info:", "  features:", *_features(id2label), "  splits:"]
    for name, (count, _pixels) in splits.items():
        yaml += [f"  - name: {_name(name)}", f"    num_examples: {count}"]
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
