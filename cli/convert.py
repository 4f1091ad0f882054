"""``ls-panoptic convert``: a Label Studio export + images -> panoptic pickle + sidecar JSON,
or (``--format``) a Hugging Face dataset or COCO panoptic folder with the same masks."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import click

from ls_panoptic.batch import BatchReport, Outcome, convert_tasks
from ls_panoptic.batch_pool import start_early
from ls_panoptic.errors import SnapshotError
from ls_panoptic.labels import (
    LabelSet,
)
from ls_panoptic.model import ConvertOptions

from .inputs import annotation_policy, image_index, label_set, load_tasks
from .output_format import OutputFormat, UsageProblem, format_options
from .previews import preview_writer
from .report import print_labels, print_report, progress_callback

__all__ = ["OutputFormat", "UsageProblem", "convert", "run_convert"]  # both re-exported

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _time_limit(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number of seconds (leave it out for no limit)")
    return value


def run_convert(
    export: str,
    output: Path,
    images: Path | None,
    label_config: Path | None,
    id2label: Path | None,
    options: ConvertOptions,
    strict: bool,
    show_progress: bool = True,
    preview: Path | None = None,
    output_format: OutputFormat | None = None,
    jobs: int = 1,
) -> tuple[BatchReport, LabelSet]:
    """Everything ``convert`` does, callable from other commands (``demo``); ``jobs``:
    worker processes converting images (same output whatever it is)."""
    output_format = output_format or OutputFormat()
    output_format.check(output, images is not None)
    if jobs > 1:
        start_early()  # the workers' process starts while the export is read
    tasks = load_tasks(export)
    labels, guessed = label_set(label_config, id2label, tasks, options)
    unknown_stuff = sorted(s for s in options.stuff if labels.class_id(s) is None)
    if unknown_stuff:
        raise UsageProblem(
            f"--stuff {', '.join(unknown_stuff)}: not in the label set ({', '.join(labels.labels)})"
        )
    if guessed:
        print_labels(labels, "no --label-config / --id2label: labels found in the export, sorted")
    index = image_index(images)
    source = "<stdin>" if export == "-" else Path(export).name
    write_preview = preview_writer(preview, labels, index, options) if preview else None
    writer = output_format.writer(output, labels, options)
    with progress_callback(len(tasks), enabled=show_progress) as advance:

        def on_outcome(outcome: Outcome) -> None:
            if write_preview:
                write_preview(outcome)
            advance(outcome)

        try:
            report = convert_tasks(
                tasks,
                output,
                labels,
                options,
                images=index,
                strict=strict,
                source=source,
                on_outcome=on_outcome,
                writer=writer,
                jobs=jobs,
                outcome_masks=write_preview is not None,  # only previews draw the masks
            )
        except SnapshotError as exc:
            raise UsageProblem(str(exc)) from exc
    if index is None and options.orientation == "file":
        report.warnings.insert(
            0,
            "--orientation file needs --images to know each image's EXIF "
            "orientation: masks were left in the display frame",
        )
    if index is None:
        report.warnings.insert(
            0,
            "no --images: sizes come from the regions and EXIF orientation "
            "cannot be checked (pass --images to check it)",
        )
    return report, labels


@click.command()
@click.argument("export", metavar="EXPORT")
@click.option(
    "--images",
    type=click.Path(exists=True, path_type=Path),
    help="Folder of the images (searched recursively), or a text file listing image "
    "paths. Gives sizes and EXIF orientation, and limits output to these images.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Snapshot to write (.pkl; OUTPUT.meta.json is written beside it), or the folder "
    "that --format hf / coco-panoptic writes (ls-panoptic.meta.json inside it).",
)
@format_options
@click.option(
    "--label-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The project's labeling config XML: class ids in label order.",
)
@click.option(
    "--id2label",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON mapping that pins class ids, e.g. {"0": "wall", "1": "building"}.',
)
@click.option(
    "--stuff",
    multiple=True,
    metavar="LABEL",
    help="Label whose regions merge into one segment per image (repeatable). "
    "Background is always stuff.",
)
@click.option(
    "--overlap",
    type=click.Choice(["last", "first", "smallest"]),
    default="last",
    show_default=True,
    help="Which region is on top where regions overlap.",
)
@click.option(
    "--annotation",
    default="latest",
    show_default=True,
    callback=annotation_policy,
    help="Which annotation of a task: latest, ground-truth or annotator:<user id>.",
)
@click.option(
    "--predictions/--no-predictions",
    default=False,
    show_default=True,
    help="Use the newest prediction for tasks that have no usable annotation.",
)
@click.option(
    "--orientation",
    type=click.Choice(["display", "file"]),
    default="display",
    show_default=True,
    help="display: masks match the EXIF-rotated image (as Label "
    "Studio shows it); file: masks match the stored pixel grid.",
)
@click.option(
    "--brush-threshold",
    type=click.IntRange(1, 255),
    default=128,
    show_default=True,
    help="Alpha at or above which an anti-aliased brush/bitmask pixel counts.",
)
@click.option(
    "--unknown-labels",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="A label outside the label set fails its image, or is skipped with a warning.",
)
@click.option(
    "--key",
    "key_scheme",
    type=click.Choice(["name", "path", "task"]),
    default="name",
    show_default=True,
    help="Snapshot keys: image file name, relative path, or task id.",
)
@click.option(
    "--preview",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write one PNG per image to this folder: the mask over the image.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=_time_limit,
    metavar="SECONDS",
    help="Most seconds one image may take to convert (default: no limit). A slower image "
    "fails like any other (exit 1, the others are written); guards against pathological "
    "annotations such as polygons with a huge number of vertices.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Convert images in N worker processes (1: this process alone). The output is the "
    "same, byte for byte, whatever N is; memory grows with N (each worker holds about one "
    "image's masks). On a 2-core machine 2 was slower than 1 (docs/convert.md): try it on "
    "many cores with many images.",
)
@click.option("--strict", is_flag=True, help="Write nothing if any image fails.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def convert(
    export: str,
    images: Path | None,
    output: Path,
    label_config: Path | None,
    id2label: Path | None,
    stuff: tuple[str, ...],
    overlap: Any,
    annotation: str,
    predictions: bool,
    orientation: Any,
    brush_threshold: int,
    unknown_labels: Any,
    key_scheme: Any,
    preview: Path | None,
    time_limit: float | None,
    jobs: int,
    strict: bool,
    quiet: bool,
    output_format: str,
    splits: dict[str, float],
    seed: int,
    copy_images: bool,
) -> None:
    """Convert a Label Studio EXPORT (JSON or JSON_MIN file, or - for stdin) into a panoptic
    snapshot: {image_name: {"panoptic_mask": uint32 (H, W), "inst2class": {id: class}}}.

    \b
    Exit status: 0 every image converted; 1 some failed (the others are written, each
    failure on one line naming task, region and reason); 2 bad arguments or unreadable input.
    """
    options = ConvertOptions(
        overlap=overlap,
        stuff=frozenset(stuff),
        brush_threshold=brush_threshold,
        unknown_labels=unknown_labels,
        annotation=annotation,
        use_predictions=predictions,
        orientation=orientation,
        key=key_scheme,
        time_limit=time_limit,
    )
    report, labels = run_convert(
        export,
        output,
        images,
        label_config,
        id2label,
        options,
        strict,
        show_progress=not quiet,
        preview=preview,
        output_format=OutputFormat(output_format, splits, seed, copy_images),
        jobs=jobs,
    )
    print_report(report, labels)
    if report.failures:
        sys.exit(EXIT_FAILED)
