"""Writing preview PNGs while converting (``--preview DIR``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps

from ls_panoptic.batch import Outcome
from ls_panoptic.images import ImageIndex
from ls_panoptic.labels import LabelSet
from ls_panoptic.model import ConvertOptions
from ls_panoptic.preview import render_preview

__all__ = ["preview_writer"]


def _background(index: ImageIndex | None, key: str, options: ConvertOptions) -> Image.Image | None:
    info = index.lookup(key, options.key) if index else None
    if info is None:
        return None
    with Image.open(info.path) as img:
        return img.copy() if options.orientation == "file" else ImageOps.exif_transpose(img)


def preview_writer(
    folder: Path, labels: LabelSet, index: ImageIndex | None, options: ConvertOptions
) -> Callable[[Outcome], None]:
    """A per-outcome callback writing ``folder/<key>.preview.png`` for every converted image."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(outcome: Outcome) -> None:
        entry = outcome.entry
        if entry is None:
            return
        image = _background(index, entry.key, options)
        picture = render_preview(
            entry.panoptic_mask, entry.inst2class, labels.background_id, image, labels.id2label
        )
        name = entry.key.replace("/", "__")
        picture.save(folder / f"{name}.preview.png")

    return write
