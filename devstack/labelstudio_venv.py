"""Where Label Studio's own virtualenv is, and how to install Label Studio there.

Label Studio pins label-studio-sdk==2.1.2, redis<5.3 and rq<2.7, so it never goes into the
project's environment but into a virtualenv of its own, found in this order:

1. the path given (``ls-panoptic up --label-studio-venv``), else ``$LS_VENV``;
2. in a checkout of this repository, ``<checkout>/.venv-labelstudio`` (gitignored);
3. otherwise (an installed wheel), ``$XDG_DATA_HOME/ls-panoptic/venv-labelstudio``
   (``~/.local/share/ls-panoptic/venv-labelstudio`` by default).

Standard library only: ``.ci/install-label-studio`` runs this file as a script with a bare
``python3`` (``$LS_PYTHON``), before the project itself is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "LS_VERSION",
    "InstallError",
    "checkout_root",
    "install",
    "install_hint",
    "installed_version",
    "label_studio_binary",
    "resolve_venv",
]

#: the Label Studio release the project is tested against
LS_VERSION = "1.23.2"
#: the virtualenv's folder in a checkout
CHECKOUT_VENV = ".venv-labelstudio"
_VERSION_SCRIPT = """
from importlib.metadata import PackageNotFoundError, version
try:
    print(version("label-studio"))
except PackageNotFoundError:
    pass
"""


class InstallError(RuntimeError):
    """Label Studio could not be installed; the message says which step failed."""


def checkout_root() -> Path | None:
    """The checkout this module runs from, or ``None`` when it was installed from a wheel."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / ".ci" / "install-label-studio").is_file() else None


def resolve_venv(explicit: Path | None = None) -> Path:
    """Label Studio's virtualenv: ``explicit``, ``$LS_VENV``, the checkout's or the user's."""
    if explicit is not None:
        return explicit
    if from_env := os.environ.get("LS_VENV", "").strip():
        return Path(from_env)
    if (root := checkout_root()) is not None:
        return root / CHECKOUT_VENV
    data = os.environ.get("XDG_DATA_HOME", "").strip() or Path.home() / ".local" / "share"
    return Path(data) / "ls-panoptic" / "venv-labelstudio"


def label_studio_binary(venv: Path) -> Path | None:
    """The ``label-studio`` console script of ``venv``, or ``None`` when it is not installed."""
    binary = venv / "bin" / "label-studio"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def installed_version(venv: Path) -> str | None:
    """The label-studio release installed in ``venv``, or ``None``."""
    python = venv / "bin" / "python"
    if not python.is_file():
        return None
    found = subprocess.run(
        [str(python), "-c", _VERSION_SCRIPT], capture_output=True, text=True, check=False
    )
    return found.stdout.strip() or None


def install_hint(venv: Path, version: str = LS_VERSION) -> str:
    """How to install it: the command of this project, and the same by hand."""
    return (
        f"run `ls-panoptic up --install-label-studio` (in a checkout: `make label-studio`), or "
        f"by hand: python3 -m venv {venv} && {venv}/bin/python -m pip install "
        f"label-studio=={version}"
    )


def _run(command: list[str]) -> None:
    if subprocess.run(command, check=False).returncode != 0:
        raise InstallError(f"`{' '.join(command)}` failed")


def install(venv: Path, version: str = LS_VERSION, *, say: Callable[[str], None] = print) -> None:
    """Install ``label-studio==version`` into ``venv`` (made with this interpreter) unless it
    is there already. Raises :class:`InstallError`."""
    if label_studio_binary(venv) is not None and installed_version(venv) == version:
        say(f"label-studio {version} already in {venv}")
        return
    started = time.monotonic()
    say(f"installing label-studio {version} into {venv} (a few minutes) ...")
    if not (venv / "bin" / "python").is_file():
        _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]  # fmt: skip
    _run([*pip, "--upgrade", "pip"])
    _run([*pip, f"label-studio=={version}"])
    got = installed_version(venv)
    if got != version:
        raise InstallError(f"expected label-studio {version} in {venv}, found {got or 'none'}")
    say(f"label-studio {version} installed in {venv} in {time.monotonic() - started:.0f} s")


def main() -> int:
    """The script: install into :func:`resolve_venv` (``$LS_VERSION`` picks the release)."""
    venv = resolve_venv()
    version = os.environ.get("LS_VERSION", "").strip() or LS_VERSION
    try:
        install(venv, version, say=lambda line: print(f"install-label-studio: {line}"))
    except InstallError as exc:
        print(f"install-label-studio: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
