"""The demo steps of ``ls-panoptic up --demo``, in order: Label Studio, a connected project,
annotations, the wait for the store, and the comparison with a batch conversion.

Each step prints one numbered line and a few details; anything that goes wrong becomes a
:class:`~cli.up_stack.StepFailed` naming the step and, where one is to blame, its log.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from label_studio_sdk.core.api_error import ApiError

from ls_panoptic.snapshot import sidecar_path

from .labelstudio_server import LS_VERSION, Credentials
from .synthetic import SyntheticProject, label_config, make_project
from .up_annotate import DemoLabelStudio, Scenario, annotate, start_demo_label_studio
from .up_run import Run
from .up_stack import Service, StepFailed, ls_panoptic_command, service_env
from .up_verify import Backend, Comparison, batch_convert, compare, wait_for_store, write_previews

__all__ = ["DemoOptions", "DemoProject", "LabelStudioAccess", "bring_up_label_studio", "run_demo"]

#: seconds ``ls-panoptic connect`` may take
CONNECT_TIMEOUT = 60.0


@dataclass(frozen=True)
class DemoOptions:
    n_images: int
    seed: int
    timeout: float


@dataclass(frozen=True)
class LabelStudioAccess:
    """A Label Studio and its API key; ``login`` when this run started it."""

    url: str
    api_key: str
    login: Credentials | None = None


@dataclass(frozen=True)
class DemoProject:
    """The project this run made in Label Studio: its id, file name -> task id, the files."""

    id: int
    tasks: dict[str, int]
    synthetic: SyntheticProject


@contextmanager
def _failing_as(what: str, log: Path | None = None) -> Iterator[None]:
    """Turn Label Studio's, HTTP's and file errors into one :class:`StepFailed` line."""
    try:
        yield
    except ApiError as exc:
        body = exc.body
        detail = body.get("detail", body) if isinstance(body, dict) else body
        hint = " (check --api-key / LABEL_STUDIO_API_KEY)" if exc.status_code in (401, 403) else ""
        message = f"{what}: Label Studio answered {exc.status_code}: {detail}{hint}"
        raise StepFailed(message, log) from exc
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        raise StepFailed(f"{what}: {exc.request.url} answered {status}", log) from exc
    except (
        httpx.HTTPError,
        redis.RedisError,
        OSError,
        RuntimeError,
        LookupError,
        ValueError,
    ) as exc:
        raise StepFailed(f"{what}: {exc}", log) from exc


def bring_up_label_studio(run: Run, url: str | None, api_key: str | None) -> LabelStudioAccess:
    run.step(f"Label Studio {LS_VERSION}")
    if url:
        if not api_key:
            raise StepFailed("--label-studio-url needs --api-key (or LABEL_STUDIO_API_KEY)")
        with _failing_as(f"Label Studio at {url}"):
            version = httpx.get(f"{url.rstrip('/')}/api/version/", timeout=10.0).json()
            user = DemoLabelStudio(url, api_key).whoami()
        run.note(f"using the one at {url} (release {version.get('release')}) as {user}; it "
                 "must reach the backend on 127.0.0.1")  # fmt: skip
        return LabelStudioAccess(url.rstrip("/"), api_key)
    folder = run.output / "label-studio"
    run.note(f"starting it from .venv-labelstudio, data in {folder}/ (kept between runs)")
    with run.console.status("    waiting for Label Studio (a first start runs its migrations)"):
        server = start_demo_label_studio(folder)
    run.stack.add(Service("Label Studio", server.process, server.log_path, server.url))
    run.note(f"{server.url} (pid {server.process.pid}), up in {server.startup_seconds:.0f} s")
    login = Credentials(server.username, server.password, server.token)
    return LabelStudioAccess(server.url, server.token, login)


def _connect(run: Run, access: LabelStudioAccess, project_id: int) -> None:
    """``ls-panoptic connect``: Label Studio posts the project's events to the backend."""
    log = run.logs / "connect.log"
    env = service_env(run.service_settings(access.url, access.api_key), inherit_options=False)
    command = [*ls_panoptic_command(), "connect", "--project", str(project_id),
               "--url", run.backend_url]  # fmt: skip
    try:
        with log.open("wb") as out:
            code = subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, timeout=CONNECT_TIMEOUT, check=False,
            ).returncode  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise StepFailed(f"ls-panoptic connect took over {CONNECT_TIMEOUT:.0f} s", log) from exc
    if code != 0:
        raise StepFailed(f"ls-panoptic connect exited with code {code}", log)
    run.note(f"ls-panoptic connect: project {project_id} posts its events to "
             f"{run.backend_url}/webhook (delivery checked with a test event)")  # fmt: skip


def _create_project(
    run: Run, ls: DemoLabelStudio, access: LabelStudioAccess, options: DemoOptions
) -> DemoProject:
    run.step("a Label Studio project of synthetic images, connected to the backend")
    synthetic = make_project(run.output / "project", n_images=options.n_images, seed=options.seed)
    records = json.loads(synthetic.export.read_text())
    images = [synthetic.images / str(r["data"]["image"]).split("-", 1)[-1] for r in records]
    with _failing_as("creating the Label Studio project"):
        project_id = ls.create_project(f"ls-panoptic demo {run.run_id}", label_config())
        tasks = ls.upload(project_id, images)
    run.note(f"project {project_id}: {access.url}/projects/{project_id}")
    run.note(f"uploaded {len(tasks)} images from {synthetic.images}/ ({images[0].name} is "
             "stored sideways with EXIF orientation 6)")  # fmt: skip
    _connect(run, access, project_id)
    return DemoProject(project_id, tasks, synthetic)


def _annotate(run: Run, ls: DemoLabelStudio, project: DemoProject) -> Scenario:
    run.step("annotating through Label Studio's API: every save posts a webhook")
    with _failing_as("annotating in Label Studio"):
        scenario = annotate(ls, project.tasks, project.synthetic.export)
    used = sum(a is not None for a in scenario.expected.values())
    run.note(
        f"{scenario.created} annotations on {len(scenario.expected)} images (brush, bitmask, "
        f"polygon, rectangle, ellipse; overlapping), {scenario.skipped} of them skipped"
    )
    run.note(f"updated annotation {scenario.updated[0]} of {scenario.updated[1]} (3 regions added)")
    run.note(f"skipped {scenario.skipped_task[1]}: no usable annotation, so no entry "
             f"({used} entries expected)")  # fmt: skip
    return scenario


def _wait(
    run: Run, backend: Backend, project: DemoProject, scenario: Scenario, options: DemoOptions
) -> None:
    run.step("waiting until the worker has brought the store up to date")
    connection = redis.Redis.from_url(run.redis_url, socket_timeout=10)
    try:
        with _failing_as("polling the store", run.logs / "backend.log"):
            seconds = wait_for_store(
                backend, project.id, scenario.expected, (connection, run.queue),
                run.stack.check, run.console, options.timeout, run.logs / "worker.log",
            )  # fmt: skip
    finally:
        connection.close()
    run.note(f"every task current after {seconds:.1f} s")


def _verify(run: Run, ls: DemoLabelStudio, backend: Backend, project: DemoProject) -> Comparison:
    run.step("the live snapshot against a batch conversion of Label Studio's export")
    live, batch = run.output / "live" / "panoptic_gt.pkl", run.output / "batch" / "panoptic_gt.pkl"
    export, images = run.output / "batch" / "export.json", project.synthetic.images
    with _failing_as("downloading the snapshot from the backend", run.logs / "backend.log"):
        backend.download(f"/projects/{project.id}/snapshot.pkl", live)
        backend.download(f"/projects/{project.id}/snapshot.meta.json", sidecar_path(live))
    with _failing_as("drawing the previews"):
        previews = write_previews(live, images, label_config(), run.output / "previews")
    run.note(f"GET {run.backend_url}/projects/{project.id}/snapshot.pkl -> {live} "
             f"({previews} previews in {run.output / 'previews'}/)")  # fmt: skip
    with _failing_as("exporting the project from Label Studio"):
        export.parent.mkdir(parents=True, exist_ok=True)
        ls.export_json(project.id, export)
    with _failing_as("converting the export"):
        written = batch_convert(export, images, project.synthetic.config, batch)
    run.note(f"Label Studio's JSON export -> {export}; ls-panoptic convert -> {batch} "
             f"({written} images)")  # fmt: skip
    return compare(live, batch)


def _print_comparison(run: Run, comparison: Comparison) -> None:
    if not comparison.equal:
        run.console.print("[bold red]✗ the live snapshot differs from the batch conversion:[/]")
        for line in comparison.differences:
            run.note(line)
        raise StepFailed(
            "the live snapshot differs from the batch conversion", run.logs / "worker.log"
        )
    files = "byte-identical" if comparison.identical_files else "equal entries, different bytes"
    run.console.print(
        f"[bold green]✓ live snapshot == batch conversion, bit for bit[/]: {comparison.entries} "
        f"entries, masks (dtype, shape, pixels) and inst2class equal; the files are {files} "
        f"(sha256 {comparison.sha256[:16]}…)",
        highlight=False,
    )


def run_demo(run: Run, access: LabelStudioAccess, options: DemoOptions) -> DemoProject:
    """Steps 4 to 7 (the stack is up); returns the project it made."""
    ls = DemoLabelStudio(access.url, access.api_key)
    project = _create_project(run, ls, access, options)
    scenario = _annotate(run, ls, project)
    backend = Backend(run.backend_url, run.api_token)
    try:
        _wait(run, backend, project, scenario, options)
        _print_comparison(run, _verify(run, ls, backend, project))
    finally:
        backend.close()
    return project
