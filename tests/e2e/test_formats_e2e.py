"""A real Label Studio 1.23.2 export (every region kind, an EXIF-rotated JPEG) converted to
``--format hf`` and ``coco-panoptic``: every entry reads back equal to the pickle's, bit for
bit; the hf folder goes through transformers' example steps, the COCO one through Datumaro."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import cli
from ls_panoptic.reading import open_snapshot
from tests.cli.test_formats_cli import assert_same_entries

from .build_project import LabelStudioExport

pytestmark = pytest.mark.e2e


def _convert(ls_export: LabelStudioExport, output: Path, *extra: str) -> None:
    args = ["convert", str(ls_export.json_path), "--images", str(ls_export.images_dir),
            "--label-config", str(ls_export.label_config_path), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--output", str(output), *extra])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def outputs(ls_export: LabelStudioExport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats-e2e")
    _convert(ls_export, root / "gt.pkl")
    split = ["--split", "validation=0.3", "--seed", "1"]
    _convert(ls_export, root / "hf", "--format", "hf", *split)
    _convert(ls_export, root / "coco", "--format", "coco-panoptic", "--copy-images", *split)
    return root


@pytest.mark.parametrize("fmt", ["hf", "coco"])
def test_real_export_reads_back_as_the_pickle(outputs: Path, fmt: str) -> None:
    with (outputs / "gt.pkl").open("rb") as file:
        want = pickle.load(file)
    assert len(want) >= 3
    assert_same_entries(dict(open_snapshot(outputs / fmt).items()), want)


def test_real_export_trains_in_transformers_example(
    outputs: Path, ls_export: LabelStudioExport
) -> None:
    pytest.importorskip("datasets")
    from tests.cli.test_hf_example import run_example_steps

    with (outputs / "gt.pkl").open("rb") as file:
        want = pickle.load(file)
    run_example_steps(outputs / "hf", want)
    # the EXIF-rotated JPEG is stored as displayed: the frame of its mask
    import datasets

    rows = [r for s in datasets.load_dataset(str(outputs / "hf")).values() for r in s]
    rotated = next(r for r in rows if r["image_name"] == ls_export.exif_image)
    with Image.open(ls_export.images_dir / ls_export.exif_image) as stored:
        assert rotated["image"].size == stored.size[::-1]


def test_real_export_imports_in_datumaro(outputs: Path) -> None:
    dm = pytest.importorskip("datumaro")
    with (outputs / "gt.pkl").open("rb") as file:
        want = pickle.load(file)
    dataset = dm.Dataset.import_from(str(outputs / "coco"), "coco_panoptic")
    stems = {Path(k).stem: k for k in want}
    assert sorted(item.id for item in dataset) == sorted(stems)
    for item in dataset:
        entry = want[stems[item.id]]
        rebuilt = np.zeros(entry["panoptic_mask"].shape, dtype=np.uint32)
        for ann in item.annotations:
            assert ann.label == entry["inst2class"][ann.id]
            rebuilt[ann.image.astype(bool)] = ann.id
        assert np.array_equal(rebuilt, entry["panoptic_mask"])
        assert item.media.size == entry["panoptic_mask"].shape
