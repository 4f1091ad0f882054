"""A click group whose subcommands are imported only when one of them runs.

Each subcommand pulls in its own stack (``serve``: Flask and gunicorn; ``connect``:
label-studio-sdk and pandas; ``demo``: the synthetic generator), about a second of imports in
all. The group knows its commands as ``"module:attribute"`` paths plus a one-line help, so that
``--help``, ``--version`` and ``convert`` import none of the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import click

__all__ = ["LazyCommand", "LazyGroup"]


class LazyCommand(NamedTuple):
    """Where a subcommand lives (``"cli.convert:convert"``) and its line in the group's help."""

    import_path: str
    short_help: str


class LazyGroup(click.Group):
    """A ``click.Group`` that imports a registered subcommand on ``get_command`` only.

    ``list_commands`` and the group's ``--help`` use the registry alone; commands added with
    ``add_command`` behave as in a plain group.
    """

    def __init__(self, *args: Any, lazy_commands: Mapping[str, LazyCommand], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        command = _load(cmd_name, self.lazy_commands[cmd_name].import_path)
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's command table; registered commands' lines come from the registry."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = []
        for name in names:
            if name in self.lazy_commands:
                rows.append((name, self.lazy_commands[name].short_help))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _load(name: str, import_path: str) -> click.Command:
    module_name, _, attribute = import_path.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{import_path} (command {name!r}) is not a click command")
    return command
