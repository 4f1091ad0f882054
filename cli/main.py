"""The ``ls-panoptic`` command: one group, one module per subcommand."""

from __future__ import annotations

import click

from .connect import connect
from .convert import convert
from .demo import demo
from .serve import serve
from .store_cmds import resync, snapshot
from .up import up
from .worker_cmd import worker

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="ls-panoptic")
def cli() -> None:
    """Turn Label Studio segmentation annotations into panoptic ground truth for
    Hugging Face Mask2Former: one pickle {image_name: {"panoptic_mask", "inst2class"}}.

    \b
    Start with:   ls-panoptic up --demo       (live stack + Label Studio, end to end)
                  ls-panoptic demo            (batch only: synthetic export -> pickle)
    Your data:    ls-panoptic convert export.json --images imgs/ --output gt.pkl
    Live sync:    ls-panoptic up | serve / worker / connect / resync / snapshot
    """


for command in (up, convert, demo, serve, worker, connect, resync, snapshot):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli()
