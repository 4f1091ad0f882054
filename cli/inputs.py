"""What the commands that read an export share: the export, the label set and ``--images``,
each read once with its problems turned into one usage line (exit 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ls_panoptic.errors import ExportError, LabelConfigError, PanopticError
from ls_panoptic.export import parse_export_text, read_export
from ls_panoptic.images import ImageIndex
from ls_panoptic.labels import (
    LabelSet,
    labelset_from_config,
    labelset_from_labels,
    load_mapping_file,
)
from ls_panoptic.model import ConvertOptions, Task
from ls_panoptic.parse import region_labels
from ls_panoptic.selection import parse_policy, select_annotation

from .output_format import UsageProblem
from .report import with_remedy

__all__ = ["annotation_policy", "image_index", "label_set", "labels_in", "load_tasks"]


def annotation_policy(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Click callback of ``--annotation``: a policy :func:`parse_policy` accepts."""
    try:
        parse_policy(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


def load_tasks(export: str) -> list[Task]:
    """The tasks of the export file ``export`` (``-``: standard input)."""
    try:
        if export == "-":
            tasks, _fmt = parse_export_text(sys.stdin.buffer.read(), "<stdin>")
        else:
            tasks, _fmt = read_export(Path(export))
    except ExportError as exc:
        raise UsageProblem(with_remedy(str(exc), exc.remedy)) from exc
    return tasks


def labels_in(tasks: list[Task], options: ConvertOptions) -> set[str]:
    """The labels of the annotations ``options`` selects (for a label set guessed from them)."""
    found: set[str] = set()
    for task in tasks:
        annotation = select_annotation(task, options.annotation, options.use_predictions)
        if annotation is None:
            continue
        found.update(region_labels(annotation.result))
    return found


def label_set(
    label_config: Path | None, id2label: Path | None, tasks: list[Task], options: ConvertOptions
) -> tuple[LabelSet, bool]:
    """The label set, and whether it was guessed from the export (then it is printed)."""
    if label_config and id2label:
        raise UsageProblem("give --label-config or --id2label, not both")
    try:
        if label_config:
            return labelset_from_config(label_config.read_text(encoding="utf-8")), False
        if id2label:
            return load_mapping_file(id2label), False
    except OSError as exc:
        raise UsageProblem(f"cannot read {label_config or id2label}: {exc.strerror}") from exc
    except LabelConfigError as exc:
        raise UsageProblem(with_remedy(str(exc), exc.remedy)) from exc
    return labelset_from_labels(labels_in(tasks, options)), True


def image_index(images: Path | None) -> ImageIndex | None:
    """The images of ``--images`` (a folder or a list file), ``None`` without it."""
    if images is None:
        return None
    try:
        if images.is_dir():
            return ImageIndex.from_folder(images)
        return ImageIndex.from_list_file(images)
    except (OSError, ValueError, PanopticError) as exc:
        raise UsageProblem(f"--images {images}: {exc}") from exc
