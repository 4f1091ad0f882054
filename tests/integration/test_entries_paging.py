"""``GET /projects/<id>/entries`` paged by ``?limit=&after=`` (issue 14): the pages together are
the unpaged list, the headers lead from one page to the next, bad parameters are 400s. Real
Redis, Flask's test client."""

from __future__ import annotations

import numpy as np
import pytest
from flask.testing import FlaskClient

from ls_panoptic.model import Entry
from tests.service import API
from worker.store import Store

from .test_backend import CONFIG, ID2LABEL, PROJECT

STAMP = "2026-01-05T10:00:00+00:00"
URL = f"/projects/{PROJECT}/entries"


@pytest.fixture
def tasks(store: Store) -> list[int]:
    """250 tasks, ids not contiguous, some failed and some empty."""
    store.set_project(PROJECT, CONFIG, ID2LABEL)
    ids = [3 * n + 1 for n in range(250)]
    mask = np.ones((2, 3), dtype=np.uint32)
    for task_id in ids:
        if task_id % 7 == 0:
            store.record_error(PROJECT, task_id, f"task {task_id}: broken", STAMP)
        elif task_id % 11 == 0:
            store.mark_empty(PROJECT, task_id, STAMP)
        else:
            entry = Entry(f"img{task_id}.jpg", mask, {1: 0}, {"task_id": task_id})
            assert store.put_entry(PROJECT, task_id, entry, STAMP)
    return ids


def test_the_pages_together_are_the_unpaged_list(client: FlaskClient, tasks: list[int]) -> None:
    whole = client.get(URL, headers=API).json
    assert whole is not None and [s["task_id"] for s in whole] == tasks
    pages: list[list[dict[str, object]]] = []
    url = f"{URL}?limit=100"
    while url:
        answer = client.get(url, headers=API)
        assert answer.status_code == 200 and answer.headers["X-Total-Count"] == "250"
        assert answer.json is not None
        pages.append(answer.json)
        link = answer.headers.get("Link")
        if link is None:
            assert "X-Next-After" not in answer.headers
            break
        after = answer.headers["X-Next-After"]
        assert int(after) == answer.json[-1]["task_id"]
        url = link.split(">")[0].lstrip("<")
        assert url == f"{URL}?limit=100&after={after}" and link.endswith('; rel="next"')
    assert [len(page) for page in pages] == [100, 100, 50]
    assert [state for page in pages for state in page] == whole
    hinted = [s for s in whole if s["status"] == "error"]
    assert hinted and all("hint" in s for s in hinted)


def test_a_page_after_a_task_starts_past_it(client: FlaskClient, tasks: list[int]) -> None:
    answer = client.get(f"{URL}?limit=2&after=5", headers=API)
    assert [s["task_id"] for s in answer.json] == [7, 10]  # type: ignore[union-attr]
    last = client.get(f"{URL}?limit=5&after={tasks[-1]}", headers=API)
    assert last.json == [] and "Link" not in last.headers


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=ten", "limit=5&after=-1", "after=5", "limit="]
)
def test_bad_paging_parameters_are_400(client: FlaskClient, tasks: list[int], query: str) -> None:
    answer = client.get(f"{URL}?{query}", headers=API)
    assert answer.status_code == 400
    message = answer.json["message"] if answer.json else ""
    assert "limit" in message or "after" in message
