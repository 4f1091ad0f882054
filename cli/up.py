"""``ls-panoptic up``: the whole live stack on this machine, without Docker (see
:mod:`devstack.stack`; ``--demo``: :mod:`devstack.demo`)."""

from __future__ import annotations

from pathlib import Path

import click

from devstack.demo import DemoOptions
from devstack.labelstudio_venv import InstallError, install, resolve_venv
from devstack.stack import DEFAULT_REDIS_URL, Options, execute

__all__ = ["up"]


def _install_label_studio(venv: Path) -> None:
    try:
        install(venv, say=lambda line: click.echo(f"Label Studio: {line}"))
    except InstallError as exc:
        raise click.ClickException(f"installing Label Studio: {exc}") from exc


@click.command("up")
@click.option(
    "--demo",
    is_flag=True,
    help="Also start Label Studio, annotate a synthetic project through its API, and check "
    "the live snapshot against a batch conversion of its export (what `make demo` runs).",
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default=DEFAULT_REDIS_URL,
    show_default=True,
    help="The Redis to use (default: REDIS_URL); when none answers there, a redis-server is "
    "started on a free port for this run.",
)
@click.option(
    "--label-studio-url",
    default=None,
    help="A running Label Studio to use instead of starting one from its virtualenv "
    "(it must reach 127.0.0.1). Without --demo the default is LABEL_STUDIO_URL.",
)
@click.option(
    "--api-key",
    envvar="LABEL_STUDIO_API_KEY",
    default=None,
    help="Its API key, a legacy token or personal access token (default: LABEL_STUDIO_API_KEY).",
)
@click.option(
    "--label-studio-venv",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Label Studio's own virtualenv (default: LS_VENV; else .venv-labelstudio in a "
    "checkout, ~/.local/share/ls-panoptic/venv-labelstudio otherwise).",
)
@click.option(
    "--install-label-studio",
    is_flag=True,
    help="Install label-studio==1.23.2 into that virtualenv unless it is there; then go on "
    "with --demo, or stop.",
)
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Logs, Label Studio's data, the snapshot, the export, previews.",
)
@click.option("--images", "n_images", type=click.IntRange(2, 100), default=6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic project seed.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Backend port (0: free).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds the store may take to catch up with Label Studio.",
)
@click.option("--keep-running", is_flag=True, help="With --demo: keep it all up until Ctrl-C.")
def up(
    demo: bool,
    redis_url: str,
    label_studio_url: str | None,
    api_key: str | None,
    label_studio_venv: Path | None,
    install_label_studio: bool,
    output_dir: Path,
    n_images: int,
    seed: int,
    port: int,
    timeout: float,
    keep_running: bool,
) -> None:
    """Bring the live stack up on this machine without Docker: Redis, the backend and a
    worker (and, with --demo, Label Studio plus a project annotated through its API); stop
    everything it started on exit, or on Ctrl-C with --keep-running (always, without --demo).

    \b
    make demo   runs   ls-panoptic up --demo   (about 30 s; the first start of Label
                Studio adds 30-60 s of database migrations)
    """
    venv = resolve_venv(label_studio_venv)
    if install_label_studio:
        _install_label_studio(venv)
        if not demo:
            return
    demo_options = DemoOptions(n_images, seed, timeout, venv) if demo else None
    options = Options(
        output_dir, redis_url, label_studio_url, api_key, port, keep_running, demo_options
    )
    code = execute(options)
    if code:
        raise SystemExit(code)
