"""`ls-panoptic agreement` as users run it: the pairs compared under each `--against`, the
masks compared being the ones `convert` writes, the table, `--json`, `--csv`, `--min-pq`,
and exit codes."""

from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from cli.agreement import agreement
from cli.main import cli
from devstack.synthetic import SyntheticProject
from ls_panoptic.agreement import Segments, panoptic_quality

SIZE = {"original_width": 100, "original_height": 50}
CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="box" toName="image"><Label value="leaf"/><Label value="stem"/>
</RectangleLabels></View>"""


def _run(*args: str) -> Result:
    return CliRunner().invoke(agreement, [*args, "--quiet"])


def _args(project: SyntheticProject) -> list[str]:
    return [str(project.export), "--images", str(project.images),
            "--label-config", str(project.config)]  # fmt: skip


def _box(region: str, x: float, width: float, label: str = "leaf") -> dict[str, Any]:
    value = {
        "x": x,
        "y": 0,
        "width": width,
        "height": 100,
        "rotation": 0,
        "rectanglelabels": [label],
    }
    return {"id": region, "type": "rectanglelabels", "from_name": "box", "to_name": "image",
            "value": value, **SIZE}  # fmt: skip


def _annotation(
    annotation_id: int, user: int, *boxes: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {"id": annotation_id, "completed_by": user, "result": list(boxes),
            "updated_at": f"2026-11-0{annotation_id % 9 + 1}T00:00:00Z", **extra}  # fmt: skip


def _export(tmp_path: Path, tasks: list[dict[str, Any]]) -> list[str]:
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    (tmp_path / "config.xml").write_text(CONFIG)
    return [str(tmp_path / "export.json"), "--label-config", str(tmp_path / "config.xml")]


def _task(task_id: int, *annotations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    data = {"image": f"/data/upload/1/0a1b2c3d-img{task_id}.png"}
    return {"id": task_id, "data": data, "annotations": list(annotations), **extra}


def test_pairs_are_the_masks_convert_writes(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    """Each task of the synthetic project has an older and a newer annotation: the pair's PQ is
    the PQ of the two pickles `convert` writes with the older one and with the newer one."""
    result = _run(*_args(small_project), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    tasks = json.loads(small_project.export.read_text())
    older = [{**t, "annotations": [min(t["annotations"], key=lambda a: a["id"])]} for t in tasks]
    (tmp_path / "older.json").write_text(json.dumps(older))
    snapshots = []
    for export, out in (
        (small_project.export, "newer.pkl"),
        (tmp_path / "older.json", "older.pkl"),
    ):
        args = ["convert", str(export), "--images", str(small_project.images), "--label-config",
                str(small_project.config), "--output", str(tmp_path / out), "--quiet"]  # fmt: skip
        assert CliRunner().invoke(cli, args).exit_code == 0
        snapshots.append(pickle.loads((tmp_path / out).read_bytes()))
    newer, old = snapshots
    assert len(report["pairs"]) == len(tasks) == len(newer)
    for pair in report["pairs"]:
        a, b = old[pair["image"]], newer[pair["image"]]
        expected = panoptic_quality(
            Segments.of(a["panoptic_mask"], a["inst2class"]),
            Segments.of(b["panoptic_mask"], b["inst2class"]),
            frozenset(report["stuff"]),
        )
        assert (pair["pq"], pair["sq"], pair["rq"]) == (
            expected.overall.pq,
            expected.overall.sq,
            expected.overall.rq,
        )
        assert pair["a"]["annotation_id"] < pair["b"]["annotation_id"]
        assert {"task_id", "image", "a", "b", "per_class", "things", "stuff"} <= set(pair)
    assert [p["pq"] for p in report["pairs"]] == sorted(p["pq"] for p in report["pairs"])
    summary = report["summary"]
    assert {"tasks", "annotator_pairs", "annotators", "per_class", "overall"} <= set(summary)
    assert summary["overall"]["pairs"] == len(tasks)
    assert summary["annotators"] == [{"annotator": "user 1", **summary["overall"]}]


def test_hand_made_export_gives_exact_pq(tmp_path: Path) -> None:
    """Task 1: identical boxes (PQ 1). Task 2: disjoint leaves (leaf 0; background IoU
    0.5/1.5 = 1/3, no match: 0). Task 3: one box split in two, 30 and 20 columns of 50 (leaf:
    IoU 0.6, TP 1, FN 1, PQ 0.6 x 2/3 = 0.4; background 1)."""
    left = _box("r1", 0, 50)
    args = _export(tmp_path, [
        _task(1, _annotation(11, 1, left), _annotation(12, 2, left)),
        _task(2, _annotation(21, 1, _box("r1", 0, 25)), _annotation(22, 2, _box("r1", 50, 25))),
        _task(3, _annotation(31, 1, left),
              _annotation(32, 2, _box("r1", 0, 30), _box("r2", 30, 20))),
    ])  # fmt: skip
    result = _run(*args, "--json")
    assert result.exit_code == 0, result.output
    pairs = {p["task_id"]: p for p in json.loads(result.stdout)["pairs"]}
    assert pairs[1]["pq"] == 1.0 and pairs[2]["pq"] == 0.0
    assert pairs[3]["per_class"]["leaf"]["pq"] == pytest.approx(0.4)
    assert pairs[3]["pq"] == pytest.approx(0.7)
    assert pairs[3]["things"]["pq"] == pytest.approx(0.4) and pairs[3]["stuff"]["pq"] == 1.0
    assert pairs[3]["a"] == {"annotation_id": 31, "annotator": 1, "prediction": False}
    assert [p["task_id"] for p in json.loads(result.stdout)["pairs"]] == [2, 3, 1]


def test_annotator_summaries(tmp_path: Path) -> None:
    """Three annotators on one image: user 3 disagrees with both others."""
    left = _box("r1", 0, 50)
    args = _export(tmp_path, [_task(
        1, _annotation(11, 1, left), _annotation(12, 2, left),
        _annotation(13, 3, _box("r1", 60, 30)), _annotation(14, 4, left, was_cancelled=True),
    )])  # fmt: skip
    summary = json.loads(_run(*args, "--json").stdout)["summary"]
    pairs = {tuple(p["annotators"]): p["pq"] for p in summary["annotator_pairs"]}
    assert pairs[("user 1", "user 2")] == 1.0
    assert pairs[("user 1", "user 3")] == pairs[("user 2", "user 3")] < 0.5
    mean = {a["annotator"]: a for a in summary["annotators"]}
    assert mean["user 3"]["pq"] == pairs[("user 1", "user 3")]
    assert mean["user 1"]["pq"] == pytest.approx((1 + pairs[("user 1", "user 3")]) / 2)
    assert "user 4" not in mean  # the cancelled annotation is never compared
    assert summary["tasks"][0]["pairs"] == 3


def test_against_predictions_and_ground_truth(tmp_path: Path) -> None:
    left = _box("r1", 0, 50)
    prediction = {"id": 7, "result": [_box("p1", 0, 40)]}
    args = _export(tmp_path, [
        _task(1, _annotation(11, 1, _box("r1", 60, 30)), _annotation(12, 2, left),
              predictions=[prediction]),
        _task(2, _annotation(21, 1, left, ground_truth=True), _annotation(22, 2, left),
              _annotation(23, 3, _box("r1", 0, 20))),
    ])  # fmt: skip
    predicted = json.loads(_run(*args, "--json", "--against", "predictions").stdout)["pairs"]
    assert [
        (p["a"]["annotation_id"], p["a"]["prediction"], p["b"]["annotation_id"]) for p in predicted
    ] == [(7, True, 12)]
    assert predicted[0]["per_class"]["leaf"]["tp"] == 1  # IoU 0.8
    by_user = json.loads(
        _run(*args, "--json", "--against", "predictions", "--annotation", "annotator:1").stdout
    )["pairs"]
    assert by_user[0]["b"]["annotation_id"] == 11 and by_user[0]["per_class"]["leaf"]["fp"] == 1
    truth = json.loads(_run(*args, "--json", "--against", "ground-truth").stdout)
    assert sorted((p["a"]["annotation_id"], p["b"]["annotation_id"]) for p in truth["pairs"]) == [
        (22, 21),
        (23, 21),
    ]
    assert truth["skipped"] == ["task 1: no annotation marked ground truth, or no other annotation"]


def test_table_csv_and_min_pq(tmp_path: Path) -> None:
    left = _box("r1", 0, 50)
    args = _export(tmp_path, [
        _task(1, _annotation(11, 1, left), _annotation(12, 2, left)),
        _task(2, _annotation(21, 1, _box("r1", 0, 25)), _annotation(22, 2, _box("r1", 50, 25))),
    ])  # fmt: skip
    table = _run(*args, "--min-pq", "0.9")
    assert table.exit_code == 0, table.output
    for title in ("Pairs, worst first", "Tasks, worst first", "Annotator pairs", "Classes"):
        assert title in table.stdout
    assert "tasks below --min-pq 0.9, for review: 1" in table.stdout
    assert "task 2 (img2.png): mean PQ 0.000" in table.stdout
    rows = list(csv.DictReader(io.StringIO(_run(*args, "--csv").stdout)))
    assert [(r["task_id"], r["pq"], r["a_annotator"]) for r in rows] == [
        ("2", "0.000000", "user 1"),
        ("1", "1.000000", "user 1"),
    ]
    review = json.loads(_run(*args, "--json", "--min-pq", "0.9").stdout)["review"]
    assert review == {"min_pq": 0.9, "task_ids": [2]}


def test_a_broken_annotation_fails_alone(tmp_path: Path) -> None:
    left = _box("r1", 0, 50)
    broken = _box("r9", 0, 50, label="tomato")
    args = _export(tmp_path, [
        _task(1, _annotation(11, 1, left), _annotation(12, 2, left), _annotation(13, 3, broken)),
    ])  # fmt: skip
    result = _run(*args, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [(p["a"]["annotation_id"], p["b"]["annotation_id"]) for p in report["pairs"]] == [
        (11, 12)
    ]
    assert "tomato" in result.stderr and "annotation 13" in result.stderr
    assert report["failures"][0]["annotation_id"] == 13


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    args = _export(tmp_path, [])
    assert _run(*args, "--json", "--csv").exit_code == 2
    assert _run(*args, "--min-pq", "2").exit_code == 2
    assert _run(*args, "--stuff", "sky").exit_code == 2
    empty = _run(*args)
    assert empty.exit_code == 0 and "no pairs compared" in empty.stdout


def test_mask_ids_and_json_are_plain(small_project: SyntheticProject) -> None:
    """The JSON document is standard JSON (no NaN) and every PQ lies in [0, 1]."""
    text = _run(*_args(small_project), "--json").stdout
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    values = [p["pq"] for p in report["pairs"]] + [p["sq"] for p in report["pairs"]]
    assert values and all(0 <= v <= 1 for v in values)
    assert np.isfinite(values).all()
