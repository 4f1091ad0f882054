"""``ls-panoptic up --demo`` end to end, on the session's real Label Studio 1.23.2.

``up`` starts the backend and a worker as processes (and a redis-server when none answers at
the test database), creates a project, annotates it through Label Studio's API so that the
webhooks fill the store, downloads the snapshot from the backend and compares it with the
batch conversion of Label Studio's export. The test checks that comparison itself, then that
every process of the run is gone and its Redis keys deleted.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from click.testing import CliRunner, Result

from cli.up import up
from devstack.labelstudio import LabelStudioServer

pytestmark = pytest.mark.e2e

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
N_IMAGES = 4  # the last one is only skipped: N_IMAGES - 1 entries


@pytest.fixture
def redis_url() -> str:
    return os.environ.get("LSP_TEST_REDIS_URL", "").strip() or DEFAULT_TEST_REDIS_URL


def _run_up(args: list[str]) -> Result:
    return CliRunner().invoke(up, args, catch_exceptions=False)


def _load(path: Path) -> dict[str, dict[str, Any]]:
    with path.open("rb") as file:
        loaded: dict[str, dict[str, Any]] = pickle.load(file)
    return loaded


def _run_id(output: str) -> str:
    found = re.search(r"prefix lsp-demo-([0-9a-f]{12})", output)
    assert found, output
    return found.group(1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _processes_of_run(run_id: str) -> list[int]:
    """Every process whose environment names the run's key prefix: the backend, the worker
    and anything they forked (gunicorn workers, rq work horses), orphaned or not."""
    marker = f"LS_PANOPTIC_KEY_PREFIX=lsp-demo-{run_id}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _assert_run_cleaned_up(output: str, redis_url: str) -> None:
    run_id = _run_id(output)
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", output)]
    assert pids, output
    assert [pid for pid in pids if _pid_alive(pid)] == []
    assert _processes_of_run(run_id) == []
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"*{run_id}*")) == []
    finally:
        client.close()


def test_up_demo_live_snapshot_equals_batch_conversion(
    label_studio: LabelStudioServer, tmp_path: Path, redis_url: str
) -> None:
    result = _run_up([
        "--demo", "--label-studio-url", label_studio.url, "--api-key", label_studio.token,
        "--redis-url", redis_url, "--output-dir", str(tmp_path), "--images", str(N_IMAGES),
    ])  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "live snapshot == batch conversion, bit for bit" in result.output
    live_path, batch_path = tmp_path / "live/panoptic_gt.pkl", tmp_path / "batch/panoptic_gt.pkl"
    live, batch = _load(live_path), _load(batch_path)
    assert sorted(live) == sorted(batch) == [f"plant_{n:03d}.{'png' if n % 2 else 'jpg'}"
                                             for n in range(N_IMAGES - 1)]  # fmt: skip
    for key, entry in live.items():
        mask = entry["panoptic_mask"]
        assert mask.dtype == np.uint32 and mask.flags.c_contiguous
        np.testing.assert_array_equal(mask, batch[key]["panoptic_mask"])
        assert entry["inst2class"] == batch[key]["inst2class"]
        assert set(np.unique(mask).tolist()) == set(entry["inst2class"])
    assert live_path.read_bytes() == batch_path.read_bytes()
    assert len(list((tmp_path / "previews").glob("*.preview.png"))) == N_IMAGES - 1
    assert not (tmp_path / "service.env").exists()
    _assert_run_cleaned_up(result.output, redis_url)


def _failure_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "ls-panoptic up failed" in line]
    assert len(lines) == 1, output
    return lines[0]


def test_up_demo_stops_everything_when_a_process_fails(
    label_studio: LabelStudioServer, tmp_path: Path, redis_url: str
) -> None:
    """The backend cannot bind its port (bound by another socket, not listening: nothing
    answers there, so ``up`` starts the backend): one line names the step and the cause, the
    tail of its log is shown, and what was started is stopped."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        result = _run_up([
            "--demo", "--label-studio-url", label_studio.url, "--api-key", label_studio.token,
            "--redis-url", redis_url, "--output-dir", str(tmp_path),
            "--port", str(taken.getsockname()[1]),
        ])  # fmt: skip

    assert result.exit_code == 1, result.output
    line = _failure_line(result.output)
    assert "step 3/7" in line and "backend exited with code" in line, line
    assert f"--- last lines of {tmp_path / 'logs' / 'backend.log'} ---" in result.output
    assert "Address already in use" in result.output
    _assert_run_cleaned_up(result.output, redis_url)


def test_up_demo_refuses_a_bad_api_key_before_starting_anything(
    label_studio: LabelStudioServer, tmp_path: Path, redis_url: str
) -> None:
    result = _run_up([
        "--demo", "--label-studio-url", label_studio.url, "--api-key", "not-a-valid-token",
        "--redis-url", redis_url, "--output-dir", str(tmp_path),
    ])  # fmt: skip

    assert result.exit_code == 1, result.output
    line = _failure_line(result.output)
    assert "step 2/7" in line and "401" in line and "--api-key" in line, line
    assert "(pid" not in result.output
