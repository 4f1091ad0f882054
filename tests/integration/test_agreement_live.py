"""Live agreement against a real Redis, through the jobs: a synced task with two or more usable
annotations gets its pairs' PQ recorded with its state; ``GET /projects/<id>/agreement`` gives
the document ``ls-panoptic agreement --json`` gives for the same tasks, and ``/metrics`` the mean.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from cli.agreement import agreement
from tests.service import API
from tests.stub_labelstudio import P, StubLabelStudio
from worker import runtime
from worker.keys import Keys

from .test_queueing import annotation, now, polygon, sync_and_run

LEAF = [(10.0, 10.0), (60.0, 15.0), (40.0, 70.0)]
STEM = [(70.0, 20.0), (95.0, 20.0), (95.0, 90.0), (70.0, 90.0)]


def drawn(annotation_id: int, annotator: int, shift: float = 0.0, **extra: Any) -> dict[str, Any]:
    """A leaf and a stem, the stem moved right by ``shift`` percent, by user ``annotator``."""
    stem = [(x - shift, y) for x, y in STEM]
    result = [polygon("leaf", LEAF, "r1"), polygon("stem", stem, "r2")]
    return {**annotation(annotation_id, "leaf", now()), "result": result,
            "completed_by": annotator, **extra}  # fmt: skip


def live(client: FlaskClient, query: str = "") -> dict[str, Any]:
    answer = client.get(f"/projects/{P}/agreement{query}", headers=API)
    assert answer.status_code == 200, answer.data
    body = answer.json
    assert isinstance(body, dict)
    return body


def batch(stub: StubLabelStudio, folder: Path, *args: str) -> dict[str, Any]:
    """``ls-panoptic agreement --json`` of the stub's tasks, as an export."""
    export, config = folder / "export.json", folder / "config.xml"
    export.write_text(json.dumps([raw for _id, raw in sorted(stub.tasks.items())]))
    config.write_text(stub.config)
    result = CliRunner().invoke(
        agreement, [str(export), "--label-config", str(config), "--json", "--quiet", *args]
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def mean_pq_metric(client: FlaskClient) -> float | None:
    text = client.get("/metrics").get_data(as_text=True)
    found = re.search(rf'^ls_panoptic_agreement_pq\{{project="{P}"\}} (\S+)$', text, re.M)
    return None if found is None else float(found.group(1))


def test_a_task_with_two_annotations_is_listed_as_the_batch_lists_it(
    rt: runtime.Runtime, stub: StubLabelStudio, client: FlaskClient, tmp_path: Path
) -> None:
    stub.add(1, drawn(11, annotator=1), drawn(12, annotator=2, shift=8.0))
    stub.add(2, drawn(21, annotator=1), drawn(22, annotator=3, shift=30.0))
    stub.add(3, drawn(31, annotator=1))  # one annotation: nothing to compare
    sync_and_run(rt, [1, 2, 3])
    got, expected = live(client, "?min_pq=0.9"), batch(stub, tmp_path, "--min-pq", "0.9")
    for field in ("pairs", "summary", "review", "classes", "stuff"):
        assert got[field] == expected[field], field
    assert [t["task_id"] for t in got["summary"]["tasks"]] == [2, 1]  # worst first
    assert 0 < got["summary"]["tasks"][0]["pq"] < got["summary"]["tasks"][1]["pq"] < 1
    assert got["review"] == {"min_pq": 0.9, "task_ids": [2, 1]}
    assert live(client)["review"] is None
    overall = got["summary"]["overall"]
    assert mean_pq_metric(client) == pytest.approx(overall["pq"], abs=1e-12)
    assert overall["pairs"] == 2


def test_an_update_changes_the_record_and_a_delete_removes_it(
    rt: runtime.Runtime, stub: StubLabelStudio, client: FlaskClient, tmp_path: Path, keys: Keys
) -> None:
    stub.add(1, drawn(11, annotator=1), drawn(12, annotator=2, shift=8.0))
    stub.add(2, drawn(21, annotator=1), drawn(22, annotator=3, shift=30.0))
    sync_and_run(rt, [1, 2])
    (before,) = [p["pq"] for p in live(client)["pairs"] if p["task_id"] == 1]
    assert before < 1

    stub.tasks[1]["annotations"][1] = drawn(12, annotator=2)  # now drawn as user 1 drew it
    sync_and_run(rt, [1])
    pairs = {p["task_id"]: p["pq"] for p in live(client)["pairs"]}
    assert pairs[1] == 1.0
    assert live(client)["summary"] == batch(stub, tmp_path)["summary"]
    assert mean_pq_metric(client) == pytest.approx((1.0 + pairs[2]) / 2, abs=1e-12)

    del stub.tasks[1]  # the task is deleted: the sync drops it
    sync_and_run(rt, [1])
    assert [p["task_id"] for p in live(client)["pairs"]] == [2]
    assert mean_pq_metric(client) == pytest.approx(pairs[2], abs=1e-12)

    stub.tasks[2]["annotations"].pop()  # one annotation left: nothing to compare
    sync_and_run(rt, [2])
    assert live(client)["pairs"] == [] and live(client)["summary"]["overall"] is None
    assert mean_pq_metric(client) is None
    totals = rt.redis.hgetall(keys.agreement_totals(P))
    assert int(totals[b"pairs"]) == 0 and abs(float(totals[b"pq_sum"])) < 1e-12


def test_an_annotation_that_fails_loses_only_its_pairs(
    rt: runtime.Runtime, stub: StubLabelStudio, client: FlaskClient, tmp_path: Path
) -> None:
    """Advisory: the task's entry is stored, and the other annotations are compared."""
    broken = {**annotation(10, "weed", now()), "completed_by": 4}  # not in the label config
    stub.add(1, broken, drawn(11, annotator=1), drawn(12, annotator=2, shift=8.0))
    sync_and_run(rt, [1])
    (state,) = rt.store.states(P)
    assert state.status == "ok"
    pairs = live(client)["pairs"]
    assert [(p["a"]["annotation_id"], p["b"]["annotation_id"]) for p in pairs] == [(11, 12)]
    assert pairs == batch(stub, tmp_path)["pairs"]


def test_a_task_with_one_annotation_writes_no_record(
    rt: runtime.Runtime, stub: StubLabelStudio, client: FlaskClient, keys: Keys
) -> None:
    stub.add(1, drawn(11, annotator=1), drawn(12, annotator=2, was_cancelled=True))
    sync_and_run(rt, [1])
    assert rt.store.states(P)[0].status == "ok"
    assert not rt.redis.exists(keys.agreement(P), keys.agreement_totals(P))
    assert live(client)["summary"]["tasks"] == []


@pytest.mark.parametrize("bad", ["x", "1.5", "-0.1", "nan", "inf"])
def test_a_bad_min_pq_is_refused(
    rt: runtime.Runtime, stub: StubLabelStudio, client: FlaskClient, bad: str
) -> None:
    stub.add(1, drawn(11, annotator=1))
    sync_and_run(rt, [1])
    answer = client.get(f"/projects/{P}/agreement?min_pq={bad}", headers=API)
    assert answer.status_code == 400
    assert answer.json is not None and "min_pq" in json.dumps(answer.json)


def test_the_agreement_needs_the_api_token(client: FlaskClient) -> None:
    assert client.get(f"/projects/{P}/agreement").status_code == 401


def test_a_failed_task_keeps_its_other_pairs_until_the_project_is_dropped(
    rt: runtime.Runtime, stub: StubLabelStudio, client: FlaskClient, keys: Keys
) -> None:
    """The newest annotation fails: the task's state is ``error``, as in a batch conversion,
    while the older two are still compared, as the batch ``agreement`` compares them."""
    older = drawn(11, annotator=1), drawn(12, annotator=2, shift=8.0)
    stub.add(1, *older, {**annotation(13, "weed", now()), "completed_by": 4})
    sync_and_run(rt, [1])
    assert rt.store.states(P)[0].status == "error"
    (pair,) = live(client)["pairs"]
    assert (pair["a"]["annotation_id"], pair["b"]["annotation_id"]) == (11, 12)
    assert mean_pq_metric(client) == pytest.approx(pair["pq"], abs=1e-12)

    rt.store.drop_project(P)
    assert not rt.redis.exists(keys.agreement(P), keys.agreement_totals(P))
