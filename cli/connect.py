"""``ls-panoptic connect``: make a Label Studio project send its events to the backend.

Registers (or updates: running it again is harmless) one project webhook that POSTs the events the
service acts on to ``<BACKEND_URL>/webhook`` with the full payload and ``Authorization: Bearer
<WEBHOOK_TOKEN>``. Label Studio must be able to reach BACKEND_URL (from its own host or
container); it calls it inline while saving an annotation, waits at most 1 s, and never retries.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from worker.labelstudio import WEBHOOK_ACTIONS, LabelStudio, LabelStudioError
from worker.settings import Settings, SettingsError

__all__ = ["connect", "webhook_url"]


def webhook_url(backend_url: str) -> str:
    """``<backend_url>/webhook`` (a URL already ending in ``/webhook`` is kept).

    Raises:
        click.BadParameter: not an http(s) URL with a host.
    """
    parts = urlsplit(backend_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise click.BadParameter(
            f"{backend_url!r} is not the backend's base URL; give it as Label Studio reaches "
            "it, e.g. http://ls-panoptic:8000",
            param_hint="--url",
        )
    base = backend_url.strip().rstrip("/")
    return base if base.endswith("/webhook") else f"{base}/webhook"


def _label_studio(settings: Settings, url: str | None, api_key: str | None) -> LabelStudio:
    url = url or settings.label_studio_url
    api_key = api_key or settings.label_studio_api_key
    if not url or not api_key:
        missing = "LABEL_STUDIO_URL (--label-studio-url)" if not url else ""
        if not api_key:
            missing += (" and " if missing else "") + "LABEL_STUDIO_API_KEY (--api-key)"
        raise click.UsageError(f"{missing} must be set to reach Label Studio")
    try:
        return LabelStudio(url, api_key, images_dir=None)
    except LabelStudioError as exc:
        raise click.UsageError(str(exc)) from exc


@click.command("connect")
@click.option("--project", "project_id", type=int, required=True, help="Label Studio project id.")
@click.option(
    "--url",
    "backend_url",
    required=True,
    help="The backend's base URL as Label Studio reaches it, e.g. http://ls-panoptic:8000.",
)
@click.option("--label-studio-url", default=None, help="Default: LABEL_STUDIO_URL.")
@click.option(
    "--api-key",
    default=None,
    help="Default: LABEL_STUDIO_API_KEY (preferred: a key on the command line shows in ps).",
)
def connect(
    project_id: int, backend_url: str, label_studio_url: str | None, api_key: str | None
) -> None:
    """Register the project webhook that keeps ls-panoptic in sync (idempotent)."""
    hook_url = webhook_url(backend_url)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    if not settings.webhook_token:
        raise click.UsageError(
            "WEBHOOK_TOKEN must be set: Label Studio sends it with every webhook call, and the "
            "backend must run with the same value"
        )
    with _label_studio(settings, label_studio_url, api_key) as ls:
        try:
            project = ls.get_project(project_id)
            existing = ls.registered_webhook(project_id, hook_url)
            hook_id = ls.register_webhook(project_id, hook_url, settings.webhook_token)
        except LabelStudioError as exc:
            raise click.ClickException(str(exc)) from exc
    done = "updated" if existing is not None else "created"
    click.echo(
        f"{done} webhook {hook_id} of project {project_id} ({project.title!r}) in Label Studio "
        f"at {ls.url}:\n"
        f"  POST {hook_url} with the payload and Authorization: Bearer <WEBHOOK_TOKEN>\n"
        f"  on {', '.join(WEBHOOK_ACTIONS)}"
    )
