"""Shared fixtures: a small synthetic Label Studio project written by the project's generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.synthetic import SyntheticProject, make_project


@pytest.fixture(scope="session")
def small_project(tmp_path_factory: pytest.TempPathFactory) -> SyntheticProject:
    """4 images of 96x128 (image 0: EXIF-rotated JPEG), every region kind, seeded."""
    folder: Path = tmp_path_factory.mktemp("project")
    return make_project(folder, n_images=4, height=96, width=128, n_brush=3, n_poly=2, seed=7)
