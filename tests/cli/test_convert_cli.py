"""`ls-panoptic convert` as users run it: output contract, exit codes, errors, options."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from devstack.synthetic import SyntheticProject


def _run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["convert", *args, "--quiet"], input=stdin)


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        data: dict[str, Any] = pickle.load(file)
    return data


def _edited_export(project: SyntheticProject, tmp_path: Path, edit: Any) -> Path:
    tasks = json.loads(project.export.read_text())
    edit(tasks)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(tasks))
    return path


def _base_args(project: SyntheticProject, out: Path) -> list[str]:
    return [
        "--images",
        str(project.images),
        "--label-config",
        str(project.config),
        "--output",
        str(out),
    ]


def test_converts_every_task_to_the_output_contract(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    out = tmp_path / "gt.pkl"
    result = _run(str(small_project.export), *_base_args(small_project, out))
    assert result.exit_code == 0, result.output
    snapshot = _load(out)
    assert sorted(snapshot) == [f"plant_{n:03d}.{'jpg' if n % 2 == 0 else 'png'}" for n in range(4)]
    for entry in snapshot.values():
        assert set(entry) == {"panoptic_mask", "inst2class"}
        mask, inst2class = entry["panoptic_mask"], entry["inst2class"]
        assert mask.dtype == np.uint32 and mask.shape == (96, 128) and mask.flags.c_contiguous
        assert set(np.unique(mask).tolist()) == set(inst2class)
        assert sorted(inst2class) == list(range(1, len(inst2class) + 1))
        assert all(type(k) is int and type(v) is int for k, v in inst2class.items())
    meta = json.loads((tmp_path / "gt.meta.json").read_text())
    assert meta["id2label"] == {"0": "leaf", "1": "stem", "2": "tomato", "3": "background"}
    newest = {
        t["id"]: t["annotations"][1]["id"] for t in json.loads(small_project.export.read_text())
    }
    for entry_meta in meta["entries"].values():
        assert entry_meta["annotation_id"] == newest[entry_meta["task_id"]]
    assert "4 images written" in result.output


def test_output_is_byte_identical_across_runs(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    one, two = tmp_path / "1.pkl", tmp_path / "2.pkl"
    assert _run(str(small_project.export), *_base_args(small_project, one)).exit_code == 0
    assert _run(str(small_project.export), *_base_args(small_project, two)).exit_code == 0
    assert one.read_bytes() == two.read_bytes()


def test_file_orientation_puts_the_mask_on_the_stored_grid(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    display, stored = tmp_path / "d.pkl", tmp_path / "s.pkl"
    assert _run(str(small_project.export), *_base_args(small_project, display)).exit_code == 0
    result = _run(
        str(small_project.export), *_base_args(small_project, stored), "--orientation", "file"
    )
    assert result.exit_code == 0, result.output
    d, s = _load(display)["plant_000.jpg"], _load(stored)["plant_000.jpg"]
    assert s["panoptic_mask"].shape == (128, 96)  # stored sideways, EXIF orientation 6
    np.testing.assert_array_equal(np.rot90(s["panoptic_mask"], -1), d["panoptic_mask"])
    np.testing.assert_array_equal(
        _load(stored)["plant_001.png"]["panoptic_mask"],
        _load(display)["plant_001.png"]["panoptic_mask"],
    )


def test_unknown_label_fails_that_image_only(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    def edit(tasks: list[dict[str, Any]]) -> None:
        item = tasks[1]["annotations"][1]["result"][0]
        item["value"]["brushlabels"] = ["fruit"]

    out = tmp_path / "gt.pkl"
    result = _run(
        str(_edited_export(small_project, tmp_path, edit)), *_base_args(small_project, out)
    )
    assert result.exit_code == 1
    assert "task 2: region t1b0: label 'fruit' is not in the label set" in result.output
    assert sorted(_load(out)) == ["plant_000.jpg", "plant_002.jpg", "plant_003.png"]
    skipped = _run(
        str(tmp_path / "edited.json"),
        *_base_args(small_project, tmp_path / "k.pkl"),
        "--unknown-labels",
        "skip",
    )
    assert skipped.exit_code == 0 and len(_load(tmp_path / "k.pkl")) == 4


def test_strict_writes_nothing_on_failure(small_project: SyntheticProject, tmp_path: Path) -> None:
    def edit(tasks: list[dict[str, Any]]) -> None:
        tasks[0]["annotations"][1]["result"][0]["value"]["rle"] = [1, 2, 3]

    out = tmp_path / "gt.pkl"
    result = _run(
        str(_edited_export(small_project, tmp_path, edit)),
        *_base_args(small_project, out),
        "--strict",
    )
    assert result.exit_code == 1
    assert "task 1: region t0b0: brush:" in result.output
    assert not out.exists()


def test_same_image_name_in_two_tasks_names_both(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    def edit(tasks: list[dict[str, Any]]) -> None:
        tasks[3]["data"]["image"] = tasks[2]["data"]["image"].replace("00000002", "deadbeef")

    out = tmp_path / "gt.pkl"
    result = _run(
        str(_edited_export(small_project, tmp_path, edit)), *_base_args(small_project, out)
    )
    assert result.exit_code == 1
    assert "task 3: image key 'plant_002.jpg' is also produced by task 4" in result.output
    assert "task 4: image key 'plant_002.jpg' is also produced by task 3" in result.output
    assert sorted(_load(out)) == ["plant_000.jpg", "plant_001.png"]
    by_task = _run(
        str(tmp_path / "edited.json"),
        *_base_args(small_project, tmp_path / "t.pkl"),
        "--key",
        "task",
    )
    assert by_task.exit_code == 0, by_task.output
    assert sorted(_load(tmp_path / "t.pkl")) == ["1", "2", "3", "4"]


def test_an_image_past_the_time_limit_fails_alone(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    zigzag = [[100.0 * n / 20_000, 0.0 if n % 2 else 100.0] for n in range(20_000)]
    huge = {"id": "p1", "type": "polygonlabels", "original_width": 4000, "original_height": 3000,
            "value": {"points": zigzag, "polygonlabels": ["leaf"]}}  # fmt: skip

    def edit(tasks: list[dict[str, Any]]) -> None:
        tasks[1]["annotations"][1]["result"] = [huge]  # 60 million crossings: seconds of work

    out = tmp_path / "gt.pkl"
    export = str(_edited_export(small_project, tmp_path, edit))
    args = [export, "--label-config", str(small_project.config), "--output", str(out)]
    result = _run(*args, "--time-limit", "0.5")
    assert result.exit_code == 1, result.output
    assert (
        "task 2: conversion took longer than the 0.5 s limit (stopped at region p1); "
        "raise --time-limit" in result.output
    )
    assert "Traceback" not in result.output
    assert sorted(_load(out)) == ["plant_000.jpg", "plant_002.jpg", "plant_003.png"]
    meta = json.loads((tmp_path / "gt.meta.json").read_text())
    assert meta["options"]["time_limit"] == 0.5


def test_without_images_or_config_labels_are_guessed_and_printed(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    out = tmp_path / "gt.pkl"
    result = _run(str(small_project.export), "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "labels found in the export" in result.output
    assert "orientation cannot be checked" in result.output
    assert len(_load(out)) == 4


def test_export_from_stdin(small_project: SyntheticProject, tmp_path: Path) -> None:
    out = tmp_path / "gt.pkl"
    result = _run("-", *_base_args(small_project, out), stdin=small_project.export.read_text())
    assert result.exit_code == 0, result.output
    assert len(_load(out)) == 4


def test_previews_are_written(small_project: SyntheticProject, tmp_path: Path) -> None:
    result = _run(
        str(small_project.export),
        *_base_args(small_project, tmp_path / "gt.pkl"),
        "--preview",
        str(tmp_path / "prev"),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "prev").iterdir())[0] == "plant_000.jpg.preview.png"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{export}", "--output", "{out}", "--annotation", "newest"], "annotation"),
        (
            ["{export}", "--output", "{out}", "--stuff", "sky", "--label-config", "{config}"],
            "--stuff sky: not in the label set",
        ),
        (["{bad}", "--output", "{out}"], "not valid JSON"),
        (["{export}", "--output", "{out}", "--label-config", "{bad}"], "config"),
        (["{export}", "--output", "{out}", "--time-limit", "0"], "--time-limit"),
        (["{export}", "--output", "{out}", "--time-limit", "-5"], "--time-limit"),
        (["{export}", "--output", "{out}", "--time-limit", "inf"], "finite number of seconds"),
        (["{export}", "--output", "{out}", "--time-limit", "soon"], "--time-limit"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_line(
    small_project: SyntheticProject, tmp_path: Path, args: list[str], message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    values = {
        "export": str(small_project.export),
        "out": str(tmp_path / "o.pkl"),
        "config": str(small_project.config),
        "bad": str(bad),
    }
    result = _run(*[a.format(**values) for a in args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
