"""``ls-panoptic resync``: which job it enqueues in the real queue (the work itself: e2e)."""

from __future__ import annotations

import pytest
import redis
from click.testing import CliRunner
from rq import Queue

from cli.store_cmds import resync
from worker.jobqueue import SERIALIZER

QUEUE = "lsp-test-resync-cli"


@pytest.mark.parametrize(
    ("flags", "function", "word"),
    [([], "worker.jobs.resync_project", "resync"),
     (["--rebuild"], "worker.jobs.rebuild_project", "rebuild")],
)  # fmt: skip
def test_resync_enqueues_a_resync_or_with_rebuild_a_rebuild(
    redis_url: str, redis_client: redis.Redis, flags: list[str], function: str, word: str
) -> None:
    env = {"REDIS_URL": redis_url, "LS_PANOPTIC_QUEUE": QUEUE}
    result = CliRunner().invoke(resync, ["--project", "7", *flags], env=env)
    assert result.exit_code == 0, result.output
    queue = Queue(QUEUE, connection=redis_client, serializer=SERIALIZER)
    jobs = queue.get_jobs()
    assert [(job.func_name, list(job.args)) for job in jobs] == [(function, [7])]
    assert result.output.strip() == f"{word} of project 7 enqueued as job {jobs[0].id}"


def test_resync_help_explains_rebuild() -> None:
    text = CliRunner().invoke(resync, ["--help"]).output
    assert "--rebuild" in text and "Re-convert every task" in text
