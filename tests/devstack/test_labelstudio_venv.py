"""Where Label Studio's virtualenv is found, and what a user without one is told."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.up import up
from devstack import labelstudio_venv
from devstack.labelstudio_venv import (
    LS_VERSION,
    install,
    install_hint,
    installed_version,
    label_studio_binary,
    resolve_venv,
)


def _fake_venv(folder: Path, version: str) -> Path:
    """A virtualenv whose python prints ``version`` and whose label-studio is a script."""
    (folder / "bin").mkdir(parents=True)
    for name, body in (("python", f"echo {version}"), ("label-studio", "exit 0")):
        script = folder / "bin" / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    return folder


def test_explicit_then_ls_venv_then_checkout_then_user_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LS_VENV", str(tmp_path / "from-env"))
    assert resolve_venv(tmp_path / "given") == tmp_path / "given"
    assert resolve_venv() == tmp_path / "from-env"

    monkeypatch.delenv("LS_VENV")
    root = labelstudio_venv.checkout_root()
    assert root is not None and (root / "pyproject.toml").is_file()  # these tests run from one
    assert resolve_venv() == root / ".venv-labelstudio"

    monkeypatch.setattr(labelstudio_venv, "checkout_root", lambda: None)  # an installed wheel
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert resolve_venv() == tmp_path / "data" / "ls-panoptic" / "venv-labelstudio"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".local" / "share" / "ls-panoptic" / "venv-labelstudio"
    assert resolve_venv() == expected


def test_an_installed_venv_is_found_and_left_alone(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path / "venv", LS_VERSION)
    said: list[str] = []

    install(venv, say=said.append)

    assert label_studio_binary(venv) == venv / "bin" / "label-studio"
    assert installed_version(venv) == LS_VERSION
    assert said == [f"label-studio {LS_VERSION} already in {venv}"]


def test_a_missing_venv_is_not_installed_and_the_hint_is_exact(tmp_path: Path) -> None:
    venv = tmp_path / "nowhere"
    assert label_studio_binary(venv) is None and installed_version(venv) is None
    hint = install_hint(venv)
    assert "ls-panoptic up --install-label-studio" in hint
    assert f"python3 -m venv {venv} && {venv}/bin/python -m pip install label-studio==" in hint


def test_up_install_label_studio_alone_installs_and_stops(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path / "venv", LS_VERSION)
    args = ["--install-label-studio", "--label-studio-venv", str(venv), "-o", str(tmp_path)]

    result = CliRunner().invoke(up, args, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert result.output == f"Label Studio: label-studio {LS_VERSION} already in {venv}\n"
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_up_demo_without_label_studio_says_how_to_install_it(
    redis_url: str, tmp_path: Path
) -> None:
    venv = tmp_path / "no-venv"
    args = ["--demo", "--label-studio-venv", str(venv), "--redis-url", redis_url,
            "-o", str(tmp_path / "out")]  # fmt: skip

    result = CliRunner().invoke(up, args, catch_exceptions=False)

    assert result.exit_code == 1, result.output
    failure = result.output.splitlines()[-2]  # then the run's duration
    assert failure.startswith("ls-panoptic up failed at step 2/7 (Label Studio 1.23.2)")
    assert f"Label Studio is not installed in {venv}" in failure
    assert "ls-panoptic up --install-label-studio" in failure
    assert f"{venv}/bin/python -m pip install label-studio==1.23.2" in failure
    assert "(pid" not in result.output
