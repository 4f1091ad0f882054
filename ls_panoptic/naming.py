"""Image keys: the snapshot key of a task, derived from the image URL in its data (DESIGN 3.6).

URL forms and what each key scheme makes of them::

    URL in task data                                   name          path
    /data/upload/<project>/<8 hex>-x.jpg               x.jpg         x.jpg
    /data/local-files/?d=dir/x.jpg                     x.jpg         dir/x.jpg
    s3://bucket/dir/x.jpg  (gs://, azure-blob://)      x.jpg         dir/x.jpg   (bucket dropped)
    https://host/dir/x.jpg?sig=...#frag                x.jpg         dir/x.jpg   (host dropped)
    dir/x.jpg, /abs/dir/x.jpg  (bare paths)            x.jpg         dir/x.jpg, abs/dir/x.jpg

The ``task`` scheme keys every image by ``str(task_id)``.

Decisions:

- Only an upload prefix of exactly 8 lowercase hex digits and ``-`` is stripped (Label Studio's
  ``uuid4()[:8]``); any other file name under ``/data/upload/`` is kept whole.
- URL paths are percent-decoded (``%20`` -> space, ``+`` stays ``+``). The ``d`` parameter of
  local files is decoded as the Label Studio server decodes it: form encoding (``+`` is a space),
  then ``posixpath.normpath`` and leading ``/`` removed; backslashes become ``/``.
- ``path`` keys drop the cloud bucket and the web host: an image folder mirrors the bucket's or
  site's contents, not its name. A leading ``/`` is dropped too.
- ``/data/upload/<8 hex>-x.jpg`` without the project folder (older Label Studio) is an upload too.
- Upload and local-files URLs are recognised with or without scheme and host, and under a
  sub-path (``https://ls.example.com/ls/data/upload/...``).

Functions raise ``ValueError`` with the reason only; callers wrap it with the task id.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ls_panoptic.model import KeyScheme

__all__ = ["IMAGE_EXTENSIONS", "image_key", "image_path", "image_url"]

#: File extensions (lower case, with dot) treated as images.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

_UPLOAD = re.compile(r"(?:^|/)data/upload/(?:[^/]+/)?(?P<file>[^/]+)$")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")
_LOCAL_FILES = re.compile(r"(?:^|/)data/local-files/?$")
_URL_PREFIXES = (
    "/data/upload/",
    "/data/local-files/",
    "s3://",
    "gs://",
    "azure-blob://",
    "http://",
    "https://",
)


def image_url(task_data: Mapping[str, Any], image_value: str | None) -> str:
    """The image URL in a task's data.

    Args:
        task_data: the task's ``data``.
        image_value: the data key named by the ``<Image value="$key">`` tag. When ``None``: the key
            ``image`` if present, else the one string value that looks like an image URL or path.

    Raises:
        ValueError: the key is missing, not a non-empty string, or no single candidate exists.
    """
    if image_value is None and "image" in task_data:
        image_value = "image"
    if image_value is not None:
        if image_value not in task_data:
            keys = ", ".join(sorted(map(str, task_data))) or "none"
            lists = [k for k, v in task_data.items() if _is_image_list(v)]
            raise ValueError(
                f"task data has no key {image_value!r} (its keys: {keys})"
                + (f"; {_multi_image(lists[0], task_data[lists[0]])}" if lists else "")
            )
        url = task_data[image_value]
        if _is_image_list(url):
            raise ValueError(_multi_image(image_value, url))
        if not isinstance(url, str) or not url.strip():
            raise ValueError(f"task data {image_value!r} is not an image URL: {url!r}")
        return url.strip()
    found = [k for k, v in task_data.items() if isinstance(v, str) and _looks_like_image(v)]
    lists = [k for k, v in task_data.items() if _is_image_list(v)]
    if not found and lists:
        raise ValueError(_multi_image(lists[0], task_data[lists[0]]))
    if len(found) != 1:
        which = "no value that looks" if not found else f"values {', '.join(found)} look"
        raise ValueError(
            f"task data has {which} like an image URL; name the image key "
            "(the $key of the label config's <Image value=...>)"
        )
    return str(task_data[found[0]]).strip()


def _is_image_list(value: object) -> bool:
    """A list of image URLs, or of objects holding one (``[{"url": ...}]``): several images."""
    if not isinstance(value, list) or not value:
        return False
    return all(
        (isinstance(item, str) and _looks_like_image(item))
        or (
            isinstance(item, Mapping)
            and any(isinstance(v, str) and _looks_like_image(v) for v in item.values())
        )
        for item in value
    )


def _multi_image(key: str, images: list[Any]) -> str:
    return (
        f"task data {key!r} is a list of {len(images)} images (a multi-image task); "
        "ls-panoptic converts tasks of one image each: import one task per image"
    )


def _looks_like_image(value: str) -> bool:
    value = value.strip()
    if value.startswith(_URL_PREFIXES):
        return True
    return posixpath.splitext(urlsplit(value).path)[1].lower() in IMAGE_EXTENSIONS


def image_path(url: str) -> str:
    """The image's relative path as the ``path`` key scheme sees it (see the module table)."""
    url = url.strip()
    if url.startswith("data:"):
        raise ValueError("the image is embedded in the task as a data: URL and has no file name")
    parts = urlsplit(url)
    upload = _UPLOAD.search(parts.path)
    if upload:
        return _UPLOAD_PREFIX.sub("", unquote(upload.group("file")), count=1)
    if _LOCAL_FILES.search(parts.path):
        return _local_file_path(parts.query, url)
    if len(parts.scheme) > 1:  # s3://bucket/..., https://host/..., file:///...
        path = unquote(parts.path)
    else:  # a bare path; a Windows drive letter parses as a one-letter scheme
        path = unquote(url.split("?")[0].split("#")[0]).replace("\\", "/")
    path = path.lstrip("/")
    if not path or path.endswith("/"):
        raise ValueError(f"image URL {url!r} has no file name")
    return posixpath.normpath(path)


def _local_file_path(query: str, url: str) -> str:
    values = parse_qs(query, keep_blank_values=True).get("d")
    if not values or not values[0].strip():
        raise ValueError(f"local-files URL {url!r} has no ?d=<path>")
    path = posixpath.normpath(values[0].replace("\\", "/")).lstrip("/")
    if not path or path == ".":
        raise ValueError(f"local-files URL {url!r} has no file name")
    return path


def image_key(url: str, scheme: KeyScheme, task_id: int | None) -> str:
    """The snapshot key of an image.

    Args:
        url: the image URL from the task data (:func:`image_url`).
        scheme: ``name`` (file name), ``path`` (relative path) or ``task`` (``str(task_id)``).
        task_id: the task id, needed for the ``task`` scheme only.

    Raises:
        ValueError: no file name in the URL, an unknown scheme, or no task id for ``task``.
    """
    if scheme == "task":
        if task_id is None:
            raise ValueError("the task key scheme needs a task id, and this task has none")
        return str(task_id)
    if scheme == "path":
        return image_path(url)
    if scheme == "name":
        return posixpath.basename(image_path(url))
    raise ValueError(f"unknown key scheme {scheme!r}; use name, path or task")
