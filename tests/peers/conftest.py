"""Real Label Studio files written by other people (``shared/peers`` beside the checkout).

They are read where they lie, never copied into the project. ``LSP_PEERS_DIR`` points
elsewhere; without the folder these tests skip with a message saying where they looked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "peers"


@pytest.fixture(scope="session")
def peers() -> Path:
    """The peers folder (its README says what each file holds)."""
    folder = Path(os.environ.get("LSP_PEERS_DIR") or _DEFAULT)
    if not (folder / "README.md").is_file():
        pytest.skip(f"no peers folder at {folder} (set LSP_PEERS_DIR to the shared peers folder)")
    return folder
