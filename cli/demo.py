"""``ls-panoptic demo``: a synthetic Label Studio project converted end to end, with previews."""

from __future__ import annotations

import pickle
from pathlib import Path

import click

from devstack.synthetic import make_project
from ls_panoptic.model import ConvertOptions

from .convert import run_convert
from .report import print_report

__all__ = ["demo"]


@click.command()
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Where the synthetic project, the snapshot and the previews go.",
)
@click.option(
    "--images",
    "n_images",
    type=click.IntRange(1, 500),
    default=6,
    show_default=True,
    help="How many synthetic images (640x480; the first is an EXIF-rotated JPEG).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
def demo(output_dir: Path, n_images: int, seed: int) -> None:
    """Generate a small Label Studio project (every region kind, overlaps, an EXIF-rotated
    JPEG, several annotations per task, a skipped one), convert it exactly as
    `ls-panoptic convert` would, write preview PNGs, and load the snapshot back."""
    click.echo(f"1/3 writing a synthetic Label Studio project to {output_dir}/ ...")
    project = make_project(output_dir / "project", n_images=n_images, seed=seed)
    output = output_dir / "panoptic_gt.pkl"
    previews = output_dir / "previews"
    click.echo(f"2/3 converting {project.export} ...")
    report, labels = run_convert(
        str(project.export),
        output,
        project.images,
        project.config,
        None,
        ConvertOptions(),
        strict=False,
        preview=previews,
    )
    print_report(report, labels)
    with output.open("rb") as file:
        snapshot = pickle.load(file)
    key, first = next(iter(snapshot.items()))
    click.echo(
        f"3/3 loaded {output} with plain pickle.load: {len(snapshot)} images; {key}: "
        f"panoptic_mask {first['panoptic_mask'].dtype} {first['panoptic_mask'].shape}, "
        f"inst2class {first['inst2class']}"
    )
    click.echo(f"    id2label {labels.id2label}")
    click.echo(f"    look at the previews in {previews}/")
    if report.failures:
        raise SystemExit(1)
