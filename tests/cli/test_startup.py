"""Start-up: each `ls-panoptic` command imports its own stack only, and `--help` lists them all.

`--help` and `--version` take a fraction of a bare `import numpy, PIL.Image` and `convert` loads
the core alone because the group imports a subcommand only when it runs (cli/lazy.py). The
processes here are real ones (a fresh interpreter each), since imports are per process; timings
are in bench/startup_bench.py.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import cli as cli_package
from cli.main import COMMANDS, cli
from devstack.synthetic import SyntheticProject

REPO = Path(__file__).resolve().parents[2]

# What `convert` (to the default pickle) and the group's --help and --version never need: the
# live service's and the dev stack's dependencies, the other output formats' (loaded by the
# format that writes them) and the test extra's.
NOT_FOR_CONVERT = {
    "backend", "devstack", "flask", "gunicorn", "httpx", "label_studio_sdk", "pandas", "redis",
    "rq", "rq_dashboard", "werkzeug", "worker",
    "pyarrow", "datasets", "datumaro",
    "torch", "torchmetrics", "transformers",
}  # fmt: skip

# Runs `ls-panoptic ARGS...` as the console script does, then writes the top-level packages
# the process imported to the file named first: `python -c PROBE OUT ARGS...`.
PROBE = """
import json, sys
out = sys.argv.pop(1)
from cli.main import main
try:
    main()
except SystemExit:
    pass
with open(out, "w") as file:
    json.dump(sorted({name.split(".")[0] for name in sys.modules}), file)
"""


def _imported_by(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=REPO, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return set(json.loads(out.read_text()))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["convert", "--help"]])
def test_help_and_version_load_only_what_convert_needs(tmp_path: Path, args: list[str]) -> None:
    imported = _imported_by(tmp_path, *args)
    assert "click" in imported and "cli" in imported  # the probe did run the command
    assert not imported & NOT_FOR_CONVERT


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_group_help_and_version_load_no_command(tmp_path: Path, args: list[str]) -> None:
    assert not _imported_by(tmp_path, *args) & {"ls_panoptic", "numpy", "PIL", "cv2", "rich"}


def test_convert_imports_only_the_core(small_project: SyntheticProject, tmp_path: Path) -> None:
    out = tmp_path / "gt.pkl"
    imported = _imported_by(
        tmp_path, "convert", str(small_project.export), "--images", str(small_project.images),
        "--label-config", str(small_project.config), "--output", str(out), "--quiet",
    )  # fmt: skip
    assert out.exists() and "ls_panoptic" in imported
    assert not imported & NOT_FOR_CONVERT


def test_help_lists_every_command_with_its_line() -> None:
    # an 80-column terminal: click leaves 2 columns free
    result = CliRunner().invoke(cli, ["--help"], terminal_width=78)
    assert result.exit_code == 0, result.output
    lines = result.output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in lines] == sorted(COMMANDS)
    for name, line in zip(sorted(COMMANDS), lines, strict=True):
        assert line.split(None, 1)[1] == COMMANDS[name].short_help  # whole, on one line


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_loads_and_has_help(name: str) -> None:
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, name)
    assert isinstance(command, click.Command)
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {name} [OPTIONS]" in result.output


def test_every_command_in_cli_is_registered() -> None:
    """A command module added to cli/ without an entry in cli.main.COMMANDS is unreachable."""
    registered = {COMMANDS[name].import_path for name in COMMANDS}
    defined = set()
    for module_info in pkgutil.iter_modules(cli_package.__path__):
        module = importlib.import_module(f"cli.{module_info.name}")
        for attribute, value in vars(module).items():
            command = isinstance(value, click.Command) and not isinstance(value, click.Group)
            if command and getattr(value.callback, "__module__", None) == module.__name__:
                defined.add(f"{module.__name__}:{attribute}")
    unregistered = sorted(defined - registered)
    assert not unregistered, f"add each to COMMANDS in cli/main.py: {unregistered}"
    assert registered <= defined
