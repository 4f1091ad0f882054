"""Convergence, as a property: whatever happens to Label Studio's webhooks on the way, one
``ls-panoptic resync --wait`` makes the store equal to a batch conversion of a fresh export.

Every trial makes a new project in a real Label Studio 1.23.2 whose webhook posts to a
:class:`~tests.e2e._relay.WebhookRelay` in front of a real ``ls-panoptic serve`` (a child
process); a real ``ls-panoptic worker --with-scheduler`` does the jobs. The relay drops 30% of
the events, sends 15% twice and holds 40% of the copies back up to 3 s, so events arrive late
and out of order. A seeded random sequence of operations runs against Label Studio: annotate,
update, delete an annotation, skip (``was_cancelled``), delete a task, import tasks (files, or
JSON records that carry annotations), add a label to the label config (at a random place, so
class ids shift). Some annotations made or updated carry a label outside the label config
(:data:`FAILING`): they fail to convert, in the store as in the batch. Then the relay settles,
``resync --wait`` runs, and the store's snapshot must be the batch conversion of Label Studio's
export, bit for bit, both sidecars must list the same failed tasks with the same reasons, and
every manifest entry must point at a whole blob.

Sizes: ``--convergence-trials N --convergence-ops M`` (CI: 2 x 12), ``--convergence-seed S``
(trial i uses S+i; default random). A failure names the seed, every operation and what the
relay did with each webhook it caused, and the command that replays the trial.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack.labelstudio import LabelStudioServer
from worker.settings import Settings

from ._relay import RelayPolicy, WebhookRelay
from ._services import backend_process, free_port, worker_process
from ._sync_helpers import (
    UNLISTED_LABEL,
    LiveProject,
    open_live_project,
    relabel,
    run_resync,
    served_settings,
    small_image,
)
from .build_project import LABEL_CONFIG
from .lsclient import LabelStudioClient
from .scene import LABELS, ResultBuilder, SceneImage, make_images, plant_result

pytestmark = pytest.mark.e2e

#: what the relay does to Label Studio's webhooks in every trial
CHAOS = RelayPolicy(drop=0.3, duplicate=0.15, delay=0.4, max_delay=3.0)
#: operation kinds and their weights once each kind has had its turn
KINDS: dict[str, int] = {
    "annotate": 5, "update": 4, "delete annotation": 2, "skip": 2, "delete task": 1,
    "import": 2, "add label": 1,
}  # fmt: skip
#: display sizes of the images made during a trial
SMALL_SIZES = ((160, 120), (200, 150), (120, 160))
#: share of the results made that carry a label outside the label config (and so fail)
FAILING = 0.2


@dataclass(frozen=True)
class Stack:
    """The service under test: its settings and where Label Studio's webhooks go."""

    settings: Settings
    backend_url: str
    logs: Path


@pytest.fixture
def stack(
    label_studio: LabelStudioServer,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> Iterator[Stack]:
    """``ls-panoptic serve`` and ``ls-panoptic worker --with-scheduler`` on the test Redis,
    without the periodic resync: only the final one may repair what the relay lost."""
    settings = served_settings(redis_url, label_studio)
    port = free_port()
    with (
        backend_process(settings, port, tmp_path / "backend.log"),
        worker_process(settings, tmp_path / "worker.log"),
    ):
        yield Stack(settings, f"http://127.0.0.1:{port}", tmp_path)


def _config(labels: list[str]) -> str:
    def block(names: list[str] | tuple[str, ...]) -> str:
        return "".join(f'<Label value="{name}"/>' for name in names)

    return LABEL_CONFIG.replace(block(LABELS), block(labels))


@dataclass
class Scenario:
    """One trial's project as its operations left it, and the log of those operations."""

    live: LiveProject
    relay: WebhookRelay
    rng: random.Random
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    annotations: dict[int, int] = field(default_factory=dict)  # annotation id -> task id
    steps: list[tuple[str, int, int]] = field(default_factory=list)  # what, relay events
    made: int = 0
    failed: int = 0  # tasks both final sidecars list as failed

    def step(self, kind: str) -> None:
        """Run one operation of ``kind`` (or the nearest one possible); remember which
        webhooks Label Studio sent for it."""
        first = len(self.relay.events)
        done = self._operation(kind)()
        self.steps.append((done, first, len(self.relay.events)))

    def log(self) -> list[str]:
        """Each operation and the fate of each webhook it caused (after the relay settled)."""
        lines = []
        for number, (done, first, end) in enumerate(self.steps, 1):
            lines.append(f"{number:2d}. {done}")
            lines.extend(f"      {event.describe()}" for event in self.relay.events[first:end])
        return lines

    def _operation(self, kind: str) -> Callable[[], str]:
        if kind in ("update", "delete annotation") and not self.annotations:
            kind = "annotate"
        if kind in ("annotate", "skip", "delete task") and not self.live.tasks:
            kind = "import"
        return {
            "upload scene": self.upload_scene, "annotate": self.annotate, "skip": self.skip,
            "update": self.update, "delete annotation": self.delete_annotation,
            "delete task": self.delete_task, "import": self.import_tasks,
            "add label": self.add_label,
        }[kind]  # fmt: skip

    def upload_scene(self) -> str:
        ids = self.live.upload(make_images())
        return f"upload the 5 scene images -> tasks {sorted(ids.values())}"

    def _task(self) -> tuple[str, int]:
        name = self.rng.choice(sorted(self.live.tasks))
        return name, self.live.tasks[name]

    def _result(self, name: str) -> tuple[list[dict[str, Any]], str]:
        """A result for image ``name``, and how the log names it (one that fails says so)."""
        width, height = self.live.sizes[name]
        builder = ResultBuilder(width, height, seed=self.rng.randrange(1 << 30))
        result = relabel(
            plant_result(builder, self.rng.randrange(4)), lambda: self.rng.choice(self.labels)
        )
        failing = self.rng.random() < FAILING
        if failing:  # one area region (keypoints paint none): the rest stays plausible
            areas = [item for item in result if item["type"] not in ("keypointlabels", "choices")]
            relabel([self.rng.choice(areas)], lambda: UNLISTED_LABEL)
        time.sleep(0.02)  # Label Studio stamps with microseconds: keep updated_at ordered
        return result, f" (with label {UNLISTED_LABEL!r})" if failing else ""

    def annotate(self, skipped: bool = False) -> str:
        name, task = self._task()
        empty = skipped and self.rng.random() < 0.5  # the editor's Skip sends no regions
        result, failing = ([], "") if empty else self._result(name)
        made = int(self.live.ls.create_annotation(task, result, was_cancelled=skipped)["id"])
        self.annotations[made] = task
        what = "skip" if skipped else "annotate"
        return f"{what} task {task} ({name}) -> annotation {made}{failing}"

    def skip(self) -> str:
        return self.annotate(skipped=True)

    def update(self) -> str:
        annotation = self.rng.choice(sorted(self.annotations))
        task = self.annotations[annotation]
        name = next(n for n, t in self.live.tasks.items() if t == task)
        result, failing = self._result(name)
        self.live.ls.update_annotation(annotation, result)
        return f"update annotation {annotation} of task {task} ({name}){failing}"

    def delete_annotation(self) -> str:
        annotation = self.rng.choice(sorted(self.annotations))
        self.live.delete(f"/api/annotations/{annotation}/")
        return f"delete annotation {annotation} of task {self.annotations.pop(annotation)}"

    def delete_task(self) -> str:
        name, task = self._task()
        self.live.ls.delete_task(task)
        del self.live.tasks[name]
        self.annotations = {a: t for a, t in self.annotations.items() if t != task}
        return f"delete task {task} ({name})"

    def _new_images(self, count: int) -> list[SceneImage]:
        images = []
        for _ in range(count):
            self.made += 1
            width, height = self.rng.choice(SMALL_SIZES)
            seed = self.rng.randrange(1 << 30)
            images.append(small_image(f"made_{self.made}.png", width, height, seed))
        return images

    def import_tasks(self) -> str:
        images = self._new_images(self.rng.randint(1, 2))
        if self.rng.random() < 0.5:
            ids = self.live.upload(images)
            return f"upload {sorted(ids)} -> tasks {sorted(ids.values())}"
        records = []
        for image in images:
            self.live.add_image(image)
            url = f"/data/upload/{self.live.project}/{self.rng.getrandbits(32):08x}-{image.name}"
            annotations = [
                {"result": self._result(image.name)[0], "was_cancelled": self.rng.random() < 0.2}
                for _ in range(self.rng.randint(0, 2))
            ]
            records.append({"data": {"image": url}, "annotations": annotations})
        self.live.ls.import_tasks(self.live.project, records)
        ids = self.live.refresh_tasks({image.name for image in images})
        for task in ids.values():
            self.annotations.update(dict.fromkeys(self.live.annotation_ids(task), task))
        counts = [len(r["annotations"]) for r in records]
        return (
            f"import JSON {sorted(ids)} with {counts} annotations -> tasks {sorted(ids.values())}"
        )

    def add_label(self) -> str:
        label = f"extra{len(self.labels) - len(LABELS) + 1}"
        self.labels.insert(self.rng.randint(0, len(self.labels)), label)
        self.live.set_label_config(_config(self.labels))
        return f"add label {label!r}: labels now {self.labels}"


def _plan(rng: random.Random, count: int) -> list[str]:
    """``count`` operation kinds: every kind once (when there is room), then weighted draws."""
    kinds = list(KINDS)[:count]
    kinds += rng.choices(list(KINDS), weights=list(KINDS.values()), k=count - len(kinds))
    rng.shuffle(kinds)
    return kinds


def _trial(
    stack: Stack,
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    connection: redis.Redis,
    seed: int,
    operations: int,
) -> Scenario:
    """One trial; returns its scenario, or fails naming the seed and the operations."""
    root = stack.logs / f"trial-{seed}"
    settings, title = stack.settings, f"convergence {seed}"
    resynced = "(not reached)"
    with (
        open_live_project(label_studio, ls_client, settings, connection, root, title) as live,
        WebhookRelay(stack.backend_url, CHAOS, seed=f"relay {seed}") as relay,
    ):
        rng = random.Random(seed)
        scenario = Scenario(live, relay, rng)
        try:
            live.connect(relay.url)
            scenario.step("upload scene")
            for kind in _plan(rng, operations):
                scenario.step(kind)
            relay.settle()
            resynced = run_resync(live)
            final = live.assert_store_equals_batch("final", failed=None)  # any, but alike
            scenario.failed = len(final["failures"])
            live.assert_blobs_whole()
        except Exception as exc:  # pytest.fail's exception is no Exception: not caught here
            report = _report(seed, operations, scenario, resynced, root, exc)
            pytest.fail(report, pytrace=False)
    return scenario


def _report(
    seed: int, operations: int, scenario: Scenario, resynced: str, logs: Path, exc: Exception
) -> str:
    replay = (
        f"pytest tests/e2e/test_convergence.py --convergence-seed {seed} "
        f"--convergence-trials 1 --convergence-ops {operations}"
    )
    return "\n".join([
        f"the store did not converge in the trial with seed {seed}: "
        f"{type(exc).__name__}: {exc}",
        f"replay: {replay}",
        "operations (and the fate of each webhook they caused):",
        *scenario.log(),
        f"resync: {resynced.strip()}",
        f"logs and files: {logs} (service logs one folder up)",
    ])  # fmt: skip


def test_resync_converges_whatever_happens_to_webhooks(
    request: pytest.FixtureRequest,
    stack: Stack,
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    redis_client: redis.Redis,
) -> None:
    trials = int(request.config.getoption("--convergence-trials", 2))
    operations = int(request.config.getoption("--convergence-ops", 12))
    base = request.config.getoption("--convergence-seed", None)
    seed = int(base) if base is not None else random.SystemRandom().randrange(1 << 31)
    print(f"convergence: {trials} trials x {operations} operations, seeds {seed}..")
    events = dropped = 0
    for trial in range(trials):
        scenario = _trial(stack, label_studio, ls_client, redis_client, seed + trial, operations)
        print(f"trial {trial + 1}, seed {seed + trial}:", *scenario.log(), sep="\n")
        print(f"converged with {scenario.failed} failed task(s), listed alike in both sidecars")
        events += len(scenario.relay.events)
        dropped += sum(not event.delays for event in scenario.relay.events)
    print(f"convergence: {events} webhooks relayed, {dropped} dropped; all trials converged")
