"""``--format hf`` output through the steps of transformers' own Mask2Former fine-tuning
example (``examples/pytorch/instance-segmentation/run_instance_segmentation.py``), in process:
``load_dataset`` on the folder, ``label2id`` from the first train row, the two-channel pairing
of instance ids with class ids, the image processor, and a forward pass with loss of a tiny
randomly initialised ``Mask2FormerForUniversalSegmentation`` (no weights from any hub)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import cli
from devstack.synthetic import SyntheticProject

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def build_hf(project: Any, images: Path, config: Path, out: Path, *extra: str) -> None:
    args = ["convert", str(project), "--images", str(images), "--label-config", str(config)]
    result = CliRunner().invoke(
        cli, [*args, "--format", "hf", "--output", str(out), "--quiet", *extra]
    )
    assert result.exit_code == 0, result.output


def example_transform(example_batch: dict[str, list[Any]], processor: Any) -> dict[str, list[Any]]:
    """The example's ``augment_and_transform_batch`` without augmentation (identity)."""
    batch: dict[str, list[Any]] = {"pixel_values": [], "mask_labels": [], "class_labels": []}
    for pil_image, pil_annotation in zip(
        example_batch["image"], example_batch["annotation"], strict=True
    ):
        image = np.array(pil_image)
        semantic_and_instance_masks = np.array(pil_annotation)[..., :2]
        instance_mask = semantic_and_instance_masks[..., 1]
        pairs = np.unique(semantic_and_instance_masks.reshape(-1, 2), axis=0)
        instance_id_to_semantic_id = {int(inst): int(sem) for sem, inst in pairs}
        model_inputs = processor(
            images=[image],
            segmentation_maps=[instance_mask],
            instance_id_to_semantic_id=instance_id_to_semantic_id,
            return_tensors="pt",
        )
        batch["pixel_values"].append(model_inputs.pixel_values[0])
        batch["mask_labels"].append(model_inputs.mask_labels[0])
        batch["class_labels"].append(model_inputs.class_labels[0])
    return batch


def tiny_model(id2label: dict[int, str]) -> Any:
    backbone = transformers.SwinConfig(
        image_size=64, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone, use_pretrained_backbone=False, hidden_dim=32,
        mask_feature_size=32, feature_size=32, encoder_feedforward_dim=64, dim_feedforward=64,
        encoder_layers=1, decoder_layers=2, num_attention_heads=2, num_queries=8,
        train_num_points=64, id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.Mask2FormerForUniversalSegmentation(config)


def run_example_steps(folder: Path, want: dict[str, Any]) -> None:
    dataset = datasets.load_dataset(str(folder))
    label2id = dataset["train"][0]["semantic_class_to_id"]
    id2label = {v: k for k, v in label2id.items()}
    assert set(dataset) <= {"train", "validation"}
    rows = [row for split in dataset.values() for row in split]
    assert sorted(r["image_name"] for r in rows) == sorted(want)
    for row in rows:  # the example's pairing gives back the pickle's inst2class exactly
        ann = np.array(row["annotation"])
        assert ann.dtype == np.uint8 and ann.shape[2] == 3 and not ann[..., 2].any()
        entry = want[row["image_name"]]
        assert np.array_equal(ann[..., 1].astype(np.uint32), entry["panoptic_mask"])
        pairs = np.unique(ann[..., :2].reshape(-1, 2), axis=0)
        assert {int(i): int(c) for c, i in pairs} == entry["inst2class"]
        assert row["image"].size == entry["panoptic_mask"].shape[::-1]
    processor = transformers.Mask2FormerImageProcessor(
        do_resize=True, size={"height": 64, "width": 64}, do_reduce_labels=False,
        ignore_index=255,
    )  # fmt: skip
    train = dataset["train"].with_transform(lambda b: example_transform(b, processor))
    batch = [train[i] for i in range(min(2, len(train)))]
    model = tiny_model(id2label)
    model.train()
    outputs = model(
        pixel_values=torch.stack([b["pixel_values"] for b in batch]),
        mask_labels=[b["mask_labels"] for b in batch],
        class_labels=[b["class_labels"] for b in batch],
    )
    assert torch.isfinite(outputs.loss) and outputs.loss.item() > 0
    outputs.loss.backward()


def test_transformers_example_trains_on_the_hf_output(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    pkl, folder = tmp_path / "gt.pkl", tmp_path / "hf"
    runner = CliRunner()
    args = ["convert", str(small_project.export), "--images", str(small_project.images),
            "--label-config", str(small_project.config), "--quiet"]  # fmt: skip
    assert runner.invoke(cli, [*args, "--output", str(pkl)]).exit_code == 0
    build_hf(small_project.export, small_project.images, small_project.config, folder)
    with pkl.open("rb") as file:
        want = pickle.load(file)
    run_example_steps(folder, want)


def test_the_card_declares_the_features_load_dataset_gives(
    small_project: SyntheticProject, tmp_path: Path
) -> None:
    """The card's ``dataset_info`` (what the Hub's viewer reads) gives the documented columns,
    the same that ``load_dataset`` gives; labels with YAML syntax in them stay one name."""
    import yaml

    id2label = {0: "leaf", 1: 'stem: "main"', 2: "tomate rôtie", 3: "background"}
    mapping = tmp_path / "id2label.json"
    mapping.write_text(json.dumps({str(i): label for i, label in id2label.items()}))
    export = json.loads(small_project.export.read_text())
    renames = {"leaf": "leaf", "stem": id2label[1], "tomato": id2label[2]}
    for task in export:
        for annotation in task["annotations"]:
            for item in annotation["result"]:
                for key in ("brushlabels", "bitmasklabels", "polygonlabels",
                            "rectanglelabels", "ellipselabels"):  # fmt: skip
                    if key in item["value"]:
                        item["value"][key] = [renames[item["value"][key][0]]]
    renamed = tmp_path / "export.json"
    renamed.write_text(json.dumps(export))
    folder = tmp_path / "hf"
    result = CliRunner().invoke(
        cli,
        ["convert", str(renamed), "--images", str(small_project.images), "--id2label",
         str(mapping), "--format", "hf", "--output", str(folder), "--quiet",
         "--split", "validation=0.5", "--seed", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    value = datasets.Value
    documented = datasets.Features(
        {
            "image": datasets.Image(),
            "annotation": datasets.Image(),
            "semantic_class_to_id": {label: value("int64") for label in id2label.values()},
            "image_name": value("string"),
            "task_id": value("int64"),
            "inst2class": datasets.List(
                {"instance_id": value("int64"), "class_id": value("int64")}
            ),
            "id2label": {str(i): value("string") for i in id2label},
        }
    )
    card = (folder / "README.md").read_text(encoding="utf-8").split("---\n")[1]
    info = yaml.safe_load(card)["dataset_info"]
    assert datasets.Features._from_yaml_list(info["features"]) == documented
    loaded = datasets.load_dataset(str(folder))
    counts = {s["name"]: s["num_examples"] for s in info["splits"]}
    assert counts == {name: loaded[name].num_rows for name in loaded}
    assert sum(counts.values()) == 4 and min(counts.values()) >= 1
    for name in loaded:
        assert loaded[name].features == documented, name
    assert loaded["train"][0]["semantic_class_to_id"] == {c: i for i, c in id2label.items()}
