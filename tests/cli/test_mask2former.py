"""Our entries feed Hugging Face's Mask2FormerImageProcessor (resize on) as users do."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import cli
from devstack.synthetic import LABELS, SyntheticProject

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def snapshot(
    small_project: SyntheticProject,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, object]]:
    out = tmp_path_factory.mktemp("hf") / "gt.pkl"
    result = CliRunner().invoke(
        cli,
        [
            "convert",
            str(small_project.export),
            "--images",
            str(small_project.images),
            "--label-config",
            str(small_project.config),
            "--output",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    with out.open("rb") as file:
        data: dict[str, dict[str, object]] = pickle.load(file)
    return data


@pytest.mark.parametrize("ignore_index", [0, 255])
def test_processor_gets_every_instance_with_its_class(
    snapshot: dict[str, dict[str, object]], ignore_index: int
) -> None:
    processor = transformers.Mask2FormerImageProcessor(
        do_resize=True,
        size={"height": 64, "width": 48},
        do_pad=False,
        ignore_index=ignore_index,
        do_reduce_labels=False,
    )
    for key, entry in snapshot.items():
        mask = entry["panoptic_mask"]
        inst2class = entry["inst2class"]
        assert isinstance(mask, np.ndarray) and isinstance(inst2class, dict)
        image = np.zeros((*mask.shape, 3), dtype=np.uint8)
        out = processor(
            images=[image],
            segmentation_maps=[mask],
            instance_id_to_semantic_id=inst2class,
            return_tensors="pt",
        )
        masks = out["mask_labels"][0].numpy()
        classes = out["class_labels"][0].numpy().tolist()
        # What survives a nearest-neighbour resize of our mask, independently computed:
        resized = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((48, 64), Image.NEAREST))
        survivors = sorted(int(i) for i in np.unique(resized))
        assert classes == [inst2class[i] for i in survivors], key
        assert masks.shape[0] == len(survivors)
        masks = masks[:, :64, :48]  # the processor may pad; padding belongs to no instance
        # No pixel is ignored (0 is never an instance id), no pixel belongs to two instances.
        np.testing.assert_array_equal(masks.sum(axis=0), np.ones((64, 48)))
        assert len(LABELS) in classes  # background: leaf, stem, tomato -> 3


def test_ids_fit_the_pil_resize_path(snapshot: dict[str, dict[str, object]]) -> None:
    for entry in snapshot.values():
        mask = entry["panoptic_mask"]
        assert isinstance(mask, np.ndarray) and int(mask.max()) <= 255


def test_processor_accepts_entries_from_disk_unchanged(
    snapshot: dict[str, dict[str, object]], tmp_path: Path
) -> None:
    path = tmp_path / "again.pkl"
    path.write_bytes(pickle.dumps(snapshot))
    processor = transformers.Mask2FormerImageProcessor(
        do_resize=True, size={"shortest_edge": 32, "longest_edge": 64}
    )
    entry = pickle.loads(path.read_bytes())[next(iter(snapshot))]
    image = np.zeros((*entry["panoptic_mask"].shape, 3), dtype=np.uint8)
    out = processor(
        images=image,
        segmentation_maps=entry["panoptic_mask"],
        instance_id_to_semantic_id=entry["inst2class"],
        return_tensors="pt",
    )
    assert len(out["class_labels"][0]) >= 2
