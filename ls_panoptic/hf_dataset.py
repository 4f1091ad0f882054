"""Hugging Face dataset output (``convert --format hf``): what transformers' own Mask2Former
fine-tuning example (``examples/pytorch/instance-segmentation/run_instance_segmentation.py``)
trains on unchanged, with ``--dataset_name <folder>`` and without ``--do_reduce_labels``.

Layout of the output folder (the Hub's, so ``datasets.load_dataset(folder)`` and
``push_to_hub`` take it as it is)::

    README.md                                 dataset card: YAML ``configs`` (one split per
                                              ``data/<split>-*`` pattern), id2label, counts,
                                              class shares
    data/<split>-00000-of-0000N.parquet       rows, about 500 MB a shard, one row group a
                                              row (memory holds one row's bytes)
    ls-panoptic.meta.json                     the sidecar (provenance, failures)

One row per image (Parquet schema; the ``huggingface`` schema metadata gives ``datasets``
the features)::

    image                 Image: the photo in the mask's frame (EXIF applied for the
                          ``display`` orientation; :func:`~ls_panoptic.segments.displayed_photo`)
    annotation            Image: lossless RGB PNG, R = class id, G = instance id, B = 0
    semantic_class_to_id  {label: class id}, every label, background included
    image_name            the image key (the pickle's dict key)
    task_id               the Label Studio task id
    inst2class            [{"instance_id", "class_id"}], the pickle's inst2class in order
    id2label              {"<class id>": label}

An 8-bit channel holds ids up to 255: a label set with a class id above 255 is refused before
anything is written, and an image with an instance id above 255 fails alone (the pickle and
COCO panoptic have no such limit). Instance ids are the pickle's, unchanged, so
:func:`read_hf_dataset` gives back the pickle's mask bit for bit (``uint32``, from G).
A row's parts are built by :class:`~ls_panoptic.hf_rows.HFEncoder` (in a worker process
with ``convert --jobs N``); this module only puts them in Parquet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Parquet is the Hub's format for datasets; pyarrow writes it row group by row group, so a
# dataset of any size is written in bounded memory (``datasets`` itself is not needed to write)
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SnapshotError
from .hf_card import dataset_card
from .hf_rows import MAX_CHANNEL_ID, Encoded, HFEncoder
from .images import ImageInfo
from .model import Entry, Orientation
from .splits import DEFAULT_SPLIT, split_of
from .writers import FolderWriter

__all__ = ["MAX_CHANNEL_ID", "HFDatasetWriter", "read_hf_dataset"]

SHARD_BYTES = 500 * 2**20  # the Hub's advice: shards of a few hundred MB
_VALUE = {
    "int64": {"dtype": "int64", "_type": "Value"},
    "str": {"dtype": "string", "_type": "Value"},
}


def _schema(id2label: Mapping[int, str]) -> pa.Schema:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    labels = [label for _id, label in sorted(id2label.items())]
    ids = [str(i) for i in sorted(id2label)]
    pair = pa.struct([("instance_id", pa.int64()), ("class_id", pa.int64())])
    features = {
        "image": {"_type": "Image"},
        "annotation": {"_type": "Image"},
        "semantic_class_to_id": {label: _VALUE["int64"] for label in labels},
        "image_name": _VALUE["str"],
        "task_id": _VALUE["int64"],
        "inst2class": {
            "feature": {"instance_id": _VALUE["int64"], "class_id": _VALUE["int64"]},
            "_type": "List",
        },
        "id2label": {i: _VALUE["str"] for i in ids},
    }
    return pa.schema(
        [
            ("image", image),
            ("annotation", image),
            ("semantic_class_to_id", pa.struct([(label, pa.int64()) for label in labels])),
            ("image_name", pa.string()),
            ("task_id", pa.int64()),
            ("inst2class", pa.list_(pair)),
            ("id2label", pa.struct([(i, pa.string()) for i in ids])),
        ],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )


def _column(values: list[Any], kind: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``kind`` (int64, string, binary, struct, list), built
    from buffers: bytes values are wrapped, not copied (a 24 MB photo went through
    ``Table.from_pylist`` as one more copy), and ``pa.array`` is never called (its first call
    imports pandas: 0.3 s and 75 MB for nothing here)."""
    n = len(values)
    if pa.types.is_int64(kind):
        data = pa.py_buffer(np.array([0 if v is None else v for v in values], dtype=np.int64))
        nulls = sum(v is None for v in values)
        valid = None
        if nulls:
            bits = np.packbits([v is not None for v in values], bitorder="little")
            valid = pa.py_buffer(bits)
        return pa.Array.from_buffers(kind, n, [valid, data], null_count=nulls)
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        blobs = [v.encode() if isinstance(v, str) else v for v in values]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        data = pa.py_buffer(blobs[0] if n == 1 else b"".join(blobs))
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), data])
    if pa.types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        children = [_column([v[f.name] for v in values], f.type) for f in fields]
        return pa.StructArray.from_arrays(children, fields=fields)
    if pa.types.is_list(kind):
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum([len(v) for v in values], out=offsets[1:])
        child = _column([item for v in values for item in v], kind.value_type)
        return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets)], children=[child])
    raise TypeError(f"no column of {kind}")


@dataclass
class _Split:
    """One split's open shard and its totals."""

    name: str
    shards: list[Path] = field(default_factory=list)
    writer: pq.ParquetWriter | None = None
    shard_bytes: int = 0
    count: int = 0
    pixels: dict[int, int] = field(default_factory=dict)


class HFDatasetWriter(FolderWriter):
    """Writes the folder described above; an :class:`~ls_panoptic.writers.EntryWriter`.

    Raises:
        SnapshotError: a class id above 255 (the annotation's channel 0 is 8-bit).
    """

    def __init__(
        self,
        folder: Path,
        id2label: Mapping[int, str],
        *,
        splits: Mapping[str, float] | None = None,
        seed: int = 0,
        orientation: Orientation = "display",
        shard_bytes: int = SHARD_BYTES,
    ) -> None:
        too_big = [i for i in id2label if i > MAX_CHANNEL_ID]
        if too_big:
            raise SnapshotError(
                f"class id {max(too_big)} ({id2label[max(too_big)]!r}) does not fit the "
                f"8-bit class channel of --format hf's annotation PNG (ids 0..{MAX_CHANNEL_ID}); "
                "write --format coco-panoptic or pickle, which have no such limit"
            )
        super().__init__(folder)
        self._id2label = dict(id2label)
        self._schema = _schema(id2label)
        self._labels = {label: i for i, label in sorted(id2label.items())}
        self._splits = {name: _Split(name) for name in [DEFAULT_SPLIT, *(splits or {})]}
        self._fractions, self._seed = dict(splits or {}), seed
        self._orientation, self._shard_bytes = orientation, shard_bytes

    def _begin(self) -> None:
        (self._root / "data").mkdir()

    def add(self, entry: Entry, image: ImageInfo | None) -> None:
        encoder = self.encoder()
        photo, ids, lut = encoder.check(entry, image)  # an 8-bit copy: the mask is reused
        self._work.submit(lambda: self._append(entry, encoder.encode(entry, photo, ids, lut)))

    def encoder(self) -> HFEncoder:
        return HFEncoder(self._orientation)

    def add_encoded(self, entry: Entry, image: ImageInfo | None, encoded: Any) -> None:
        self._work.submit(lambda: self._append(entry, encoded))

    def _append(self, entry: Entry, encoded: Encoded) -> None:
        split = self._splits[split_of(entry.key, self._fractions, self._seed)]
        row = {
            "image": {"bytes": encoded.photo, "path": encoded.photo_name},
            "annotation": {"bytes": encoded.png, "path": encoded.png_name},
            "semantic_class_to_id": self._labels,
            "image_name": entry.key,
            "task_id": entry.meta.get("task_id"),
            "inst2class": [{"instance_id": i, "class_id": c} for i, c in entry.inst2class.items()],
            "id2label": {str(i): label for i, label in self._id2label.items()},
        }
        for class_id, area in encoded.pixels.items():
            split.pixels[class_id] = split.pixels.get(class_id, 0) + area
        self._write_row(split, self._row_table(row), len(encoded.png) + len(encoded.photo))
        split.count += 1

    def _row_table(self, row: dict[str, Any]) -> pa.Table:
        """One row (:func:`_column`: the photo and annotation bytes are not copied)."""
        columns = [_column([row[field.name]], field.type) for field in self._schema]
        return pa.Table.from_arrays(columns, schema=self._schema)

    def _write_row(self, split: _Split, row: pa.Table, size: int) -> None:
        """One row, one row group: written at once, so memory holds one row's bytes (the
        Hub's viewer and ``datasets`` read row groups of any count)."""
        if split.writer is None:
            path = self._root / "data" / f"{split.name}-{len(split.shards):05d}.partial"
            split.shards.append(path)
            split.writer = pq.ParquetWriter(
                path,
                self._schema,
                compression="none",
                use_dictionary=False,
                write_statistics=["image_name", "task_id"],
            )  # fmt: skip  (the image bytes are compressed already; no min/max of photos)
        split.writer.write_table(row)
        split.shard_bytes += size
        if split.shard_bytes >= self._shard_bytes:
            split.writer.close()
            split.writer, split.shard_bytes = None, 0

    def _close(self) -> None:
        for split in self._splits.values():
            if split.writer is not None:
                split.writer.close()
                split.writer = None

    def _finish(self) -> None:
        for split in self._splits.values():
            if split.writer is not None:
                split.writer.close()
                split.writer = None
            if not split.shards and split.name == DEFAULT_SPLIT:  # an empty, loadable train
                split.shards.append(self._root / "data" / f"{split.name}-00000.partial")
                pq.write_table(self._schema.empty_table(), split.shards[0])
            total = len(split.shards)
            for n, path in enumerate(split.shards):
                path.rename(path.with_name(f"{split.name}-{n:05d}-of-{total:05d}.parquet"))
        used = [s for s in self._splits.values() if s.shards]
        text = dataset_card(self._id2label, {s.name: (s.count, s.pixels) for s in used})
        (self._root / "README.md").write_text(text, encoding="utf-8")


def read_hf_dataset(
    folder: Path,
) -> tuple[dict[int, str], Iterator[tuple[str, dict[str, Any]]]]:
    """``id2label`` and the entries of a dataset folder written by :class:`HFDatasetWriter`,
    one at a time: ``(image key, {"panoptic_mask": uint32, "inst2class"})``, split by split
    (sorted by name), shard by shard, in the order written.

    Raises:
        SnapshotError: no ``data/*.parquet`` in ``folder``.
    """
    shards = sorted((Path(folder) / "data").glob("*.parquet"))
    if not shards:
        raise SnapshotError(f"{folder}: no data/*.parquet (not a --format hf dataset)")
    schema = pq.read_schema(shards[0])
    id2label_type = schema.field("id2label").type
    id2label = {int(id2label_type.field(n).name): "" for n in range(id2label_type.num_fields)}
    first = pq.ParquetFile(shards[0])
    if first.metadata.num_rows:
        row = first.read_row_group(0, columns=["id2label"]).to_pylist()[0]["id2label"]
        id2label = {int(k): v for k, v in row.items()}
    return id2label, _hf_entries(shards)


def _hf_entries(shards: list[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    columns = ["image_name", "annotation", "inst2class"]
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=1, columns=columns):
            for row in batch.to_pylist():
                png = np.frombuffer(row["annotation"]["bytes"], dtype=np.uint8)
                bgr = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)
                if bgr is None:
                    raise SnapshotError(f"{shard}: {row['image_name']}: unreadable annotation")
                mask = np.ascontiguousarray(bgr[:, :, 1], dtype=np.uint32)
                inst2class = {p["instance_id"]: p["class_id"] for p in row["inst2class"]}
                yield row["image_name"], {"panoptic_mask": mask, "inst2class": inst2class}
