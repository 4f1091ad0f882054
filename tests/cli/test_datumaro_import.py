"""``--format coco-panoptic`` output imported with Datumaro's own ``coco_panoptic`` importer:
its items, masks, segment ids and categories are the pickle's."""

from __future__ import annotations

import pickle
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import cli
from devstack.synthetic import SyntheticProject

dm = pytest.importorskip("datumaro")


@pytest.mark.parametrize("copy_images", [False, True])
def test_datumaro_imports_the_pickles_masks(
    small_project: SyntheticProject, tmp_path: Path, copy_images: bool
) -> None:
    args = ["convert", str(small_project.export), "--images", str(small_project.images),
            "--label-config", str(small_project.config), "--quiet"]  # fmt: skip
    runner = CliRunner()
    assert runner.invoke(cli, [*args, "--output", str(tmp_path / "gt.pkl")]).exit_code == 0
    coco = ["--format", "coco-panoptic", "--split", "validation=0.5", "--seed", "3"]
    coco += ["--copy-images"] if copy_images else []
    result = runner.invoke(cli, [*args, "--output", str(tmp_path / "coco"), *coco])
    assert result.exit_code == 0, result.output
    with (tmp_path / "gt.pkl").open("rb") as file:
        want = pickle.load(file)

    dataset = dm.Dataset.import_from(str(tmp_path / "coco"), "coco_panoptic")
    labels = [c.name for c in dataset.categories()[dm.AnnotationType.label].items]
    assert labels == ["leaf", "stem", "tomato", "background"]  # category id - 1 = class id
    assert set(dataset.subsets()) == {"train", "validation"}
    by_id = {PurePosixPath(key).stem: key for key in want}
    assert sorted(item.id for item in dataset) == sorted(by_id)
    for item in dataset:
        entry = want[by_id[item.id]]
        mask, inst2class = entry["panoptic_mask"], entry["inst2class"]
        masks = [a for a in item.annotations if a.type == dm.AnnotationType.mask]
        assert sorted(a.id for a in masks) == sorted(inst2class)
        rebuilt = np.zeros(mask.shape, dtype=np.uint32)
        for ann in masks:
            assert labels[ann.label] == labels[inst2class[ann.id]]
            assert ann.label == inst2class[ann.id]
            assert not ann.attributes.get("is_crowd")
            rebuilt[ann.image.astype(bool)] = ann.id
        assert np.array_equal(rebuilt, mask), item.id
        if copy_images:
            assert item.media.size == mask.shape
