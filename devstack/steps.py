"""How a step of ``ls-panoptic up`` fails: one :class:`StepFailed` line naming the step and the
cause, with the log of the process to blame."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis
from label_studio_sdk.core.api_error import ApiError

__all__ = ["StepFailed", "failing_as"]


class StepFailed(Exception):
    """A step of ``up`` failed; ``log`` is the log of the process to blame, if any."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@contextmanager
def failing_as(what: str, log: Path | None = None) -> Iterator[None]:
    """Turn Label Studio's, HTTP's and file errors into one :class:`StepFailed` line."""
    try:
        yield
    except ApiError as exc:
        body = exc.body
        detail = body.get("detail", body) if isinstance(body, dict) else body
        hint = " (check --api-key / LABEL_STUDIO_API_KEY)" if exc.status_code in (401, 403) else ""
        message = f"{what}: Label Studio answered {exc.status_code}: {detail}{hint}"
        raise StepFailed(message, log) from exc
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        raise StepFailed(f"{what}: {exc.request.url} answered {status}", log) from exc
    except (
        httpx.HTTPError,
        redis.RedisError,
        OSError,
        RuntimeError,
        LookupError,
        ValueError,
    ) as exc:
        raise StepFailed(f"{what}: {exc}", log) from exc
