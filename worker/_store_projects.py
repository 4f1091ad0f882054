"""The store's project records and its annotation -> task index."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis.client import Pipeline

from ._store_base import StoreBase, utc_now
from ._store_codec import StoreError, dumps, peek_state, text

__all__ = ["ProjectIndex", "ProjectRecord", "config_hash"]

_SCAN = 1000


def config_hash(label_config: str) -> str:
    """SHA-256 (hex) of a label config: what ``ProjectRecord`` and ``EntryState`` record."""
    return hashlib.sha256(label_config.encode()).hexdigest()


@dataclass(frozen=True)
class ProjectRecord:
    """The label config a project's entries are converted with.

    Attributes:
        config_hash: SHA-256 (hex) of ``label_config``.
        id2label: ``{class id: label}``, background included.
        updated_at: when it was last recorded (UTC, ISO 8601).
    """

    project: int
    label_config: str
    config_hash: str
    id2label: dict[int, str]
    updated_at: str


class ProjectIndex(StoreBase):
    """Project records and the annotation index (a part of :class:`worker.store.Store`)."""

    def project_ids(self) -> set[int]:
        """Projects known to the store."""
        return {int(p) for p in self._redis.smembers(self._keys.projects())}

    def set_project(self, project: int, label_config: str, id2label: dict[int, str]) -> bool:
        """Record the project's label config; ``True`` if it is new or changed."""
        record = {
            "label_config": label_config,
            "config_hash": config_hash(label_config),
            "id2label": dumps({str(k): v for k, v in sorted(id2label.items())}),
            "updated_at": utc_now(),
        }
        key = self._keys.project(project)

        def update(pipe: Pipeline) -> bool:
            old = [text(v) for v in pipe.hmget(key, ["config_hash", "id2label"])]
            pipe.multi()
            pipe.hset(key, mapping=record)  # type: ignore[arg-type]
            pipe.sadd(self._keys.projects(), project)
            return old != [record["config_hash"], record["id2label"]]

        return self._transact([key], update)

    def get_project(self, project: int) -> ProjectRecord | None:
        """The project's recorded label config, or ``None``.

        Raises:
            StoreError: the record is unreadable.
        """
        where = self._keys.project(project)
        raw = {text(k): text(v) for k, v in self._redis.hgetall(where).items()}
        if not raw:
            return None
        try:
            id2label = {int(k): str(v) for k, v in json.loads(raw["id2label"] or "").items()}
            return ProjectRecord(
                project, str(raw["label_config"]), str(raw["config_hash"]), id2label,
                str(raw["updated_at"]),
            )  # fmt: skip
        except (KeyError, ValueError, AttributeError) as exc:
            raise StoreError(f"{where}: project record is unreadable ({exc!r})") from exc

    def drop_project(self, project: int) -> None:
        """Forget the project; its entry blobs (current, and the stale ones failed tasks keep)
        expire after the grace period."""
        manifest, states = self._keys.manifest(project), self._keys.states(project)

        def drop(pipe: Pipeline) -> None:
            versions = [(t, text(v)) for t, v in pipe.hgetall(manifest).items()]
            versions += [(t, peek_state(raw)[1]) for t, raw in pipe.hgetall(states).items()]
            pipe.multi()
            for task, version in versions:
                if version is not None:
                    pipe.expire(self._keys.blob(project, int(task), version), self.grace_seconds)
            pipe.delete(
                manifest,
                states,
                self._keys.failures(project),
                self._keys.deleted(project),
                self._keys.status_counts(project),
                self._keys.agreement(project),
                self._keys.agreement_totals(project),
                self._keys.project(project),
            )
            pipe.srem(self._keys.projects(), project)

        self._transact([manifest, states], drop)
        self._forget_annotations_where(lambda where: where.startswith(f"{project}:"))

    def index_annotations(
        self,
        project: int,
        task_id: int,
        annotation_ids: Iterable[int],
        pipe: Pipeline | None = None,
    ) -> None:
        """Remember which task these annotations belong to (for ``ANNOTATIONS_DELETED``); into
        ``pipe`` when given (the caller executes it), else at once."""
        where = f"{int(project)}:{int(task_id)}"
        mapping = {str(int(a)): where for a in annotation_ids}
        if mapping:
            target = self._redis if pipe is None else pipe
            target.hset(self._keys.annotations(), mapping=mapping)  # type: ignore[arg-type]

    def task_for_annotation(self, annotation_id: int) -> tuple[int, int] | None:
        """``(project, task id)`` of an indexed annotation, or ``None``."""
        where = text(self._redis.hget(self._keys.annotations(), str(int(annotation_id))))
        project, _, task = (where or "").partition(":")
        return (int(project), int(task)) if project.isdigit() and task.isdigit() else None

    def forget_annotations(self, annotation_ids: Iterable[int]) -> None:
        """Drop these annotations from the index."""
        fields = [str(int(a)) for a in annotation_ids]
        if fields:
            self._redis.hdel(self._keys.annotations(), *fields)

    def _forget_annotations_where(self, match: Callable[[str], bool]) -> None:
        """Drop indexed annotations whose ``"project:task"`` matches (one scan of the index)."""
        index = self._keys.annotations()
        scan = self._redis.hscan_iter(index, count=_SCAN)
        doomed = [field for field, where in scan if match(str(text(where)))]
        for start in range(0, len(doomed), _SCAN):
            self._redis.hdel(index, *doomed[start : start + _SCAN])
