"""The one place the service words what an operator can do about a failed conversion.

The core's errors carry a :class:`~ls_panoptic.errors.Remedy` rather than advice; the service
says it as the ``LS_PANOPTIC_*`` setting to change (:mod:`worker.settings`), the CLI as its
options (``cli/report.py``). The store and the sidecar keep the front-end-neutral message, the
same as ``convert`` writes (live = batch), and the remedy's code; the worker logs the
failure with this advice and ``/entries`` shows it as each failed task's ``hint``.
"""

from __future__ import annotations

from ls_panoptic.errors import PanopticError, Remedy

__all__ = ["SERVICE_REMEDIES", "service_remedy", "stored_remedy"]

#: what to do about a failure, in the service's words
SERVICE_REMEDIES: dict[Remedy, str] = {
    Remedy.IMAGE: "the image gives the size once the service can read it "
    "(LS_PANOPTIC_IMAGES_DIR, or the image in Label Studio)",
    Remedy.TIME_LIMIT: "raise LS_PANOPTIC_TIME_LIMIT or split the image",
    Remedy.MAX_REGIONS: "raise LS_PANOPTIC_MAX_REGIONS if they are real",
    Remedy.MAX_PIXELS: "raise LS_PANOPTIC_MAX_IMAGE_PIXELS if it is real",
    Remedy.UNKNOWN_LABELS: "add it to the project's label config, "
    "or set LS_PANOPTIC_UNKNOWN_LABELS=skip",
    Remedy.KEY: "set LS_PANOPTIC_KEY=path or LS_PANOPTIC_KEY=task to tell them apart",
    Remedy.PREDICTIONS: "set LS_PANOPTIC_USE_PREDICTIONS=true",
}


def service_remedy(exc: BaseException) -> str | None:
    """What an operator can do about ``exc``, ``None`` when only the task itself can change."""
    remedy = exc.remedy if isinstance(exc, PanopticError) else None
    return None if remedy is None else SERVICE_REMEDIES[remedy]


def stored_remedy(value: str | None) -> str | None:
    """What an operator can do about a failure whose state keeps the remedy ``value``
    (``EntryState.remedy``); ``None`` for none, or a value this version does not know."""
    try:
        return None if value is None else SERVICE_REMEDIES[Remedy(value)]
    except ValueError:
        return None
