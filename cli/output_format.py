"""What ``convert --format/--split/--seed/--copy-images`` ask for, checked before anything is
converted, and the writer of that format (:mod:`ls_panoptic.writers`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from ls_panoptic.errors import SnapshotError
from ls_panoptic.labels import LabelSet
from ls_panoptic.model import ConvertOptions
from ls_panoptic.splits import parse_splits
from ls_panoptic.writers import EntryWriter

__all__ = ["EXIT_USAGE", "OutputFormat", "UsageProblem", "parse_split_option"]

EXIT_USAGE = 2


class UsageProblem(click.ClickException):
    """Bad arguments or unreadable inputs: exit 2 with one clear line."""

    exit_code = EXIT_USAGE


def parse_split_option(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> dict[str, float]:
    try:
        return parse_splits(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@dataclass(frozen=True)
class OutputFormat:
    """What ``--format``, ``--split``, ``--seed`` and ``--copy-images`` ask for."""

    name: str = "pickle"
    splits: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    copy_images: bool = False

    def check(self, output: Path, has_images: bool) -> None:
        """Refuse combinations that cannot work, before anything is converted."""
        if self.name == "pickle":
            if self.splits or self.copy_images:
                raise UsageProblem(
                    "--split and --copy-images are for --format hf and coco-panoptic "
                    "(the pickle is one dict; split it in your training code)"
                )
            if output.is_dir():
                raise UsageProblem(f"--output {output} is a folder: give a file name (.pkl)")
            return
        if output.exists() and not output.is_dir():
            raise UsageProblem(f"--output {output} is a file: --format {self.name} writes a folder")
        if self.name == "hf" and not has_images:
            raise UsageProblem(
                "--format hf embeds each photo in the dataset: pass --images (the folder "
                "you uploaded from, or a file listing the image paths)"
            )
        if self.copy_images and not has_images:
            raise UsageProblem("--copy-images copies the photos from --images: pass --images")

    def writer(self, output: Path, labels: LabelSet, options: ConvertOptions) -> EntryWriter | None:
        """The writer of this format (``None``: the default pickle)."""
        try:
            if self.name == "hf":
                from ls_panoptic.hf_dataset import HFDatasetWriter  # pyarrow only when asked

                return HFDatasetWriter(
                    output, labels.id2label, splits=self.splits, seed=self.seed,
                    orientation=options.orientation,
                )  # fmt: skip
        except SnapshotError as exc:
            raise UsageProblem(str(exc)) from exc
        if self.name == "coco-panoptic":
            from ls_panoptic.coco_panoptic import CocoPanopticWriter

            stuff = {c for c in map(labels.class_id, options.stuff) if c is not None}
            return CocoPanopticWriter(
                output, labels.id2label, frozenset({labels.background_id, *stuff}),
                splits=self.splits, seed=self.seed, copy_images=self.copy_images,
                orientation=options.orientation,
            )  # fmt: skip
        return None
