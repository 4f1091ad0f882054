"""Step 2 of ``ls-panoptic up --demo``: the demo's Label Studio.

Either one started from Label Studio's virtualenv (:mod:`devstack.labelstudio_venv`) with its
data in ``<output-dir>/label-studio/``, kept between runs, logged in with the credentials saved
there at the first start; or one already running, given by URL and API key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from .annotate import DemoLabelStudio
from .labelstudio import (
    LS_VERSION,
    Credentials,
    LabelStudioServer,
    LabelStudioStartError,
    label_studio_binary,
    start_server,
)
from .labelstudio_venv import install_hint
from .run import Run
from .steps import StepFailed, failing_as

__all__ = ["LabelStudioAccess", "bring_up_label_studio", "start_demo_label_studio"]

#: the demo's Label Studio user
DEMO_USER = "demo@example.com"


@dataclass(frozen=True)
class LabelStudioAccess:
    """A Label Studio and its API key; ``login`` when this run started it."""

    url: str
    api_key: str
    login: Credentials | None = None


def _installed(venv: Path) -> Path:
    """The ``label-studio`` script of ``venv``; how to install it when it is not there."""
    binary = label_studio_binary(venv)
    if binary is None:
        raise StepFailed(
            f"Label Studio is not installed in {venv}: {install_hint(venv)}; or give "
            "--label-studio-url and --api-key of a running one"
        )
    return binary


def start_demo_label_studio(binary: Path, folder: Path) -> LabelStudioServer:
    """Label Studio (its ``label-studio`` script) with its data in ``folder``, kept between
    runs (the first start runs every migration, about 40 s; later ones take about 5 s), logged
    in with the credentials saved in ``folder/credentials.json`` (mode 600) at the first start."""
    credentials = _credentials(folder)
    try:
        return start_server(binary, folder, credentials=credentials)
    except LabelStudioStartError as exc:
        reason = str(exc).splitlines()[0]
        if "token was refused" in reason:
            reason += f"; delete {folder} to start afresh"
        raise StepFailed(
            f"Label Studio did not start: {reason}", folder / "label-studio.log"
        ) from exc


def _credentials(folder: Path) -> Credentials:
    saved = folder / "credentials.json"
    if saved.is_file():
        return Credentials(**json.loads(saved.read_text()))
    if (folder / "data" / "label_studio.sqlite3").exists():
        raise StepFailed(
            f"{folder} holds a Label Studio database but no credentials.json (its login is "
            "unknown): delete the folder to start afresh"
        )
    credentials = Credentials.generate(DEMO_USER)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(credentials), file)
    return credentials


def _running_label_studio(run: Run, url: str, api_key: str | None) -> LabelStudioAccess:
    """``--label-studio-url``: check the key before anything is started."""
    if not api_key:
        raise StepFailed("--label-studio-url needs --api-key (or LABEL_STUDIO_API_KEY)")
    with failing_as(f"Label Studio at {url}"):
        version = httpx.get(f"{url.rstrip('/')}/api/version/", timeout=10.0).json()
        user = DemoLabelStudio(url, api_key).whoami()
    run.note(f"using the one at {url} (release {version.get('release')}) as {user}; it "
             "must reach the backend on 127.0.0.1")  # fmt: skip
    return LabelStudioAccess(url.rstrip("/"), api_key)


def bring_up_label_studio(
    run: Run, url: str | None, api_key: str | None, venv: Path
) -> LabelStudioAccess:
    """The one at ``url``, or one started from ``venv`` and added to the run's stack."""
    run.step(f"Label Studio {LS_VERSION}")
    if url:
        return _running_label_studio(run, url, api_key)
    binary, folder = _installed(venv), run.output / "label-studio"
    run.note(f"starting it from {venv}, data in {folder}/ (kept between runs)")
    with run.console.status("    waiting for Label Studio (a first start runs its migrations)"):
        server = start_demo_label_studio(binary, folder)
    run.stack.add(server.service)
    run.note(f"{server.url} (pid {server.process.pid}), up in {server.startup_seconds:.0f} s")
    login = Credentials(server.username, server.password, server.token)
    return LabelStudioAccess(server.url, server.token, login)
