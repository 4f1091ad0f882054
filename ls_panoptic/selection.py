"""Which annotation of a task becomes the ground truth (DESIGN 3.4).

Selection policies:

- ``latest``: the most recently updated annotation (ties: later ``created_at``, then higher id).
- ``ground-truth``: the newest annotation marked ground truth, else as ``latest``.
- ``annotator:<user id>``: the newest annotation by that user, else none.

Cancelled (skipped) annotations are never used. With ``use_predictions``, the newest prediction is
used only when the task has no usable annotation at all (whatever the policy). Times are compared
as instants (:func:`ls_panoptic.tasks.parse_timestamp`); a missing timestamp sorts oldest.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ls_panoptic.model import Annotation, Task
from ls_panoptic.tasks import parse_timestamp

__all__ = ["parse_policy", "select_annotation"]

_POLICY_FORMS = "latest, ground-truth, annotator:<user id> (e.g. annotator:3)"
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def parse_policy(policy: str) -> tuple[str, int | None]:
    """``("latest", None)``, ``("ground-truth", None)`` or ``("annotator", user_id)``.

    Raises:
        ValueError: naming the allowed forms.
    """
    text = policy.strip() if isinstance(policy, str) else ""
    if text in ("latest", "ground-truth"):
        return text, None
    prefix, _, user = text.partition(":")
    if prefix == "annotator" and user.strip().isdigit() and user.strip().isascii():
        return "annotator", int(user.strip())
    raise ValueError(f"annotation policy {policy!r} is not one of: {_POLICY_FORMS}")


def select_annotation(
    task: Task, policy: str = "latest", use_predictions: bool = False
) -> Annotation | None:
    """The annotation to convert for ``task`` under ``policy``, or ``None`` (leave the task out).

    Raises:
        ValueError: a bad policy, or an unparseable timestamp.
    """
    kind, user = parse_policy(policy)
    usable = [a for a in task.annotations if not a.was_cancelled]
    if kind == "ground-truth":
        pool = [a for a in usable if a.ground_truth] or usable
    elif kind == "annotator":
        pool = [a for a in usable if a.completed_by == user]
    else:
        pool = usable
    if pool:
        return max(pool, key=_recency)
    if use_predictions and not usable and task.predictions:
        return max(task.predictions, key=_recency)
    return None


def _recency(annotation: Annotation) -> tuple[datetime, datetime, int]:
    created = parse_timestamp(annotation.created_at) if annotation.created_at else _OLDEST
    updated = parse_timestamp(annotation.updated_at) if annotation.updated_at else created
    return updated, created, annotation.id if annotation.id is not None else -1
