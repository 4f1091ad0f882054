"""The ``ls-panoptic`` command: one group, one module per subcommand, imported when it runs."""

from __future__ import annotations

import click

from .lazy import LazyCommand, LazyGroup

__all__ = ["COMMANDS", "cli", "main"]

# Every subcommand: where it lives and its line in `ls-panoptic --help`. Listing the group or
# running one command imports none of the others (tests/cli/test_startup.py holds it to that).
COMMANDS: dict[str, LazyCommand] = {
    "up": LazyCommand("cli.up:up", "Run Redis, backend and worker here; --demo adds Label Studio."),
    "convert": LazyCommand(
        "cli.convert:convert", "Convert a Label Studio JSON export into a panoptic pickle."
    ),
    "agreement": LazyCommand(
        "cli.agreement:agreement", "Panoptic quality between the annotations of each task."
    ),
    "demo": LazyCommand(
        "cli.demo:demo", "Generate a synthetic project and convert it (batch only)."
    ),
    "serve": LazyCommand(
        "cli.serve:serve", "Serve the webhook, ML-backend and snapshot API (needs Redis)."
    ),
    "worker": LazyCommand(
        "cli.worker_cmd:worker", "Run a worker: convert changed tasks and store their entries."
    ),
    "connect": LazyCommand(
        "cli.connect:connect", "Register the project's webhook in Label Studio; check delivery."
    ),
    "resync": LazyCommand(
        "cli.store_cmds:resync", "Sync the store with a Label Studio project and repair it."
    ),
    "snapshot": LazyCommand(
        "cli.store_cmds:snapshot", "Write the project's stored entries as convert does (--format)."
    ),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":  # python -m cli.main (e.g. with -X importtime)
    main()
