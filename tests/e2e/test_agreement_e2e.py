"""`ls-panoptic agreement` on a real Label Studio 1.23.2 project: three annotators draw the same
three images differently, and every pair's PQ, SQ and RQ (overall and per class) equal
torchmetrics' ``PanopticQuality`` on the masks the conversion makes of the two annotations.

How three annotators are made through the API (checked here on 1.23.2): users created by
``POST /api/users/`` belong to no organization and cannot log in to the project, but an
annotation posted by the admin with ``"completed_by": <their id>`` keeps that id, and the
export gives it back; so annotations 1, 2 and 3 of a task have three different
``completed_by``. Ground truth is marked with ``PATCH /api/annotations/<id>/``; a prediction
is posted to ``/api/predictions/`` and read from an export snapshot that lists predictions as
objects.

The takes: A draws five regions (brush, polygon, rotated rectangle, ellipse, bitmask); B draws
them shifted by about 1% and 4% larger; C shifts the other way, splits the polygon in two,
leaves the rectangle out and labels the ellipse leaf instead of tomato.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import cli
from ls_panoptic.comparisons import stuff_ids
from ls_panoptic.convert import Conversion
from ls_panoptic.export import read_export
from ls_panoptic.images import ImageIndex
from ls_panoptic.labels import LabelSet, labelset_from_config
from ls_panoptic.model import Annotation, ConvertOptions, Task
from ls_panoptic.naming import image_url
from tests.torch_pq import TOLERANCE, torchmetrics_pq

from .build_project import LABEL_CONFIG
from .lsclient import LabelStudioClient
from .reference import image_key
from .scene import ResultBuilder, make_images

pytestmark = pytest.mark.e2e

Result = list[dict[str, Any]]
AS_OBJECTS = {"predictions": {"only_id": False}}


@dataclass(frozen=True)
class Take:
    """One annotator's way of drawing: shift (fractions), growth, and what they do otherwise."""

    dx: float
    dy: float
    grow: float
    split: bool = False
    drop: bool = False
    relabel: bool = False


TAKES = (Take(0, 0, 1.0), Take(0.01, -0.008, 1.04),
         Take(-0.012, 0.01, 0.97, split=True, drop=True, relabel=True))  # fmt: skip


def draw(b: ResultBuilder, take: Take) -> Result:
    def at(fx: float, fy: float) -> tuple[float, float]:
        return fx + take.dx, fy + take.dy

    g = take.grow
    stroke = b.stroke_alpha([at(0.10, 0.20), at(0.35, 0.45), at(0.25, 0.70)], 0.07 * g)
    blob = b.blob_alpha(at(0.22, 0.80), 0.10 * g, at(0.42, 0.88))
    hexagon = [at(0.30, 0.30), at(0.55, 0.28), at(0.48, 0.45), at(0.60, 0.62), at(0.35, 0.66),
               at(0.28, 0.50)]  # fmt: skip
    polygons = [hexagon]
    if take.split:  # the same outline as two pieces, cut at y = 0.45
        polygons = [[at(0.30, 0.30), at(0.55, 0.28), at(0.48, 0.45), at(0.29, 0.45)],
                    [at(0.29, 0.45), at(0.48, 0.45), at(0.60, 0.62), at(0.35, 0.66),
                     at(0.28, 0.50)]]  # fmt: skip
    result = [b.brush("leaf", stroke), *(b.polygon("stem", p) for p in polygons)]
    if not take.drop:
        result.append(b.rectangle("tomato", (*at(0.62, 0.08), 0.25 * g, 0.2 * g), 20.0))
    result.append(
        b.ellipse("leaf" if take.relabel else "tomato", at(0.72, 0.62), (0.14 * g, 0.1 * g), 35.0)
    )
    result.append(b.bitmask("leaf", blob))
    return result


@dataclass(frozen=True)
class AgreementProject:
    export: Path
    snapshot_export: Path
    images: Path
    config: Path
    users: tuple[int, ...]
    annotation_ids: dict[int, list[int]]  # task id -> annotation ids of takes A, B, C


@pytest.fixture(scope="module")
def project(
    ls_client: LabelStudioClient, tmp_path_factory: pytest.TempPathFactory
) -> AgreementProject:
    root = tmp_path_factory.mktemp("agreement")
    images = make_images()[:3]
    project_id = int(ls_client.create_project("ls-panoptic agreement", LABEL_CONFIG)["id"])
    ls_client.import_files(project_id, {image.name: image.data for image in images})
    me = ls_client.current_user_id()
    tag = uuid.uuid4().hex[:8]
    users = (me, *(ls_client.create_user(f"annotator{n}-{tag}@example.com") for n in (2, 3)))
    by_name = {image.name: image for image in images}
    (root / "images").mkdir()
    annotation_ids: dict[int, list[int]] = {}
    for seed, task in enumerate(ls_client.list_tasks(project_id)):
        image = by_name[image_key(task["data"]["image"])]
        (root / "images" / image.name).write_bytes(ls_client.download(task["data"]["image"]))
        ids = []
        for n, (take, user) in enumerate(zip(TAKES, users, strict=True)):
            builder = ResultBuilder(image.width, image.height, seed * 10 + n)
            made = ls_client.create_annotation(task["id"], draw(builder, take), completed_by=user)
            assert made["completed_by"] == user
            ids.append(int(made["id"]))
        annotation_ids[int(task["id"])] = ids
        ls_client.mark_ground_truth(ids[0])
        prediction = draw(ResultBuilder(image.width, image.height, 99), Take(0.02, 0.02, 1.1))
        ls_client.create_prediction(task["id"], prediction, "model-1")
    (root / "export.json").write_bytes(ls_client.export(project_id, "JSON"))
    snapshot = ls_client.export_snapshot(project_id, "JSON", AS_OBJECTS)
    (root / "snapshot.json").write_bytes(snapshot)
    (root / "config.xml").write_text(ls_client.get_project(project_id)["label_config"])
    return AgreementProject(root / "export.json", root / "snapshot.json", root / "images",
                            root / "config.xml", users, annotation_ids)  # fmt: skip


def _agreement(project: AgreementProject, export: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, [
        "agreement", str(export), "--images", str(project.images),
        "--label-config", str(project.config), "--json", "--quiet", *args,
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _masks(
    project: AgreementProject, export: Path, labels: LabelSet
) -> Callable[[int, int, bool], tuple[Any, dict[int, int]]]:
    """(task id, annotation id, prediction?) -> mask and inst2class, converted as convert does."""
    tasks, _format = read_export(export)
    index = ImageIndex.from_folder(project.images)
    by_id: dict[int, Task] = {t.id: t for t in tasks if t.id is not None}

    def mask(task_id: int, annotation_id: int, prediction: bool) -> tuple[Any, dict[int, int]]:
        task = by_id[task_id]
        pool: list[Annotation] = task.predictions if prediction else task.annotations
        annotation = next(a for a in pool if a.id == annotation_id)
        image = index.find(image_url(task.data, labels.image_value), "name")
        entry = Conversion.of_annotation(task, annotation, ConvertOptions()).run("k", labels, image)
        return entry.panoptic_mask, entry.inst2class

    return mask


def _check_against_torchmetrics(
    project: AgreementProject, export: Path, report: dict[str, Any]
) -> None:
    labels = labelset_from_config(project.config.read_text())
    stuff = stuff_ids(labels, ConvertOptions())
    mask = _masks(project, export, labels)
    for pair in report["pairs"]:
        a = mask(pair["task_id"], pair["a"]["annotation_id"], pair["a"]["prediction"])
        b = mask(pair["task_id"], pair["b"]["annotation_id"], pair["b"]["prediction"])
        (pq, sq, rq), per_class = torchmetrics_pq(a, b, labels.id2label, stuff)
        assert pair["pq"] == pytest.approx(pq, abs=TOLERANCE)
        assert pair["sq"] == pytest.approx(sq, abs=TOLERANCE)
        assert pair["rq"] == pytest.approx(rq, abs=TOLERANCE)
        for label, counts in pair["per_class"].items():
            class_id = labels.class_id(label)
            assert class_id is not None
            theirs = per_class[class_id]
            assert (counts["pq"], counts["sq"], counts["rq"]) == pytest.approx(
                theirs, abs=TOLERANCE
            )


def test_annotators_pairs_equal_torchmetrics(project: AgreementProject) -> None:
    report = _agreement(project, project.export)
    assert len(report["pairs"]) == 3 * 3  # three images, three pairs each
    _check_against_torchmetrics(project, project.export, report)
    users = {pair[side]["annotator"] for pair in report["pairs"] for side in "ab"}
    assert users == set(project.users)
    a, b, c = (f"user {u}" for u in project.users)
    pairs = {tuple(p["annotators"]): p["pq"] for p in report["summary"]["annotator_pairs"]}
    assert pairs[tuple(sorted((a, b)))] > max(
        pairs[tuple(sorted((a, c)))], pairs[tuple(sorted((b, c)))]
    )
    assert 0 < min(p["pq"] for p in report["pairs"]) < max(p["pq"] for p in report["pairs"]) < 1
    worst = {u["annotator"]: u["pq"] for u in report["summary"]["annotators"]}
    assert min(worst, key=worst.__getitem__) == c
    per_class = report["summary"]["per_class"]
    assert per_class["background"]["kind"] == "stuff" and per_class["stem"]["fp"] > 0


def test_against_ground_truth_and_predictions(project: AgreementProject) -> None:
    truth = _agreement(project, project.export, "--against", "ground-truth")
    reference = {ids[0] for ids in project.annotation_ids.values()}
    assert len(truth["pairs"]) == 6
    assert {p["b"]["annotation_id"] for p in truth["pairs"]} == reference
    _check_against_torchmetrics(project, project.export, truth)
    predicted = _agreement(project, project.snapshot_export, "--against", "predictions")
    assert len(predicted["pairs"]) == 3
    # marking A's annotation ground truth (a PATCH) made it the latest updated: selected
    assert {p["b"]["annotation_id"] for p in predicted["pairs"]} == reference
    assert all(p["a"]["prediction"] for p in predicted["pairs"])
    _check_against_torchmetrics(project, project.snapshot_export, predicted)
    policy = f"annotator:{project.users[2]}"
    by_c = _agreement(project, project.snapshot_export, "--against", "predictions",
                      "--annotation", policy)  # fmt: skip
    taken_by_c = {ids[2] for ids in project.annotation_ids.values()}
    assert {p["b"]["annotation_id"] for p in by_c["pairs"]} == taken_by_c
