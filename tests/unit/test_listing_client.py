"""The real client's listings over HTTP (issue 14): task stamps, and chosen tasks listed by runs
of nearby ids, against Label Studio's ``GET /api/tasks/`` as an ``httpx.MockTransport``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from worker.labelstudio import LabelStudio, TaskStamp, _runs

TASKS = {n: {"id": n, "data": {"image": f"/data/upload/1/0000abcd-img{n}.jpg"},
             "annotations": [], "predictions": [], "total_annotations": n % 3,
             "updated_at": f"2026-01-{n % 28 + 1:02d}T00:00:00Z", "total_predictions": 0}
         for n in (*range(1, 12), 40, 41, 90)}  # fmt: skip


class Api:
    """Answers like Label Studio: tasks whose id passes the query's filters, by id, one page."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/tasks/"
        params = dict(request.url.params)
        query = json.loads(params["query"])
        self.requests.append({**params, "query": query})
        rows = sorted(TASKS)
        for item in query["filters"]["items"]:
            value = item["value"]
            rows = [n for n in rows if (n > value if item["operator"] == "greater" else n < value)]
        page = [TASKS[n] for n in rows][: int(params["page_size"])]
        if params.get("include"):
            fields = params["include"].split(",")
            page = [{k: v for k, v in row.items() if k in fields} for row in page]
        return httpx.Response(200, content=json.dumps({"tasks": page}).encode())


def client(api: Api) -> LabelStudio:
    ls = LabelStudio("http://label-studio.test", "legacy-token", page_size=4)
    ls._http._transport = httpx.MockTransport(api)
    return ls


@pytest.mark.parametrize(
    ("ids", "gap", "runs"),
    [([], 4, []), ([5], 4, [(5, 5)]), ([1, 2, 3, 9, 40, 41], 4, [(1, 3), (9, 9), (40, 41)]),
     ([1, 4, 8], 4, [(1, 4), (8, 8)]), ([1, 4, 8], 3, [(1, 1), (4, 4), (8, 8)]),
     ([1, 4, 8], 5, [(1, 8)])],
)  # fmt: skip
def test_runs_join_ids_closer_than_the_gap(
    ids: list[int], gap: int, runs: list[tuple[int, int]]
) -> None:
    assert list(_runs(ids, gap)) == runs


def test_chosen_tasks_are_listed_by_runs_and_only_they_are_yielded() -> None:
    api = Api()
    with client(api) as ls:
        listed = [task.id for task in ls.list_tasks(1, [2, 3, 9, 41, 77])]
    assert listed == [2, 3, 9, 41]
    bounds = [[(i["operator"], i["value"]) for i in r["query"]["filters"]["items"]]
              for r in api.requests]  # fmt: skip
    assert bounds == [[("greater", 1), ("less", 4)], [("greater", 8), ("less", 10)],
                      [("greater", 40), ("less", 42)], [("greater", 76), ("less", 78)]]  # fmt: skip


def test_a_run_longer_than_a_page_is_paged() -> None:
    api = Api()
    with client(api) as ls:
        assert [task.id for task in ls.list_tasks(1, range(1, 12))] == list(range(1, 12))
    assert [r["query"]["filters"]["items"][0]["value"] for r in api.requests] == [0, 4, 8]


def test_task_stamps_list_a_few_fields_of_every_task() -> None:
    api = Api()
    with client(api) as ls:
        stamps = list(ls.task_stamps(1))
    assert [s.id for s in stamps] == sorted(TASKS)
    assert stamps[1] == TaskStamp(2, "2026-01-03T00:00:00Z", 2, 0)
    assert {r["fields"] for r in api.requests} == {"task_only"}
    assert all("updated_at" in r["include"] for r in api.requests)
