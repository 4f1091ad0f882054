"""The demo steps of ``ls-panoptic up --demo`` once the stack is up, in order: a connected
project, annotations, the wait for the store, and the comparison with a batch conversion.

Each step prints one numbered line and a few details; anything that goes wrong becomes a
:class:`~devstack.steps.StepFailed` naming the step and, where one is to blame, its log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import redis

from ls_panoptic.snapshot import sidecar_path

from .annotate import DemoLabelStudio, Scenario, annotate
from .demo_labelstudio import LabelStudioAccess
from .run import Run
from .services import run_ls_panoptic, service_env
from .steps import StepFailed, failing_as
from .synthetic import SyntheticProject, label_config, make_project
from .verify import Backend, Comparison, batch_convert, compare, wait_for_store, write_previews

__all__ = ["DemoOptions", "DemoProject", "run_demo"]

#: seconds ``ls-panoptic connect`` may take
CONNECT_TIMEOUT = 60.0


@dataclass(frozen=True)
class DemoOptions:
    n_images: int
    seed: int
    timeout: float
    label_studio_venv: Path


@dataclass(frozen=True)
class DemoProject:
    """The project this run made in Label Studio: its id, file name -> task id, the files."""

    id: int
    tasks: dict[str, int]
    synthetic: SyntheticProject


def _connect(run: Run, access: LabelStudioAccess, project_id: int) -> None:
    """``ls-panoptic connect``: Label Studio posts the project's events to the backend."""
    log = run.logs / "connect.log"
    env = service_env(run.service_settings(access.url, access.api_key), inherit_options=False)
    args = ["connect", "--project", str(project_id), "--url", run.backend_url]
    code = run_ls_panoptic(args, env, log, CONNECT_TIMEOUT)
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
    with failing_as("creating the Label Studio project"):
        project_id = ls.create_project(f"ls-panoptic demo {run.run_id}", label_config())
        tasks = ls.upload(project_id, images)
    run.note(f"project {project_id}: {access.url}/projects/{project_id}")
    run.note(f"uploaded {len(tasks)} images from {synthetic.images}/ ({images[0].name} is "
             "stored sideways with EXIF orientation 6)")  # fmt: skip
    _connect(run, access, project_id)
    return DemoProject(project_id, tasks, synthetic)


def _annotate(run: Run, ls: DemoLabelStudio, project: DemoProject) -> Scenario:
    run.step("annotating through Label Studio's API: every save posts a webhook")
    with failing_as("annotating in Label Studio"):
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
        with failing_as("polling the store", run.logs / "backend.log"):
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
    with failing_as("downloading the snapshot from the backend", run.logs / "backend.log"):
        backend.download(f"/projects/{project.id}/snapshot.pkl", live)
        backend.download(f"/projects/{project.id}/snapshot.meta.json", sidecar_path(live))
    with failing_as("drawing the previews"):
        previews = write_previews(live, images, label_config(), run.output / "previews")
    run.note(f"GET {run.backend_url}/projects/{project.id}/snapshot.pkl -> {live} "
             f"({previews} previews in {run.output / 'previews'}/)")  # fmt: skip
    with failing_as("exporting the project from Label Studio"):
        export.parent.mkdir(parents=True, exist_ok=True)
        ls.export_json(project.id, export)
    env = service_env({}, inherit_options=False)
    with failing_as("converting the export"):
        written = batch_convert(
            export, images, project.synthetic.config, batch, env, run.logs / "convert.log"
        )
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
