"""What ``--format/--split/--seed/--copy-images`` ask for (``convert`` and ``snapshot`` share
these options: :func:`format_options`), checked before anything is written, and the writer of
that format (:mod:`ls_panoptic.writers`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import click

from ls_panoptic.errors import SnapshotError
from ls_panoptic.labels import LabelSet
from ls_panoptic.model import ConvertOptions
from ls_panoptic.splits import parse_splits
from ls_panoptic.writers import EntryWriter

__all__ = ["EXIT_USAGE", "OutputFormat", "UsageProblem", "format_options", "parse_split_option"]

EXIT_USAGE = 2
_F = TypeVar("_F", bound=Callable[..., object])


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


def format_options(command: _F) -> _F:
    """Add ``--format``, ``--split``, ``--seed`` and ``--copy-images`` to ``command``; its
    function receives ``output_format``, ``splits``, ``seed`` and ``copy_images``."""
    options = [
        click.option(
            "--format", "output_format", type=click.Choice(["pickle", "hf", "coco-panoptic"]),
            default="pickle", show_default=True,
            help="pickle: one dict (the default); hf: a Hugging Face dataset folder (Parquet, "
            "the photos embedded) that transformers' Mask2Former example trains on; "
            "coco-panoptic: panopticapi's PNG + JSON (category id = class id + 1).",
        ),
        click.option(
            "--split", "splits", multiple=True, callback=parse_split_option,
            metavar="NAME=FRACTION",
            help="(hf, coco-panoptic; repeatable) put this fraction of the images in split "
            "NAME, e.g. validation=0.1; the rest is train. Decided by image key and --seed "
            "alone, so an image keeps its split when others are added.",
        ),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed of the --split draw."
        ),
        click.option(
            "--copy-images", is_flag=True,
            help="(coco-panoptic) also write each photo, in the mask's frame, under "
            "images/<split>/.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


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
