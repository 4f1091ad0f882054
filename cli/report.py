"""Terminal output of the CLI: progress bar, label table, closing summary, failure lines.

The one place the CLI words what a user can do about a failure: the core's errors carry a
:class:`~ls_panoptic.errors.Remedy`, and :data:`CLI_REMEDIES` says it as ``convert``'s options
(the service says the same remedies as its settings, in ``worker/remedies.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ls_panoptic.batch import BatchFailure, BatchReport, Outcome
from ls_panoptic.errors import Remedy
from ls_panoptic.labels import LabelSet

__all__ = [
    "CLI_REMEDIES",
    "failure_line",
    "print_labels",
    "print_report",
    "progress_callback",
    "task_progress",
    "with_remedy",
]

#: what to do about a failure, in ``convert``'s words (max_regions and max_pixels have no option)
CLI_REMEDIES: dict[Remedy, str] = {
    Remedy.IMAGE: "pass the image (convert --images) so its size is used",
    Remedy.TIME_LIMIT: "raise --time-limit or split the image",
    Remedy.MAX_REGIONS: "if they are real, raise it in Python (ConvertOptions.max_regions)",
    Remedy.MAX_PIXELS: "if it is real, raise it in Python (ConvertOptions.max_pixels)",
    Remedy.UNKNOWN_LABELS: "add it to the label config / id2label file, "
    "or pass --unknown-labels skip",
    Remedy.KEY: "use --key path or --key task to tell them apart",
    Remedy.PREDICTIONS: "pass --predictions",
}

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
_MAX_LISTED = 20


@contextmanager
def progress_callback(total: int, enabled: bool = True) -> Iterator[Callable[[Outcome], None]]:
    """A progress bar over ``total`` tasks; yields the per-outcome callback."""
    with task_progress(total, "converting", enabled) as advance:
        yield lambda outcome: advance(outcome.failure is not None)


@contextmanager
def task_progress(total: int, verb: str, enabled: bool = True) -> Iterator[Callable[[bool], None]]:
    """A progress bar over ``total`` tasks (``verb``: ``converting``...); yields the callback
    called once per task with whether it failed."""
    if not enabled or total == 0:
        yield lambda _failed: None
        return
    columns = (
        TextColumn(verb),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_err, transient=True) as progress:
        bar = progress.add_task("convert", total=total, failed=0)
        failed = 0

        def advance(task_failed: bool) -> None:
            nonlocal failed
            failed += task_failed
            progress.update(bar, advance=1, failed=failed)

        yield advance


def print_labels(labels: LabelSet, title: str) -> None:
    """Print the class id mapping (when it was guessed, users must see it)."""
    _out.print(title)
    table = Table()
    table.add_column("class id", justify="right")
    table.add_column("label")
    for class_id, label in sorted(labels.id2label.items()):
        table.add_row(
            str(class_id), label + ("  (background)" if class_id == labels.background_id else "")
        )
    _out.print(table)


def print_report(report: BatchReport, labels: LabelSet) -> None:
    """The closing summary, then one stderr line per failure."""
    if report.aborted:
        _err.print(f"[bold red]--strict: {len(report.failures)} failure(s); nothing written[/]")
    else:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.regions.items())) or "none"
        ignored = ", ".join(f"{n} {k}" for k, n in sorted(report.ignored.items())) or "none"
        _out.print(
            f"[bold]{report.written}[/] images written to {report.output} "
            f"(metadata: {report.sidecar.name}); {len(labels.id2label)} classes"
        )
        _out.print(f"  regions: {kinds}; ignored results: {ignored}")
        if report.prediction_ids:
            _out.print(
                f"  predictions listed by id only (as Label Studio's JSON export lists them): "
                f"{report.prediction_ids}, ignored; to convert predictions (--predictions), "
                "export them as objects: POST /api/projects/<id>/exports/ with "
                '{"serialization_options": {"predictions": {"only_id": false}}}'
            )
        _out.print(
            f"  overlap: {report.overlapped_pixels} pixels hidden under other regions, "
            f"{report.dropped_regions} regions left with no visible pixel (dropped)"
        )
        _out.print(f"  skipped: {len(report.skipped)} tasks; failed: {len(report.failures)}")
    for line in report.skipped[:_MAX_LISTED]:
        _out.print(f"  skipped {line}", markup=False)
    if len(report.skipped) > _MAX_LISTED:
        _out.print(f"  ... and {len(report.skipped) - _MAX_LISTED} more skipped (see the sidecar)")
    for warning in report.warnings[:_MAX_LISTED]:
        _err.print(f"warning: {warning}", markup=False)
    if len(report.warnings) > _MAX_LISTED:
        _err.print(
            f"... and {len(report.warnings) - _MAX_LISTED} more warnings in {report.sidecar.name}",
            markup=False,
        )
    for failure in report.failures:
        _err.print(f"error: {failure_line(failure)}", markup=False, soft_wrap=True)


def with_remedy(message: str, remedy: Remedy | None) -> str:
    """``message``, then what to do about it in ``convert``'s words (when a user can)."""
    return message if remedy is None else f"{message}; {CLI_REMEDIES[remedy]}"


def failure_line(failure: BatchFailure) -> str:
    """The line printed for a failed task: the sidecar's message (task, region, reason) and
    what to do."""
    return with_remedy(failure.message, failure.remedy)
