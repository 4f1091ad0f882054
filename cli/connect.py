"""``ls-panoptic connect``: make a Label Studio project send its events to the backend.

Registers (or updates: running it again is harmless) one project webhook that POSTs the events the
service acts on to ``<BACKEND_URL>/webhook`` with the full payload and ``Authorization: Bearer
<WEBHOOK_TOKEN>``. Label Studio must be able to reach BACKEND_URL (from its own host or
container); it calls it inline while saving an annotation, waits at most 1 s, and never retries.

Then it checks delivery, since a webhook Label Studio cannot deliver fails silently (it logs the
error and the save goes on): it makes Label Studio post one ``PROJECT_UPDATED`` (an update of
the project that changes nothing; the backend ignores it when the label config is unchanged)
and reads the backend's event count in ``/metrics`` before and after. No delivery exits 1 with
the likely causes, the first being Label Studio's SSRF protection, which refuses webhooks to
private and loopback addresses unless it runs with ``SSRF_PROTECTION_ENABLED=false``. When
``/metrics`` cannot be read from this machine (Label Studio may reach the backend by a name only
its network knows), the check is skipped with a note.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

import click
import httpx

from worker.labelstudio import WEBHOOK_ACTIONS, LabelStudio, LabelStudioError
from worker.settings import Settings, SettingsError

__all__ = ["connect", "webhook_url"]

#: seconds to wait for the test event (Label Studio posts it before answering the update)
DELIVERY_TIMEOUT = 5.0
#: the backend's counter of the test event's action (``backend.metrics``)
_COUNTER = 'ls_panoptic_webhook_events_total{action="PROJECT_UPDATED",'


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
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Make Label Studio post one test event (an update of the project that changes "
    "nothing) and check that the backend counted it; exit 1 with the likely causes if not.",
)
def connect(
    project_id: int,
    backend_url: str,
    label_studio_url: str | None,
    api_key: str | None,
    check: bool,
) -> None:
    """Register the project webhook that keeps ls-panoptic in sync (idempotent), then check
    that Label Studio's events reach the backend."""
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
            f"{done} webhook {hook_id} of project {project_id} ({project.title!r}) in Label "
            f"Studio at {ls.url}:\n"
            f"  POST {hook_url} with the payload and Authorization: Bearer <WEBHOOK_TOKEN>\n"
            f"  on {', '.join(WEBHOOK_ACTIONS)}"
        )
        if check:
            _check_delivery(ls, project_id, hook_url)


def _check_delivery(ls: LabelStudio, project_id: int, hook_url: str) -> None:
    """Make Label Studio post a test event and see the backend count it (see module doc)."""
    metrics = hook_url.removesuffix("/webhook") + "/metrics"
    before = _received(metrics)
    if before is None:
        click.echo(
            f"  delivery not checked: {metrics} cannot be read from here as ls-panoptic's "
            "(Label Studio may still reach it; --no-check skips this)"
        )
        return
    try:
        ls.touch_project(project_id)
    except LabelStudioError as exc:
        raise click.ClickException(f"checking delivery: {exc}") from exc
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while (after := _received(metrics)) is not None and after <= before:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if after is not None and after > before:
        click.echo("  delivery checked: Label Studio's test event (PROJECT_UPDATED) arrived")
        return
    raise click.ClickException(
        f"Label Studio did not deliver its test event to {hook_url} within "
        f"{DELIVERY_TIMEOUT:g} s; the webhook is registered, but the store will only follow "
        f"your edits through the periodic resync. Likely causes: {_private_hint(hook_url)}"
        "Label Studio cannot reach that URL from its host or container; or the backend runs "
        "with another WEBHOOK_TOKEN (its log shows 401s). Label Studio's own log names the "
        "error of each failed webhook call."
    )


def _received(metrics_url: str) -> float | None:
    """``PROJECT_UPDATED`` events the backend has counted; ``None`` when ``metrics_url`` cannot
    be read from here, or is not ls-panoptic's."""
    try:
        answer = httpx.get(metrics_url, timeout=3)
        answer.raise_for_status()
    except httpx.HTTPError:
        return None
    if "ls_panoptic_webhook_events_total" not in answer.text:
        return None  # something else answers there (or an older backend)
    lines = [line for line in answer.text.splitlines() if line.startswith(_COUNTER)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def _private_hint(hook_url: str) -> str:
    """The SSRF hint, when the backend's host resolves (here) to a private or local address."""
    host = urlsplit(hook_url).hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return ""
    private = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_global)
    if not private:
        return ""
    return (
        f"{host} is a private or loopback address here ({', '.join(private)}), and Label "
        "Studio refuses webhooks to those unless it runs with SSRF_PROTECTION_ENABLED=false "
        "(or USE_DEFAULT_BANNED_SUBNETS=false) in its environment; or "
    )
