"""Start and stop one real Label Studio server for the end-to-end tests.

The logic lives in :mod:`cli.labelstudio_server` (``ls-panoptic up --demo`` starts Label Studio
the same way); this module keeps the names the tests import.
"""

from __future__ import annotations

from cli.labelstudio_server import (
    DEFAULT_START_TIMEOUT,
    LS_VERSION,
    Credentials,
    LabelStudioServer,
    LabelStudioStartError,
    default_venv,
    label_studio_binary,
    log_tail,
    start_server,
    stop_server,
)

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "LS_VERSION",
    "Credentials",
    "LabelStudioServer",
    "LabelStudioStartError",
    "default_venv",
    "label_studio_binary",
    "log_tail",
    "start_server",
    "stop_server",
]
