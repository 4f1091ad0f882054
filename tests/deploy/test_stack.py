"""docker-compose.yml for real: the image built, the stack up, a real Label Studio posting to it.

The image is built from the Dockerfile by Docker Compose (base: ``$LSP_DOCKER_BASE``, default
``ls-panoptic-base:bookworm``, the Debian bookworm image ``.ci/install-docker`` makes with
debootstrap, since no image registry is reachable here; it has redis-server too, so it also
stands in for ``redis:7-alpine``). Compose project ``lsp-deploytest``, image
``lsp-deploytest:latest``: Redis with AOF, the backend, three workers (``--scale worker=3``),
rq-dashboard. Label Studio 1.23.2 runs on the host (as in tests/e2e, listening on 127.0.0.1
only); the containers reach it through a TCP relay on the Docker bridge's gateway address
(``host.docker.internal``), and it posts its webhooks to the backend container's published port.

Checked: the snapshot the backend container serves is byte for byte ``ls-panoptic convert`` of a
fresh export, first by webhooks alone, then after a burst of edits during which the workers are
restarted (``docker compose restart worker``) and Redis is stopped and started again (AOF: the
entries survive), and a resync; the jobs ran on all three workers (rq records each job's worker);
the dashboard asks for its password.

Without a Docker engine (or the base image) the test skips, unless ``LSP_DOCKER_REQUIRED=1``
(``make test`` sets it): then it fails. Everything is removed at the end (``compose down -v``).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import redis
from click.testing import CliRunner

from cli.main import cli
from devstack.labelstudio import (
    LabelStudioServer,
)
from devstack.supervisor import free_port, poll_until
from tests.e2e._services import TcpGate, service_process
from tests.e2e._sync_helpers import small_image
from tests.e2e.build_project import LABEL_CONFIG
from tests.e2e.lsclient import LabelStudioClient
from tests.e2e.reference import image_key
from tests.e2e.scene import ResultBuilder, SceneImage, plant_result
from worker.keys import Keys
from worker.settings import Settings

from ._compose import COMPOSE_FILE, REPO, compose_binary

pytestmark = pytest.mark.e2e

PROJECT_NAME = "lsp-deploytest"
IMAGE = f"{PROJECT_NAME}:latest"
DEFAULT_BASE = "ls-panoptic-base:bookworm"
OVERRIDE = Path(__file__).with_name("stack.override.yml")
WORKERS = 3
IMAGES = 8
#: seconds the store gets to follow Label Studio (webhooks, then jobs on the workers)
CONVERGE_TIMEOUT = 180.0


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("LSP_DOCKER_REQUIRED", "").strip() == "1":
        pytest.fail(f"{message} (LSP_DOCKER_REQUIRED=1)", pytrace=False)
    pytest.skip(f"{message}; set LSP_DOCKER_REQUIRED=1 to fail instead")


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    docker = shutil.which("docker")
    if docker is None:
        _unavailable("no docker client on the PATH: run .ci/install-docker")
    return subprocess.run([docker, *args], capture_output=True, text=True, timeout=60, check=False)


def _require_engine(base: str) -> str:
    """The host's address as the containers see it (``host-gateway``: the bridge's gateway)."""
    info = _docker("info", "--format", "{{.ServerVersion}}")
    if info.returncode != 0:
        _unavailable(f"no Docker engine answers ({info.stderr.strip()}): run .ci/install-docker")
    if _docker("image", "inspect", base).returncode != 0:
        _unavailable(f"no base image {base!r}: run .ci/install-docker (or set LSP_DOCKER_BASE)")
    # what `host-gateway` resolves to inside a container: the relay to Label Studio listens there
    hosts = _docker("run", "--rm", "--add-host", "gateway:host-gateway", base,
                    "getent", "hosts", "gateway")  # fmt: skip
    assert hosts.returncode == 0 and hosts.stdout.split(), hosts.stdout + hosts.stderr
    return hosts.stdout.split()[0]


def _ca_bundle() -> str | None:
    """The CA bundle this machine's pip trusts (a TLS-intercepting proxy's CA included), for
    pip inside the build: passed as the ``ca_bundle`` build secret."""
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name, "").strip()
        if value and Path(value).is_file():
            return value
    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and Path(cafile).is_file() else None


class GatewayRelay(TcpGate):
    """A :class:`TcpGate` listening on ``host`` (the bridge's gateway) instead of 127.0.0.1:
    the containers' way to a Label Studio that listens on the host's loopback only."""

    def __init__(self, host: str, upstream: tuple[str, int]) -> None:
        super().__init__(upstream)
        self.host, self.port = host, free_port(host)

    def open(self) -> None:
        self._listener = socket.create_server((self.host, self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()


@dataclass
class Stack:
    """The running compose project and how the test reaches it from the host."""

    env: dict[str, str]
    backend: str
    dashboard: str
    redis_url: str
    label_studio: LabelStudioServer
    log: Path
    timings: dict[str, float] = field(default_factory=dict)

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        """``docker compose -p lsp-deploytest -f docker-compose.yml -f stack.override.yml
        ARGS``; its output (appended to the log), or the test fails with it."""
        command = [str(compose_binary()), "-p", PROJECT_NAME, "-f", str(COMPOSE_FILE),
                   "-f", str(OVERRIDE), *args]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(
            command, env=self.env, cwd=REPO, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        output = done.stdout + done.stderr
        with self.log.open("a") as log:
            log.write(f"$ docker compose {' '.join(args)}  ({elapsed:.1f} s, {done.returncode})\n")
            log.write(output + "\n")
        if check and done.returncode != 0:
            pytest.fail(
                f"docker compose {' '.join(args)} exited {done.returncode}:\n{output[-4000:]}",
                pytrace=False,
            )
        step = args[2] if args[0] == "--progress" else args[0]
        self.timings[step] = self.timings.get(step, 0.0) + elapsed
        return output

    def note(self, what: str) -> None:
        """A line in the log: ``what``, at seconds since the stack came up."""
        with self.log.open("a") as log:
            log.write(f"# {time.monotonic() - self.timings.get('_up', 0.0):7.1f} s  {what}\n")

    @property
    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['API_TOKEN']}"}

    def host_env(self) -> dict[str, str]:
        """The settings of ``ls-panoptic`` commands run on the host against this stack."""
        names = ("WEBHOOK_TOKEN", "API_TOKEN")
        return {
            **{name: self.env[name] for name in names},
            "REDIS_URL": self.redis_url,
            "LABEL_STUDIO_URL": self.label_studio.url,
            "LABEL_STUDIO_API_KEY": self.label_studio.token,
            "LS_PANOPTIC_RESYNC_INTERVAL": "0",  # as stack.override.yml sets it
        }


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, label_studio: LabelStudioServer
) -> Iterator[Stack]:
    """The compose stack, with the session's real Label Studio (tests/conftest.py) posting its
    webhooks into the backend container."""
    base = os.environ.get("LSP_DOCKER_BASE", "").strip() or DEFAULT_BASE
    gateway = _require_engine(base)
    root = tmp_path_factory.mktemp("compose-stack")
    upstream = ("127.0.0.1", int(label_studio.url.rsplit(":", 1)[1]))
    relay = GatewayRelay(gateway, upstream)
    with relay:
        yield from _run_stack(root, base, label_studio, relay)


def _run_stack(
    root: Path, base: str, server: LabelStudioServer, relay: GatewayRelay
) -> Iterator[Stack]:
    backend_port, dashboard_port, redis_port = (free_port() for _ in range(3))
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(root),  # the compose binary's own config, not the user's
        "LS_PANOPTIC_IMAGE": IMAGE,
        "BASE": base,
        "REDIS_IMAGE": os.environ.get("LSP_DOCKER_REDIS_IMAGE", "").strip() or base,
        "LABEL_STUDIO_URL": f"http://host.docker.internal:{relay.port}",
        "LABEL_STUDIO_API_KEY": server.token,
        "LABEL_STUDIO_PASSWORD": "unused-demo-profile-only",
        "WEBHOOK_TOKEN": os.urandom(16).hex(),
        "API_TOKEN": os.urandom(16).hex(),
        "BACKEND_PORT": f"127.0.0.1:{backend_port}",
        "DASHBOARD_PORT": f"127.0.0.1:{dashboard_port}",
        "LSP_TEST_REDIS_PORT": str(redis_port),
    }
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    if bundle := _ca_bundle():
        env["CA_BUNDLE"] = bundle
    stack = Stack(
        env, f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{dashboard_port}",
        f"redis://127.0.0.1:{redis_port}/0", server, root / "compose.log",
    )  # fmt: skip
    try:
        stack.compose("--progress", "plain", "build", "backend", timeout=1200)
        stack.compose("up", "-d", "--no-build", "--scale", f"worker={WORKERS}",
                      "--wait", "--wait-timeout", "120")  # fmt: skip
        if not poll_until(lambda: _ok(f"{stack.backend}/health"), 60, 0.5):
            pytest.fail(f"the backend container is not healthy: {stack.compose('logs')[-4000:]}")
        stack.timings["_up"] = time.monotonic()
        yield stack
    finally:
        stack.compose("logs", "--no-color", "--timestamps", check=False)  # into the log
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        steps = {step: round(s, 1) for step, s in stack.timings.items() if step != "_up"}
        print(f"compose stack timings (s): {steps}; log {stack.log}")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


class Project:
    """One Label Studio project connected to the stack, and its check against ``convert``."""

    def __init__(self, stack: Stack, ls: LabelStudioClient, root: Path) -> None:
        self.stack, self.ls, self.root = stack, ls, root
        self.id = int(ls.create_project("compose stack", LABEL_CONFIG)["id"])
        self.images: dict[str, SceneImage] = {}
        self.tasks: dict[str, int] = {}
        (root / "images").mkdir(parents=True)
        self._checks = 0

    def connect(self) -> str:
        """``ls-panoptic connect``: Label Studio posts to the backend container's port."""
        args = ["connect", "--project", str(self.id), "--url", self.stack.backend]
        outcome = CliRunner().invoke(cli, args, env=self.stack.host_env())
        assert outcome.exit_code == 0, outcome.output
        return outcome.output

    def upload(self, images: list[SceneImage]) -> None:
        self.ls.import_files(self.id, {image.name: image.data for image in images})
        for image in images:
            (self.root / "images" / image.name).write_bytes(image.data)
            self.images[image.name] = image
        listed = self.ls.list_tasks(self.id)
        self.tasks = {image_key(task["data"]["image"]): int(task["id"]) for task in listed}

    def result(self, name: str, seed: int) -> list[dict[str, Any]]:
        image = self.images[name]
        return plant_result(ResultBuilder(image.width, image.height, seed=seed), seed % 3)

    def snapshot(self) -> bytes | None:
        url = f"{self.stack.backend}/projects/{self.id}/snapshot.pkl"
        response = httpx.get(url, headers=self.stack.api_headers, timeout=60)
        return response.content if response.status_code == 200 else None

    def batch(self) -> bytes:
        """``ls-panoptic convert`` of a fresh JSON export of the project."""
        self._checks += 1
        folder = self.root / f"batch-{self._checks}"
        folder.mkdir()
        (folder / "export.json").write_bytes(self.ls.export(self.id, "JSON"))
        (folder / "config.xml").write_text(self.ls.get_project(self.id)["label_config"])
        args = ["convert", str(folder / "export.json"), "--images", str(self.root / "images"),
                "--label-config", str(folder / "config.xml"), "--output",
                str(folder / "snapshot.pkl")]  # fmt: skip
        outcome = CliRunner().invoke(cli, args)
        assert outcome.exit_code == 0, outcome.output
        return (folder / "snapshot.pkl").read_bytes()

    def converged(self) -> bool:
        live = self.snapshot()
        return live is not None and live == self.batch()

    def wait_converged(self, what: str) -> None:
        converged = poll_until(self.converged, CONVERGE_TIMEOUT, 1.0)
        self.stack.note(f"{what}: {'converged' if converged else 'NOT converged'}")
        if not converged:
            logs = self.stack.compose("logs", "--tail", "40", check=False)
            pytest.fail(
                f"{what}: the backend's snapshot is not `convert` of a fresh export after "
                f"{CONVERGE_TIMEOUT:g} s; compose logs:\n{logs[-6000:]}",
                pytrace=False,
            )

    def entries_in_store(self, connection: redis.Redis) -> int:
        keys = Keys(Settings().key_prefix)
        return int(connection.hlen(keys.manifest(self.id)))


def _job_workers(connection: redis.Redis) -> dict[str, int]:
    """Worker name -> how many of the finished jobs in Redis it ran (rq's ``worker_name``)."""
    counts: dict[str, int] = {}
    for key in connection.scan_iter("rq:job:*", count=1000):
        if connection.type(key) != b"hash":
            continue
        status, worker = connection.hmget(key, "status", "worker_name")
        if status == b"finished" and worker:
            name = worker.decode() if isinstance(worker, bytes) else str(worker)
            counts[name] = counts.get(name, 0) + 1
    return counts


def _during(action: Callable[[], object], edits: Callable[[], None]) -> None:
    """``edits()`` in this thread while ``action()`` runs in another (both finish)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        edits()
    finally:
        thread.join(timeout=600)
    if errors:
        raise errors[0]


def test_the_compose_stack_keeps_the_store_equal_to_convert(stack: Stack, tmp_path: Path) -> None:
    connection = redis.Redis.from_url(stack.redis_url)
    assert connection.config_get("appendonly")["appendonly"] == "yes"
    with LabelStudioClient(stack.label_studio.url, stack.label_studio.token) as ls:
        project = Project(stack, ls, tmp_path)
        project.connect()
        stack.note("connected")

        # webhooks alone: TASKS_CREATED, then one ANNOTATION_CREATED per image
        project.upload([small_image(f"photo-{i}.png", 160, 120, seed=i) for i in range(IMAGES)])
        annotations = {
            name: int(ls.create_annotation(task, project.result(name, seed))["id"])
            for seed, (name, task) in enumerate(sorted(project.tasks.items()))
        }
        project.wait_converged("after the webhooks")
        ran = _job_workers(connection)
        assert len(ran) == WORKERS, f"jobs ran on {ran}, expected all {WORKERS} workers"

        seeds = iter(range(100, 10_000))

        def edit_all(rounds: int = 1) -> None:
            for _ in range(rounds):
                for name, annotation in annotations.items():
                    ls.update_annotation(annotation, project.result(name, next(seeds)))

        # a burst while the workers restart: the events wait in Redis, nothing is lost; and a
        # worker outside the compose project (another machine: it needs only Redis and Label
        # Studio) takes the jobs meanwhile
        stack.note("edits while the workers restart")
        host_worker = ["worker", "--with-scheduler"]
        with service_process(host_worker, stack.host_env(), tmp_path / "host-worker.log"):
            _during(lambda: stack.compose("restart", "worker"), lambda: edit_all(3))
            project.wait_converged("after `docker compose restart worker` mid-burst")
            # no job stranded by a worker that stopped as it took it (rq's own cleanup would
            # free it only after a minute; tests/integration/test_worker_stop.py)
            intermediate = f"rq:queue:{Settings().queue_name}:intermediate"
            assert poll_until(lambda: connection.llen(intermediate) == 0, 5, 0.2), (
                f"jobs stranded in {intermediate}: {connection.lrange(intermediate, 0, -1)}"
            )
            here = socket.gethostname()
            on_host = {
                name: jobs
                for name, jobs in _job_workers(connection).items()
                if connection.hget(f"rq:worker:{name}", "hostname") == here.encode()
            }
        assert sum(on_host.values()) > 0, "the worker outside the compose project ran no job"

        # a burst while Redis stops; a round of edits while it is down (the backend cannot
        # enqueue: Label Studio never retries, so these events are lost); Redis back
        stack.note("edits while Redis stops")
        _during(lambda: stack.compose("stop", "redis"), edit_all)
        edit_all()
        stack.compose("start", "redis")
        assert poll_until(lambda: _ok(f"{stack.backend}/health"), 60, 0.5)
        assert project.entries_in_store(connection) == IMAGES  # kept across the restart (AOF)
        time.sleep(5.0)  # what was queued before the stop runs now
        assert not project.converged(), "no event of the last round reached the store"

        stack.note("resync")
        args = ["resync", "--project", str(project.id), "--wait", "--timeout", "180"]
        outcome = CliRunner().invoke(cli, args, env=stack.host_env())
        assert outcome.exit_code == 0, outcome.output
        stack.note(f"resync --wait returned: {' / '.join(outcome.output.splitlines())}")
        project.wait_converged("after `docker compose stop/start redis` and a resync")

        # the review page and its static files are in the image (package data)
        auth = ("admin", stack.env["API_TOKEN"])
        review = f"{stack.backend}/projects/{project.id}/review"
        assert poll_until(lambda: httpx.get(review, auth=auth, timeout=30).status_code == 200, 30)
        assert "<html" in httpx.get(review, auth=auth, timeout=30).text.lower()
        css = httpx.get(f"{stack.backend}/projects/review-static/review.css", auth=auth, timeout=30)
        assert css.status_code == 200 and css.content

        dashboard = httpx.get(f"{stack.dashboard}/", timeout=30)
        assert dashboard.status_code == 401
        authorised = httpx.get(f"{stack.dashboard}/", auth=auth, timeout=30)
        assert authorised.status_code == 200
