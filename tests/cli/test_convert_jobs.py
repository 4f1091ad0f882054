"""``convert --jobs N``: worker processes give the same bytes as one process, in every format,
with failing and skipped tasks among the images, and the same report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from cli.main import cli
from devstack.synthetic import make_project
from tests.peers import conftest as peer_files

peers = peer_files.peers  # the fixture: Label Studio files written by other people

pytest.importorskip("pyarrow")

OUTPUTS = {"pickle": "gt.pkl", "hf": "hf", "coco-panoptic": "coco"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 images (one EXIF-rotated JPEG, PNGs), every region kind, plus a task whose region has
    an unknown label (fails), one whose brush RLE is cut short (fails), one without an
    annotation (skipped) and one whose image is not among the images (skipped)."""
    folder = tmp_path_factory.mktemp("jobs")
    made = make_project(folder, n_images=7, height=120, width=160, n_brush=3, n_poly=2, seed=3)
    tasks = json.loads(made.export.read_text())
    unknown = json.loads(json.dumps(tasks[1]))
    unknown["annotations"][1]["result"][0]["value"]["brushlabels"] = ["weed"]
    tasks[1] = unknown
    short = tasks[4]["annotations"][1]["result"][0]["value"]
    short["rle"] = short["rle"][: len(short["rle"]) // 3]
    tasks[2]["annotations"] = []
    missing = {**tasks[3], "id": 99, "data": {"image": "/data/upload/1/0000ffff-elsewhere.jpg"}}
    tasks.append(missing)
    made.export.write_text(json.dumps(tasks))
    return folder


def _convert(project: Path, fmt: str, jobs: int, output: Path) -> Result:
    args = [
        "convert", str(project / "export.json"), "--images", str(project / "images"),
        "--label-config", str(project / "config.xml"), "--format", fmt,
        "--output", str(output), "--quiet", "--jobs", str(jobs),
    ]  # fmt: skip
    if fmt != "pickle":
        args += ["--split", "validation=0.4", "--seed", "1"]
    if fmt == "coco-panoptic":
        args.append("--copy-images")
    return CliRunner().invoke(cli, args)


def _files(output: Path) -> dict[str, bytes]:
    """Every file of an output (the pickle and its sidecar, or a folder), by relative name;
    the sidecar's ``created_at`` (the clock) left out."""
    if output.is_file():
        paths = {output.name: output, "meta.json": output.with_name(output.stem + ".meta.json")}
    else:
        paths = {p.relative_to(output).as_posix(): p for p in output.rglob("*") if p.is_file()}
    files = {}
    for name, path in paths.items():
        data = path.read_bytes()
        if name.endswith("meta.json"):
            sidecar = json.loads(data)
            assert sidecar.pop("created_at")
            data = json.dumps(sidecar).encode()
        files[name] = data
    return files


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The worker counts of the process pools started (none for ``--jobs 1``)."""
    from concurrent.futures import ProcessPoolExecutor

    from ls_panoptic import batch_pool

    started: list[int] = []

    class Recorded(ProcessPoolExecutor):
        def __init__(self, max_workers: int, **kwargs: Any) -> None:
            started.append(max_workers)
            super().__init__(max_workers, **kwargs)

    monkeypatch.setattr(batch_pool, "ProcessPoolExecutor", Recorded)
    return started


@pytest.mark.parametrize("fmt", list(OUTPUTS))
def test_jobs_write_the_same_bytes_as_one_process(
    project: Path, tmp_path: Path, fmt: str, pools: list[int]
) -> None:
    runs = {}
    for jobs in (1, 2, 3):
        output = tmp_path / str(jobs) / OUTPUTS[fmt]
        output.parent.mkdir()
        result = _convert(project, fmt, jobs, output)
        assert result.exit_code == 1, result.output  # two tasks fail, the others are written
        runs[jobs] = (result.output.replace(str(output.parent), "<out>"), _files(output))
    assert pools == [2, 3]  # --jobs 1 converts in this process
    report, files = runs[1]
    assert "4 images written" in report
    assert "label 'weed' is not in the label set" in report
    assert "2 tasks" in report  # skipped: no annotation, image not given
    sidecar = json.loads(files["ls-panoptic.meta.json" if fmt != "pickle" else "meta.json"])
    assert [f["task_id"] for f in sidecar["failures"]] == [2, 5]
    if fmt == "coco-panoptic":
        assert sum(name.startswith("images/") for name in files) == 4
    for jobs in (2, 3):
        assert runs[jobs][0] == report, jobs  # the report, line for line
        assert sorted(runs[jobs][1]) == sorted(files), jobs
        for name, data in files.items():
            assert runs[jobs][1][name] == data, (jobs, name)


def test_strict_with_jobs_writes_nothing(project: Path, tmp_path: Path) -> None:
    output = tmp_path / "gt.pkl"
    result = CliRunner().invoke(
        cli,
        ["convert", str(project / "export.json"), "--images", str(project / "images"),
         "--label-config", str(project / "config.xml"), "--output", str(output), "--quiet",
         "--jobs", "2", "--strict"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert not output.exists()


def test_a_photo_unreadable_by_the_format_fails_alone_with_jobs(
    project: Path, tmp_path: Path
) -> None:
    """The writer's own refusal (here hf's photo, turned upright in the worker) fails that
    task alone, as in one process."""
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    photo = copy / "images" / "plant_000.jpg"  # EXIF-rotated: hf decodes and turns it
    with photo.open("r+b") as file:  # the header and EXIF stay readable, the pixels do not
        file.truncate(1500)
    outputs = []
    for jobs in (1, 2):
        output = tmp_path / f"hf{jobs}"
        result = _convert(copy, "hf", jobs, output)
        assert result.exit_code == 1, result.output
        outputs.append((result.output.replace(str(output), "<out>"), _files(output)))
    assert outputs[0] == outputs[1]
    assert f"error: task 1: cannot read image {photo}" in outputs[0][0]
    assert "3 images written" in outputs[0][0]


def test_help_explains_jobs() -> None:
    result = CliRunner().invoke(cli, ["convert", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--jobs N" in text
    assert "worker processes" in text and "default: 1" in text
    assert "same, byte for byte" in text


class _DyingEncoder:
    """An encoder whose worker process dies, as one killed for lack of memory does."""

    def __call__(self, entry: Any, image: Any) -> None:
        os._exit(9)


def test_a_worker_that_dies_stops_the_conversion_clearly(project: Path, tmp_path: Path) -> None:
    from ls_panoptic.batch import convert_tasks
    from ls_panoptic.errors import SnapshotError
    from ls_panoptic.export import read_export
    from ls_panoptic.labels import labelset_from_config
    from ls_panoptic.model import ConvertOptions
    from ls_panoptic.writers import PickleWriter

    class Writer(PickleWriter):
        def encoder(self) -> Any:
            return _DyingEncoder()

    output = tmp_path / "gt.pkl"
    tasks, _format = read_export(project / "export.json")
    labels = labelset_from_config((project / "config.xml").read_text())
    with pytest.raises(SnapshotError, match="a worker process of --jobs stopped"):
        convert_tasks(tasks, output, labels, ConvertOptions(), writer=Writer(output), jobs=2)
    assert not output.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", list(OUTPUTS))
def test_jobs_on_exports_written_by_others(peers: Path, tmp_path: Path, fmt: str) -> None:
    """Label Studio's own converter test data (``tests/peers``): oriented boxes whose labels
    differ in letter case from the config (two of three tasks fail), and, for hf, which needs
    the photos, an export with predictions and a box past the image's edge, its photos made
    up at the sizes it states."""
    sdk = peers / "HumanSignal__label-studio-sdk/tests/custom/converter/data"
    if fmt == "hf":
        export, config = sdk / "test_export_csv/csv_test.json", None
        images = tmp_path / "images"
        images.mkdir()
        for name, size in {
            "0030019819f25b28.jpg": (768, 576),
            "00155094b7acc33b.jpg": (768, 510),
        }.items():
            Image.new("RGB", size, (90, 140, 60)).save(images / name)
    else:
        export = sdk / "test_export_yolo/data_obb.json"
        config, images = sdk / "test_export_yolo/label_config_obb.xml", None
    runs = []
    for jobs in (1, 2):
        output = tmp_path / str(jobs) / OUTPUTS[fmt]
        output.parent.mkdir()
        args = ["convert", str(export), "--output", str(output), "--quiet", "--jobs", str(jobs)]
        args += ["--format", fmt] + (["--label-config", str(config)] if config else [])
        args += ["--images", str(images)] if images else []
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == (0 if fmt == "hf" else 1), result.output
        runs.append((result.output.replace(str(output), "<out>"), _files(output)))
    assert runs[0] == runs[1]
    if fmt != "hf":
        assert runs[0][0].count("letter case") == 2


def test_previews_with_jobs_draw_the_real_masks(project: Path, tmp_path: Path) -> None:
    """The workers send each mask's pixels back when --preview draws them (a folder format
    alone needs only what its encoder made): the previews are the same as one process's."""
    previews = []
    for jobs in (1, 2):
        output = tmp_path / f"coco{jobs}"
        preview = tmp_path / f"preview{jobs}"
        args = ["convert", str(project / "export.json"), "--images", str(project / "images"),
                "--label-config", str(project / "config.xml"), "--format", "coco-panoptic",
                "--output", str(output), "--quiet", "--jobs", str(jobs),
                "--preview", str(preview)]  # fmt: skip
        assert CliRunner().invoke(cli, args).exit_code == 1
        previews.append({p.name: p.read_bytes() for p in sorted(preview.iterdir())})
    assert len(previews[0]) == 4
    assert previews[0] == previews[1]
