"""End-to-end fixtures: a client of the session's real Label Studio 1.23.2 (the
``label_studio`` fixture of ``tests/conftest.py``, shared with tests/deploy), and a real export.

Redis: the ``redis_url`` / ``redis_client`` fixtures of ``tests/conftest.py`` (the test
database, flushed around each test); ``test_up_demo.py`` has its own ``redis_url``, which need
not answer (``up`` then starts a redis-server itself).

Facts about Label Studio 1.23.2, checked on the installed release:

- CLI: ``label-studio start [--no-browser] [--port P] [--internal-host H] [--host URL]
  [--data-dir D] [--username U --password P --user-token T] [--enable-legacy-api-token]``.
  ``--internal-host`` is the BIND address (default 0.0.0.0); ``--host`` is only the public URL
  used in generated links. A taken port is not an error: it silently moves to the next one.
- Every setting is read as ``LABEL_STUDIO_<NAME>``, ``HEARTEX_<NAME>`` or bare ``<NAME>``, so a
  stray ``PORT``, ``HOST`` or ``USERNAME`` in the environment leaks in: the server gets a clean
  environment. ``--data-dir`` sets ``LABEL_STUDIO_BASE_DATA_DIR`` (SQLite, media, secret key).
- First start on an empty data dir (all migrations) took 40-45 s on this 2-core machine.
- ``GET /health`` -> ``{"status": "UP"}``. ``GET /api/version/`` -> JSON ``{"release":
  "1.23.2", ...}``; ``/version`` redirects to ``/version/``, an HTML ``<pre>`` page. Its
  "backend" commit is that of the git checkout around the venv (this repo's, by default).
- Export: ``GET /api/projects/<id>/export?exportType=JSON|JSON_MIN`` answers with the file.
  Without ``download_all_tasks=true`` tasks with no annotation are left out; tasks with only a
  skipped annotation are kept. JSON keeps skipped annotations (``was_cancelled: true``).
  JSON_MIN has one record PER NON-SKIPPED ANNOTATION (task ``id`` repeated, newest
  ``created_at`` first) with ``annotation_id``/``updated_at``; values are grouped by control
  name (so paint order across controls is lost) and carry neither region ``id`` nor ``type``:
  a keypoint value ``{x, y, width, keypointlabels}`` differs from a rectangle only by its
  labels key, and a single choice becomes a bare string (``"quality": "good"``). A task
  without annotations gives a record with ``annotation_id: null`` and no regions.
- BitmaskLabels exists; its region value key is ``imageDataURL`` (a ``data:image/png;base64``
  PNG the size of the image as the browser shows it, black pixels, coverage in alpha).
- ``POST /api/tasks/<id>/annotations/`` accepts results with labels that are not in the
  config (no validation), and ``was_cancelled: true`` with a non-empty result.
- ``POST /api/projects/<id>/import``: one multipart field per file = one task; the task's
  ``data.image`` is ``/data/upload/<project>/<8 hex>-<name>``; the bytes are served back
  unchanged (EXIF kept) from that URL with the token.
- Background jobs: the open-source build hard-codes ``REDIS_ENABLED = False``, so exports and
  webhooks run inline in the request, although it pings Redis at localhost:6379 on import.
  Webhooks are one POST each (``WEBHOOK_TIMEOUT``, default 1.0 s), errors logged and dropped,
  never retried; organization-wide webhooks need ``ALLOW_ORGANIZATION_WEBHOOKS=true``.
- The dev server logs every request line twice (two handlers), to stdout.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.labelstudio import LabelStudioServer
from tests.summary import summarise

from .build_project import LabelStudioExport, build_export
from .lsclient import LabelStudioClient


@pytest.fixture(scope="session")
def ls_client(label_studio: LabelStudioServer) -> Iterator[LabelStudioClient]:
    with LabelStudioClient(label_studio.url, label_studio.token) as client:
        yield client


@pytest.fixture(scope="session")
def ls_export(
    request: pytest.FixtureRequest,
    ls_client: LabelStudioClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> LabelStudioExport:
    """A real JSON / JSON_MIN export of a project holding every region kind, with its images."""
    export = build_export(ls_client, tmp_path_factory.mktemp("ls-export"))
    summarise(
        request.config,
        f"Label Studio project built and exported in {export.build_seconds:.1f} s: {export.root}",
    )
    return export
