"""The handful of Label Studio 1.23.2 REST calls the end-to-end tests make, over plain httpx.

Endpoints (all with ``Authorization: Token <token>``):

- ``POST /api/projects`` ``{"title", "label_config"}`` -> project (``id``)
- ``POST /api/projects/<id>/import`` multipart: one field name per file = one task
- ``GET  /api/tasks?project=<id>`` -> ``{"tasks": [...]}``; ``data.image`` is
  ``/data/upload/<project id>/<8 hex>-<file name>``
- ``POST /api/tasks/<id>/annotations/`` ``{"result", "was_cancelled", ...}`` -> annotation
- ``PATCH /api/annotations/<id>/`` ``{"result"}``: bumps ``updated_at``; ``{"ground_truth": true}``
- ``POST /api/users/`` ``{"email", "username", "password"}`` -> a user of no organization; an
  annotation posted with ``"completed_by": <its id>`` keeps that id (exports say so)
- ``POST /api/predictions/`` ``{"task", "result", "model_version"}`` -> prediction
- ``GET  /api/projects/<id>/export?exportType=JSON|JSON_MIN&download_all_tasks=true`` -> the file
- ``POST /api/projects/<id>/import`` JSON ``[{"data": {...}, "annotations": [...]}]``: tasks (with
  annotations, firing TASKS_CREATED only)
- ``DELETE /api/tasks/<id>/``; ``GET /api/webhooks/?project=<id>`` -> list of webhooks
- ``POST /api/token/`` -> ``{"token"}``: a personal access token (JWT refresh token) of the user
- ``POST /api/projects/<id>/exports/`` ``{"serialization_options": {...}}`` -> an export snapshot
  (made inline: ``status`` is already ``completed``); ``GET .../exports/<export id>/download
  ?exportType=JSON`` -> its file. Unlike the plain export (what the UI's Export dialog calls),
  it lists predictions as objects when asked: ``{"predictions": {"only_id": false}}``.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["LabelStudioClient"]

#: seconds for one request; an export of a handful of tasks takes well under one
REQUEST_TIMEOUT = 60.0


class LabelStudioClient:
    """A thin wrapper around ``httpx.Client`` that raises on any non-2xx answer."""

    def __init__(self, url: str, token: str) -> None:
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Token {token}"}, timeout=REQUEST_TIMEOUT
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()

    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        body = {"title": title, "label_config": label_config}
        project: dict[str, Any] = self._json("POST", "/api/projects", json=body)
        return project

    def get_project(self, project_id: int) -> dict[str, Any]:
        project: dict[str, Any] = self._json("GET", f"/api/projects/{project_id}")
        return project

    def import_files(self, project_id: int, files: dict[str, bytes]) -> dict[str, Any]:
        """Upload ``{file name: bytes}``, each under its own field name (one task per file)."""
        multipart = {
            f"file{i}": (name, data, "application/octet-stream")
            for i, (name, data) in enumerate(files.items())
        }
        report: dict[str, Any] = self._json(
            "POST", f"/api/projects/{project_id}/import", files=multipart
        )
        return report

    def list_tasks(self, project_id: int) -> list[dict[str, Any]]:
        page = self._json("GET", "/api/tasks", params={"project": project_id, "page_size": 1000})
        tasks: list[dict[str, Any]] = page["tasks"]
        return tasks

    def create_annotation(
        self,
        task_id: int,
        result: list[dict[str, Any]],
        *,
        was_cancelled: bool = False,
        completed_by: int | None = None,
    ) -> dict[str, Any]:
        """``completed_by``: another user's id (kept as given; the token's user by default)."""
        body: dict[str, Any] = {"result": result, "was_cancelled": was_cancelled,
                                "ground_truth": False}  # fmt: skip
        if completed_by is not None:
            body["completed_by"] = completed_by
        annotation: dict[str, Any] = self._json(
            "POST", f"/api/tasks/{task_id}/annotations/", json=body
        )
        return annotation

    def current_user_id(self) -> int:
        """The id of the token's user (``GET /api/current-user/whoami``)."""
        return int(self._json("GET", "/api/current-user/whoami")["id"])

    def create_user(self, email: str) -> int:
        """A new user's id. Made by ``POST /api/users/``, it belongs to no organization."""
        body = {"email": email, "username": email.split("@")[0], "password": "e2e-password-1"}
        return int(self._json("POST", "/api/users/", json=body)["id"])

    def mark_ground_truth(self, annotation_id: int) -> dict[str, Any]:
        annotation: dict[str, Any] = self._json(
            "PATCH", f"/api/annotations/{annotation_id}/", json={"ground_truth": True}
        )
        return annotation

    def create_prediction(
        self, task_id: int, result: list[dict[str, Any]], model_version: str
    ) -> dict[str, Any]:
        body = {"task": task_id, "result": result, "model_version": model_version}
        prediction: dict[str, Any] = self._json("POST", "/api/predictions/", json=body)
        return prediction

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        annotation: dict[str, Any] = self._json(
            "PATCH", f"/api/annotations/{annotation_id}/", json={"result": result}
        )
        return annotation

    def export(self, project_id: int, export_type: str) -> bytes:
        """The project's export file as Label Studio serves it (every task, labelled or not)."""
        response = self._http.get(
            f"/api/projects/{project_id}/export",
            params={"exportType": export_type, "download_all_tasks": "true"},
        )
        response.raise_for_status()
        return response.content

    def export_snapshot(
        self, project_id: int, export_type: str, serialization_options: dict[str, Any]
    ) -> bytes:
        """The file of a new export snapshot of every task (see the module docstring)."""
        body = {"serialization_options": serialization_options}
        made = self._json("POST", f"/api/projects/{project_id}/exports/", json=body)
        if made.get("status") != "completed":
            raise RuntimeError(f"export snapshot {made.get('id')} is {made.get('status')!r}")
        response = self._http.get(
            f"/api/projects/{project_id}/exports/{made['id']}/download",
            params={"exportType": export_type},
        )
        response.raise_for_status()
        return response.content

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """Import task records (``{"data": ..., "annotations": [...]}``) as JSON."""
        report: dict[str, Any] = self._json(
            "POST", f"/api/projects/{project_id}/import", json=tasks
        )
        return report

    def delete_task(self, task_id: int) -> None:
        response = self._http.delete(f"/api/tasks/{task_id}/")
        response.raise_for_status()

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        hooks: list[dict[str, Any]] = self._json(
            "GET", "/api/webhooks/", params={"project": project_id}
        )
        return hooks

    def create_personal_access_token(self) -> str:
        """A new personal access token (a JWT refresh token) for the token's user."""
        token: str = self._json("POST", "/api/token/")["token"]
        return token

    def download(self, path: str) -> bytes:
        """A file Label Studio serves, e.g. an upload's ``/data/upload/...`` URL."""
        response = self._http.get(path)
        response.raise_for_status()
        return response.content
