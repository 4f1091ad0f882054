"""``convert --format hf|coco-panoptic``: every entry reads back equal to the pickle's, bit for
bit (mask dtype, shape, pixels; inst2class and its order), through ``open_snapshot``."""

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
from ls_panoptic.reading import open_snapshot
from ls_panoptic.splits import split_of
from ls_panoptic.writers import FOLDER_SIDECAR

pytest.importorskip("pyarrow")


def _convert(project: SyntheticProject, output: Path, *extra: str, images: bool = True) -> Result:
    args = ["convert", str(project.export), "--label-config", str(project.config)]
    if images:
        args += ["--images", str(project.images)]
    return CliRunner().invoke(cli, [*args, "--output", str(output), "--quiet", *extra])


@pytest.fixture(scope="module")
def outputs(
    small_project: SyntheticProject, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    paths = {"pickle": root / "gt.pkl", "hf": root / "hf", "coco-panoptic": root / "coco"}
    for name, path in paths.items():
        extra = [] if name == "pickle" else ["--split", "validation=0.5", "--seed", "3"]
        result = _convert(small_project, path, "--format", name, *extra)
        assert result.exit_code == 0, result.output
    return paths


def assert_same_entries(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Bit for bit: keys, mask dtype, shape, contiguity and pixels, inst2class with order."""
    assert sorted(got) == sorted(want)
    for key, entry in want.items():
        mask = got[key]["panoptic_mask"]
        assert mask.dtype == np.uint32 and mask.flags.c_contiguous, key
        assert mask.shape == entry["panoptic_mask"].shape, key
        assert mask.tobytes() == entry["panoptic_mask"].tobytes(), key
        assert list(got[key]["inst2class"].items()) == list(entry["inst2class"].items()), key
        assert all(type(k) is int and type(v) is int for k, v in got[key]["inst2class"].items())


@pytest.mark.parametrize("fmt", ["pickle", "hf", "coco-panoptic"])
def test_every_format_reads_back_as_the_pickle(outputs: dict[str, Path], fmt: str) -> None:
    with outputs["pickle"].open("rb") as file:
        want = pickle.load(file)
    snapshot = open_snapshot(outputs[fmt])
    assert snapshot.format == fmt
    assert_same_entries(dict(snapshot.items()), want)
    assert snapshot.id2label == {0: "leaf", 1: "stem", 2: "tomato", 3: "background"}


def test_splits_follow_the_image_key_and_seed(outputs: dict[str, Path]) -> None:
    with outputs["pickle"].open("rb") as file:
        keys = sorted(pickle.load(file))
    expected = {k: split_of(k, {"validation": 0.5}, 3) for k in keys}
    assert set(expected.values()) == {"train", "validation"}  # seed 3 gives both here
    coco = outputs["coco-panoptic"] / "annotations"
    for split in ("train", "validation"):
        doc = json.loads((coco / f"panoptic_{split}.json").read_text())
        assert sorted(i["file_name"] for i in doc["images"]) == sorted(
            k for k, s in expected.items() if s == split
        )
    shards = sorted(p.name for p in (outputs["hf"] / "data").glob("*.parquet"))
    assert shards == ["train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    card = (outputs["hf"] / "README.md").read_text()
    assert "- split: validation\n    path: data/validation-*" in card
    assert (outputs["hf"] / FOLDER_SIDECAR).is_file()


def test_coco_categories_are_class_ids_plus_one(outputs: dict[str, Path]) -> None:
    doc = json.loads((outputs["coco-panoptic"] / "annotations/panoptic_train.json").read_text())
    cats = {c["id"]: (c["name"], c["isthing"]) for c in doc["categories"]}
    assert cats == {1: ("leaf", 1), 2: ("stem", 1), 3: ("tomato", 1), 4: ("background", 0)}
    assert "class id + 1" in doc["ls_panoptic"]["category_id"]
    for ann in doc["annotations"]:
        for seg in ann["segments_info"]:
            assert seg["id"] > 0 and seg["category_id"] > 0 and seg["iscrowd"] == 0
            assert seg["area"] > 0 and len(seg["bbox"]) == 4


def test_hf_needs_the_images(small_project: SyntheticProject, tmp_path: Path) -> None:
    result = _convert(small_project, tmp_path / "hf", "--format", "hf", images=False)
    assert result.exit_code == 2
    assert "--format hf embeds each photo" in result.output and "--images" in result.output
    assert not (tmp_path / "hf").exists()


def test_pickle_takes_no_split(small_project: SyntheticProject, tmp_path: Path) -> None:
    result = _convert(small_project, tmp_path / "gt.pkl", "--split", "validation=0.1")
    assert result.exit_code == 2 and "--format hf and coco-panoptic" in result.output


@pytest.mark.parametrize("spec", ["validation", "validation=1.5", "train=0.1", "v=0.6 w=0.5"])
def test_bad_splits_say_how_to_write_them(
    small_project: SyntheticProject, tmp_path: Path, spec: str
) -> None:
    splits = [a for s in spec.split() for a in ("--split", s)]
    result = _convert(small_project, tmp_path / "hf", "--format", "hf", *splits)
    assert result.exit_code == 2 and "--split" in result.output


def test_a_foreign_folder_is_never_replaced(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    result = _convert(small_project, folder, "--format", "coco-panoptic")
    assert result.exit_code == 2 and "give --output a new folder name" in result.output
    assert (folder / "notes.txt").read_text() == "keep me"


def test_an_earlier_output_is_replaced(small_project: SyntheticProject, tmp_path: Path) -> None:
    folder = tmp_path / "coco"
    assert _convert(small_project, folder, "--format", "coco-panoptic").exit_code == 0
    result = _convert(small_project, folder, "--format", "coco-panoptic", "--copy-images")
    assert result.exit_code == 0, result.output
    assert len(list((folder / "images" / "train").iterdir())) == 4


def test_ids_above_255_fail_hf_clearly(small_project: SyntheticProject, tmp_path: Path) -> None:
    from ls_panoptic.errors import ImageError, SnapshotError
    from ls_panoptic.hf_dataset import HFDatasetWriter
    from ls_panoptic.images import read_image_info
    from ls_panoptic.model import Entry

    photo = read_image_info(next(small_project.images.glob("*.png")))
    mask = (np.arange(photo.height * photo.width, dtype=np.uint32) % 300 + 1).reshape(
        photo.height, photo.width
    )
    many = Entry("many.png", mask, {i: 0 for i in range(1, 301)}, {"task_id": 1})
    with HFDatasetWriter(tmp_path / "hf", {0: "leaf", 1: "background"}) as writer:
        with pytest.raises(ImageError, match="instance id 300 does not fit the 8-bit") as err:
            writer.add(many, photo)
        assert "--format coco-panoptic or pickle" in str(err.value)
    with pytest.raises(SnapshotError, match=r"class id 256 .* does not fit"):
        HFDatasetWriter(tmp_path / "hf2", {i: f"c{i}" for i in range(257)})
