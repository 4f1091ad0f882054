"""One failure, two front ends: the core's error carries the reason and a remedy; the CLI says
the remedy as ``convert``'s options, the service as its ``LS_PANOPTIC_*`` settings, and the
sidecar's message (the same for both) says neither."""

from __future__ import annotations

from typing import Any

import pytest

from cli.report import CLI_REMEDIES, with_remedy
from ls_panoptic.convert import convert_task
from ls_panoptic.errors import ImageError, LimitError, Remedy, UnknownLabelError
from ls_panoptic.labels import labelset_from_labels
from ls_panoptic.model import ConvertOptions
from ls_panoptic.sidecar import failure_message
from ls_panoptic.tasks import task_from_dict
from worker.remedies import SERVICE_REMEDIES, service_remedy

LABELS = labelset_from_labels({"leaf", "stem"})


def _failure(labels: list[str], options: ConvertOptions) -> ImageError:
    boxes = [
        {"id": f"r{n}", "type": "rectanglelabels", "original_width": 40, "original_height": 30,
         "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rectanglelabels": [label]}}
        for n, label in enumerate(labels)
    ]  # fmt: skip
    task = task_from_dict({"id": 7, "data": {"image": "x.png"}, "annotations": [
        {"id": 70, "result": boxes}]})  # fmt: skip
    with pytest.raises(ImageError) as info:
        convert_task(task, "x.png", LABELS, options)
    return info.value


def test_every_remedy_is_worded_by_both_front_ends() -> None:
    assert set(CLI_REMEDIES) == set(SERVICE_REMEDIES) == set(Remedy)
    assert all("LS_PANOPTIC_" not in text for text in CLI_REMEDIES.values())
    assert all("--" not in text for text in SERVICE_REMEDIES.values())


@pytest.mark.parametrize(
    ("labels", "options", "kind", "cli", "service"),
    [
        (["weed"], ConvertOptions(), UnknownLabelError,
         "; add it to the label config / id2label file, or pass --unknown-labels skip",
         "add it to the project's label config, or set LS_PANOPTIC_UNKNOWN_LABELS=skip"),
        (["leaf", "stem"], ConvertOptions(max_regions=1), LimitError,
         "; if they are real, raise it in Python (ConvertOptions.max_regions)",
         "raise LS_PANOPTIC_MAX_REGIONS if they are real"),
        (["leaf"], ConvertOptions(max_pixels=100), LimitError,
         "; if it is real, raise it in Python (ConvertOptions.max_pixels)",
         "raise LS_PANOPTIC_MAX_IMAGE_PIXELS if it is real"),
    ],
)  # fmt: skip
def test_one_failure_reads_alike_in_the_sidecar_and_each_front_end_adds_its_remedy(
    labels: list[str], options: ConvertOptions, kind: type[Any], cli: str, service: str
) -> None:
    error = _failure(labels, options)
    assert isinstance(error, kind) and error.task_id == 7
    message = failure_message(7, error)
    assert message == str(error) and message.startswith("task 7: ")
    assert "--" not in message and "LS_PANOPTIC_" not in message
    assert with_remedy(message, error.remedy) == message + cli
    assert service_remedy(error) == service


def test_the_time_limit_is_worded_as_each_front_end_sets_it() -> None:
    error = LimitError("took too long", remedy=Remedy.TIME_LIMIT, limit=0.5).in_task(3)
    assert with_remedy(str(error), error.remedy) == (
        "task 3: took too long; raise --time-limit or split the image"
    )
    assert service_remedy(error) == "raise LS_PANOPTIC_TIME_LIMIT or split the image"


def test_a_failure_without_remedy_is_its_message_alone() -> None:
    error = ImageError("regions disagree", region_id="r1")
    assert (
        with_remedy(failure_message(5, error), error.remedy)
        == "task 5: region r1: regions disagree"
    )
    assert service_remedy(error) is None and service_remedy(ValueError("x")) is None
