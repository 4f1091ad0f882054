"""Where a task's image may be read from, and the download itself (used by worker.labelstudio).

Policy: the Label Studio API key is only ever sent to LABEL_STUDIO_URL's origin (scheme, host,
port). Relative URLs (``/data/upload/...``) and same-origin URLs are downloaded from there; cloud
URLs (``s3://``, ``gs://``, ``azure-blob://``) through Label Studio's ``/tasks/<id>/resolve/``
proxy. Redirects are followed here, by hand: a hop to another origin (a presigned bucket URL) goes
without the key. Any other URL is refused (:class:`ImageRefused`). A local ``images_dir`` is looked
up by the URL's relative path (:func:`ls_panoptic.naming.image_path`); a path that resolves outside
it (``?d=../../etc/passwd``, or a symlink leading out) is refused.

Errors: :class:`ImageRefused` (the reason, for :class:`worker.labelstudio.ImageNotAllowed`),
``httpx.HTTPStatusError`` and other ``httpx`` errors; worker.labelstudio translates them all.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ls_panoptic.naming import image_path

__all__ = [
    "MAX_REDIRECTS",
    "ImageRefused",
    "Origin",
    "TooLarge",
    "download",
    "local_image",
    "origin",
    "shown",
    "source_url",
]

MAX_REDIRECTS = 5
_CLOUD_SCHEMES = frozenset({"s3", "gs", "azure-blob"})

Origin = tuple[str, str, "int | None"]


class ImageRefused(Exception):
    """This image will not be fetched; the message says why (without the key)."""


class TooLarge(Exception):
    """The download exceeded its byte limit."""


def origin(url: httpx.URL) -> Origin:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


def shown(url: str) -> str:
    """A URL for messages: no user info, no query (signatures) except a local-files path."""
    parts = urlsplit(url)
    query = parts.query if "local-files" in parts.path else ""
    text = parts._replace(netloc=parts.netloc.rpartition("@")[2], query=query, fragment="").geturl()
    return repr(text if len(text) <= 200 else text[:200] + "...")


def local_image(images_dir: Path, url: str) -> Path | None:
    """The file for ``url`` under ``images_dir`` (resolved), or ``None`` when there is none.

    Raises:
        ImageRefused: the path leads outside ``images_dir``.
        ValueError: the URL has no file name.
    """
    relative = image_path(url)
    root = images_dir.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise ImageRefused(
            f"image {shown(url)}: its path {relative!r} leads outside LS_PANOPTIC_IMAGES_DIR "
            f"({root}); refused"
        )
    return candidate if candidate.is_file() else None


def source_url(base_url: str, url: str, task_id: int | None) -> httpx.URL:
    """Where to download ``url`` from: always a URL on ``base_url``'s origin.

    Raises:
        ImageRefused: ``url`` is elsewhere (or a cloud URL without its task id).
    """
    parts = urlsplit(url)
    if parts.scheme in _CLOUD_SCHEMES and task_id is not None:
        uri = base64.urlsafe_b64encode(url.encode()).decode()
        return httpx.URL(f"{base_url}/tasks/{task_id}/resolve/", params={"fileuri": uri})
    target = None
    if not parts.scheme and not parts.netloc and url.startswith("/"):
        target = httpx.URL(base_url + url)
    elif parts.scheme in ("http", "https"):
        target = httpx.URL(url)
    if target is None or origin(target) != origin(httpx.URL(base_url)):
        raise ImageRefused(
            f"image {shown(url)} is not served by Label Studio at {base_url}, and the API key "
            "is never sent elsewhere; put the images in LS_PANOPTIC_IMAGES_DIR (by the path in "
            "the URL) or let Label Studio serve them (upload, local or cloud storage)"
        )
    return target


def download(
    client: httpx.Client,
    target: httpx.URL,
    *,
    key_origin: Origin,
    authorization: Callable[[], str],
    scratch_dir: Path,
    max_bytes: int,
) -> Path:
    """GET ``target`` into a new file in ``scratch_dir``, following redirects.

    ``authorization()`` (the header value) is sent to ``key_origin`` only, at every hop.

    Raises:
        httpx.HTTPStatusError: a 4xx/5xx answer (its body read).
        httpx.TooManyRedirects, httpx.TransportError, httpx.TimeoutException, TooLarge.
    """
    for _ in range(MAX_REDIRECTS + 1):
        headers = {"Authorization": authorization()} if origin(target) == key_origin else {}
        with client.stream("GET", target, headers=headers) as response:
            if response.is_redirect and "location" in response.headers:
                target = target.join(response.headers["location"])
                continue
            if response.is_error:
                response.read()
                response.raise_for_status()
            return _save(response, scratch_dir, max_bytes)
    raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


def _save(response: httpx.Response, scratch_dir: Path, max_bytes: int) -> Path:
    scratch_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(response.url.path).suffix[:8]
    with tempfile.NamedTemporaryFile(dir=scratch_dir, suffix=suffix, delete=False) as file:
        path = Path(file.name)
        try:
            for chunk in response.iter_bytes():
                file.write(chunk)
                if file.tell() > max_bytes:
                    raise TooLarge(f"larger than {max_bytes} bytes")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return path
