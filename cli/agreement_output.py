"""What ``ls-panoptic agreement`` prints: a readable table, or ``--json``, or ``--csv``.

The table and the CSV list pairs worst first; the JSON holds every pair (worst first) with the
summaries beside them (:mod:`ls_panoptic.agreement_summary`). Failures and skipped tasks go to
stderr in every format, so stdout stays one document.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from ls_panoptic.agreement_summary import (
    CSV_FIELDS,
    Mean,
    Summary,
    csv_row,
    pair_record,
    review_record,
    summary_record,
    worst_first,
)
from ls_panoptic.comparisons import Against, Comparison, ComparisonFailure, Side
from ls_panoptic.labels import LabelSet

from .report import with_remedy

__all__ = ["AgreementRun", "print_csv", "print_failures", "print_json", "print_table"]

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_MAX_ROWS = 20
_NUMBERS = {"pairs", "PQ", "SQ", "RQ", "things", "stuff"}


@dataclass(frozen=True)
class AgreementRun:
    """One run's results, as every format prints them."""

    against: Against
    labels: LabelSet
    stuff: frozenset[int]
    comparisons: list[Comparison]
    summary: Summary
    failures: list[ComparisonFailure]
    skipped: list[str]
    min_pq: float | None


def _f(value: float) -> str:
    return f"{value:.3f}"


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    shown = rows[:_MAX_ROWS]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for n, column in enumerate(columns):
        wide = column in ("image", "class", "annotators")  # may be cut; the numbers never are
        table.add_column(
            column,
            justify="right" if column in _NUMBERS else "left",
            no_wrap=True,
            overflow="ellipsis" if wide else "fold",
            min_width=None if wide else max([len(column), *(len(r[n]) for r in shown)]),
        )
    for row in shown:
        table.add_row(*row)
    _out.print(table)
    if len(rows) > _MAX_ROWS:
        _out.print(f"  ... and {len(rows) - _MAX_ROWS} more (--json or --csv lists all)")


def _mean_cells(mean: Mean) -> list[str]:
    return [str(mean.pairs), _f(mean.pq), _f(mean.sq), _f(mean.rq)]


def print_table(run: AgreementRun) -> None:
    """The readable report: pairs and tasks worst first, then the summaries."""
    if not run.comparisons:
        _out.print(f"no pairs compared (--against {run.against})")
        return
    pairs = [
        [str(c.task_id), c.image, _side(c.a), _side(c.b), _f(c.quality.overall.pq),
         _f(c.quality.overall.sq), _f(c.quality.overall.rq), _optional(c.quality.things),
         _optional(c.quality.stuff)]
        for c in worst_first(run.comparisons)
    ]  # fmt: skip
    columns = ["task", "image", "a", "b", "PQ", "SQ", "RQ", "things", "stuff"]
    _table("Pairs, worst first (a, b: annotation id and user; things, stuff: their PQ)",
           columns, pairs)  # fmt: skip
    summary = run.summary
    tasks = [[str(first.task_id), first.image, *_mean_cells(mean)] for first, mean in summary.tasks]
    _table("Tasks, worst first (mean over pairs)", ["task", "image", *_MEAN], tasks)
    _table(
        "Annotator pairs", ["annotators", *_MEAN],
        [[name, *_mean_cells(mean)] for name, mean in summary.annotator_pairs],
    )  # fmt: skip
    _table(
        "Annotators (mean against the others)", ["annotator", *_MEAN],
        [[name, *_mean_cells(mean)] for name, mean in summary.annotators],
    )  # fmt: skip
    classes = [
        [run.labels.id2label.get(class_id, str(class_id)),
         "stuff" if class_id in run.stuff else "thing", str(n), _f(c.pq), _f(c.sq), _f(c.rq)]
        for class_id, (c, n) in summary.classes.items()
    ]  # fmt: skip
    _table("Classes (counts pooled over pairs)", ["class", "kind", *_MEAN], classes)
    _print_overall(summary)
    _print_review(run)


_MEAN = ("pairs", "PQ", "SQ", "RQ")


def _side(side: Side) -> str:
    """``1006 u3``: annotation 1006 by user 3; ``7 pred``: prediction 7."""
    who = "pred" if side.prediction else "u?" if side.annotator is None else f"u{side.annotator}"
    return f"{side.annotation_id} {who}"


def _optional(quality: Any) -> str:
    return "-" if quality is None else _f(quality.pq)


def _print_overall(summary: Summary) -> None:
    for name, mean in (("all", summary.overall), ("things", summary.things),
                       ("stuff", summary.stuff)):  # fmt: skip
        if mean is not None:
            _out.print(
                f"mean over {mean.pairs} pairs ({name}): PQ {_f(mean.pq)}  SQ {_f(mean.sq)}  "
                f"RQ {_f(mean.rq)}"
            )


def _print_review(run: AgreementRun) -> None:
    if run.min_pq is None:
        return
    below = run.summary.below(run.min_pq)
    _out.print(f"tasks below --min-pq {run.min_pq:g}, for review: {len(below)}")
    for first, mean in below:
        _out.print(f"  task {first.task_id} ({first.image}): mean PQ {_f(mean.pq)}", markup=False)


def document(run: AgreementRun) -> dict[str, Any]:
    """The ``--json`` document: every pair, worst first, and the summaries beside them."""
    return {
        "against": run.against,
        "classes": {str(k): v for k, v in sorted(run.labels.id2label.items())},
        "stuff": sorted(run.stuff),
        "pairs": [pair_record(c, run.labels, run.stuff) for c in worst_first(run.comparisons)],
        "summary": summary_record(run.summary, run.labels, run.stuff),
        "review": review_record(run.summary, run.min_pq),
        "failures": [
            {"task_id": f.task_id, "annotation_id": f.annotation_id, "message": f.message}
            for f in run.failures
        ],
        "skipped": run.skipped,
    }


def print_json(run: AgreementRun) -> None:
    json.dump(document(run), sys.stdout, indent=1)
    sys.stdout.write("\n")


def print_csv(run: AgreementRun) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for comparison in worst_first(run.comparisons):
        writer.writerow(csv_row(comparison))


def print_failures(run: AgreementRun) -> None:
    """Skipped tasks (a count, and the first few) and one stderr line per failure."""
    if run.skipped:
        _err.print(f"skipped: {len(run.skipped)} tasks", markup=False)
        for line in run.skipped[:_MAX_ROWS]:
            _err.print(f"  {line}", markup=False)
    for failure in run.failures:
        _err.print(f"error: {with_remedy(failure.message, failure.remedy)}", markup=False)
