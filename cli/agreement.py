"""``ls-panoptic agreement``: panoptic quality between the annotations of each task.

Every annotation compared is converted exactly as ``convert`` converts it (the same masks the
pickle would hold); :mod:`ls_panoptic.comparisons` says which pairs are compared and
:mod:`ls_panoptic.agreement` how PQ is computed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import click

from ls_panoptic.agreement_summary import summarise
from ls_panoptic.comparisons import AGAINST, TaskComparisons, compare_tasks, stuff_ids
from ls_panoptic.labels import LabelSet, labelset_from_labels
from ls_panoptic.model import ConvertOptions, Task
from ls_panoptic.parse import region_labels

from .agreement_output import AgreementRun, print_csv, print_failures, print_json, print_table
from .convert import UsageProblem, convert
from .inputs import annotation_policy, image_index, label_set, load_tasks
from .report import print_labels, task_progress

__all__ = ["agreement"]

EXIT_OK, EXIT_FAILED = 0, 1
#: options of ``convert`` that shape the masks (or find the images and classes), taken as they are
CONVERSION_OPTIONS = (
    "images", "label_config", "id2label", "stuff", "overlap", "brush_threshold", "unknown_labels",
)  # fmt: skip


def _labels(
    label_config: Path | None, id2label: Path | None, tasks: list[Task], options: ConvertOptions
) -> tuple[LabelSet, bool]:
    """The label set; guessed (sorted), it holds the labels of every annotation and prediction
    (any of them may be compared, not only the one ``convert`` would select)."""
    if label_config or id2label:
        return label_set(label_config, id2label, tasks, options)
    found: set[str] = set()
    for task in tasks:
        for annotation in (*task.annotations, *task.predictions):
            found.update(region_labels(annotation.result))
    return labelset_from_labels(found), True


def _min_pq(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= 1):
        raise click.BadParameter("must be a number from 0 to 1")
    return value


def _with_convert_options(command: click.Command) -> click.Command:
    """Add ``convert``'s own options of the conversion (:data:`CONVERSION_OPTIONS`): the
    masks compared are the ones ``convert`` writes with the same options."""
    by_name = {param.name: param for param in convert.params}
    missing = [name for name in CONVERSION_OPTIONS if name not in by_name]
    if missing:
        raise RuntimeError(f"convert has no option {missing}")
    command.params[1:1] = [by_name[name] for name in CONVERSION_OPTIONS]
    return command


@_with_convert_options
@click.command()
@click.argument("export", metavar="EXPORT")
@click.option(
    "--against",
    type=click.Choice(AGAINST),
    default="annotators",
    show_default=True,
    help="annotators: every pair of a task's annotations; predictions: each prediction "
    "against the annotation --annotation selects; ground-truth: each annotation against the "
    "one marked ground truth.",
)
@click.option(
    "--annotation",
    default="latest",
    show_default=True,
    callback=annotation_policy,
    help="With --against predictions, the annotation predictions are compared with: "
    "latest, ground-truth or annotator:<user id>.",
)
@click.option(
    "--min-pq",
    type=float,
    default=None,
    callback=_min_pq,
    metavar="PQ",
    help="List the tasks whose mean PQ is below this (0 to 1) for review.",
)
@click.option("--json", "as_json", is_flag=True, help="Print every pair and the summaries as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print one CSV row per pair, worst first.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def agreement(
    export: str,
    images: Path | None,
    label_config: Path | None,
    id2label: Path | None,
    against: Any,
    annotation: str,
    stuff: tuple[str, ...],
    overlap: Any,
    brush_threshold: int,
    unknown_labels: Any,
    min_pq: float | None,
    as_json: bool,
    as_csv: bool,
    quiet: bool,
) -> None:
    """Panoptic quality (PQ = SQ x RQ, Kirillov et al. 2019) between the annotations of each
    task of a Label Studio EXPORT (JSON or JSON_MIN file, or - for stdin): per pair, task,
    annotator pair, annotator and class, worst first.

    The options from --images to --unknown-labels are convert's own, so the masks compared are
    the ones convert writes; where they say an image fails, here the annotation fails.

    \b
    Exit status: 0 all compared; 1 some annotations failed to convert (the others are
    compared, each failure on one line); 2 bad arguments or unreadable input.
    """
    if as_json and as_csv:
        raise UsageProblem("give --json or --csv, not both")
    options = ConvertOptions(
        overlap=overlap,
        stuff=frozenset(stuff),
        brush_threshold=brush_threshold,
        unknown_labels=unknown_labels,
        annotation=annotation,
    )
    tasks = load_tasks(export)
    labels, guessed = _labels(label_config, id2label, tasks, options)
    unknown_stuff = sorted(s for s in options.stuff if labels.class_id(s) is None)
    if unknown_stuff:
        raise UsageProblem(f"--stuff {', '.join(unknown_stuff)}: not in the label set")
    if guessed and not (as_json or as_csv):
        print_labels(labels, "no --label-config / --id2label: labels found in the export, sorted")
    index = image_index(images)
    with task_progress(len(tasks), "comparing", enabled=not quiet) as advance:

        def on_task(result: TaskComparisons) -> None:
            advance(bool(result.failures))

        results = compare_tasks(tasks, labels, options, against, index, on_task)
    comparisons = [c for r in results for c in r.comparisons]
    run = AgreementRun(
        against=against,
        labels=labels,
        stuff=stuff_ids(labels, options),
        comparisons=comparisons,
        summary=summarise(comparisons),
        failures=[f for r in results for f in r.failures],
        skipped=[r.skipped for r in results if r.skipped],
        min_pq=min_pq,
    )
    (print_json if as_json else print_csv if as_csv else print_table)(run)
    print_failures(run)
    sys.exit(EXIT_FAILED if run.failures else EXIT_OK)
