"""Pictures for the review page: an entry drawn over its photo, small (the grid) or large (the
detail view's photo and its id mask), cached in Redis by entry version.

The photo comes from ``LS_PANOPTIC_IMAGES_DIR`` or Label Studio, through the worker's
host-restricted downloader (:meth:`worker.labelstudio.LabelStudio.image_info`: the API key only
ever goes to Label Studio's origin); without either, or when the image cannot be had, the entry
is drawn on grey. A JPEG is decoded at a reduced scale (``Image.draft``: the DCT scales by 1/2,
1/4 or 1/8), so a 12 MP photo costs a few milliseconds instead of a hundred; the mask is read
from its blob and sampled down before widening (never decoded whole as ``uint32``).

Cached values are keyed by the entry blob's version (:meth:`worker.keys.Keys.thumbnail`): an
edit makes a new version, so a new picture; old ones expire (:data:`CACHE_TTL_S`).

Colours: one per class, from the Okabe-Ito palette (distinguishable with the common forms of
colour blindness), then Paul Tol's muted palette; every segment is outlined so neighbouring
instances of one class stay apart. :func:`class_colour` is the one source of those colours (the
page's legend and its JavaScript receive them from it).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis
import zstandard
from PIL import Image, ImageOps

from ls_panoptic.errors import PanopticError

from ._store_codec import StoreError, peek_state, text
from .image_source import ImageRefused, local_image
from .keys import Keys
from .labelstudio import LabelStudio, LabelStudioError
from .settings import Settings

__all__ = [
    "CACHE_TTL_S",
    "PALETTE",
    "EntryFacts",
    "Pictures",
    "StoredMask",
    "class_colour",
    "count_areas",
    "draw_overlay",
    "id_png",
    "load_photo",
    "read_facts",
    "read_mask",
]

#: seconds a cached picture lives after it was drawn
CACHE_TTL_S = 7 * 24 * 3600
#: Okabe & Ito (2008), then Paul Tol's "muted" scheme: hex RGB, class id modulo its length
PALETTE = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
    "#AA4499",
)  # fmt: skip
_FILL_ALPHA = 0.5


def class_colour(class_id: int) -> str:
    """The class's colour (hex RGB)."""
    return PALETTE[class_id % len(PALETTE)]


def _rgb(class_id: int) -> tuple[int, int, int]:
    value = class_colour(class_id)
    return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)


@dataclass(frozen=True)
class StoredMask:
    """An entry blob as the pictures need it: the mask sampled down, and what it holds."""

    mask: npt.NDArray[np.uint32]  # sampled: every ``step``-th row and column
    step: int
    height: int
    width: int
    inst2class: dict[int, int]
    meta: dict[str, Any]
    image_url: str | None


def read_mask(
    client: redis.Redis, keys: Keys, project: int, task_id: int, version: str, side: int
) -> StoredMask | None:
    """The blob ``version`` of the task, its mask sampled so the longest side is at most
    ``side`` (``None``: the blob is gone, e.g. superseded and expired).

    Raises:
        StoreError: the blob is unreadable.
    """
    where = keys.blob(project, task_id, version)
    fields: list[Any] = client.hmget(
        where, ["mask", "dtype", "height", "width", "inst2class", "meta", "image_url"]
    )
    if fields[0] is None:
        return None
    try:
        full = _stored_mask(fields[0], fields[1], fields[2], fields[3])
        height, width = full.shape
        step = max(1, -(-max(height, width) // side))
        mask = np.ascontiguousarray(full[::step, ::step], dtype=np.uint32)
        inst2class = {int(k): int(v) for k, v in json.loads(fields[4]).items()}
        meta = json.loads(fields[5])
    except (TypeError, ValueError, zstandard.ZstdError) as exc:
        raise StoreError(f"{where}: stored entry is unreadable ({exc!r})") from exc
    return StoredMask(mask, step, height, width, inst2class, meta, text(fields[6]))


def _stored_mask(data: bytes, dtype: Any, height: Any, width: Any) -> npt.NDArray[Any]:
    """The blob's mask, full size, in its stored dtype (``uint16`` or ``uint32``)."""
    stored = np.dtype(np.uint16 if text(dtype) == "uint16" else np.uint32)
    raw = zstandard.ZstdDecompressor().decompress(data)
    return np.frombuffer(raw, dtype=stored).reshape(int(height), int(width))


@dataclass(frozen=True)
class EntryFacts:
    """What the detail view says of an entry blob, read without its mask."""

    height: int
    width: int
    inst2class: dict[int, int]
    meta: dict[str, Any]


def read_facts(
    client: redis.Redis, keys: Keys, project: int, task_id: int, version: str
) -> EntryFacts | None:
    """The size, ``inst2class`` and provenance of blob ``version`` (``None``: gone); the mask
    is not read.

    Raises:
        StoreError: the blob is unreadable.
    """
    where = keys.blob(project, task_id, version)
    fields: list[Any] = client.hmget(where, ["height", "width", "inst2class", "meta"])
    if fields[2] is None:
        return None
    try:
        inst2class = {int(k): int(v) for k, v in json.loads(fields[2]).items()}
        return EntryFacts(int(fields[0]), int(fields[1]), inst2class, json.loads(fields[3]))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where}: stored entry is unreadable ({exc!r})") from exc


def count_areas(
    client: redis.Redis, keys: Keys, project: int, task_id: int, version: str
) -> dict[int, int] | None:
    """Pixels of each instance of blob ``version``'s full-size mask, every id of its
    ``inst2class`` listed (``None``: the blob is gone). Decodes the whole mask: cached by
    :meth:`Pictures.areas`.

    Raises:
        StoreError: the blob is unreadable.
    """
    where = keys.blob(project, task_id, version)
    fields: list[Any] = client.hmget(where, ["mask", "dtype", "height", "width", "inst2class"])
    if fields[0] is None:
        return None
    try:
        counts = np.bincount(_stored_mask(*fields[:4]).ravel())
        ids = sorted(int(k) for k in json.loads(fields[4]))
    except (TypeError, ValueError, zstandard.ZstdError) as exc:
        raise StoreError(f"{where}: stored entry is unreadable ({exc!r})") from exc
    return {i: int(counts[i]) if i < len(counts) else 0 for i in ids}


def load_photo(path: Path | None, size: tuple[int, int], exif: bool) -> Image.Image:
    """The photo at ``path`` as RGB ``size`` (width, height), decoded at the smallest JPEG
    scale that still covers it; ``exif``: turned as browsers show it (``display``
    orientation). Grey when ``path`` is ``None`` or unreadable."""
    if path is None:
        return Image.new("RGB", size, (90, 90, 90))
    try:
        with Image.open(path) as img:
            turned = exif and _orientation(img) in (5, 6, 7, 8)
            target = (size[1], size[0]) if turned else size
            img.draft("RGB", target)  # JPEG only: decode at 1/2, 1/4 or 1/8 when that covers
            photo = ImageOps.exif_transpose(img) if exif else img.copy()
        return photo.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return Image.new("RGB", size, (90, 90, 90))


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except (TypeError, ValueError):
        return 1


def _edges(mask: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    edge = np.zeros(mask.shape, dtype=bool)
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[1:, :] |= mask[1:, :] != mask[:-1, :]
    return edge


def draw_overlay(
    photo: Image.Image,
    mask: npt.NDArray[np.uint32],
    inst2class: Mapping[int, int],
    background_id: int | None,
) -> Image.Image:
    """``mask`` (the photo's size) over ``photo``: each segment half-transparent in its class's
    colour, outlined in white; background segments show the photo."""
    size = max(inst2class, default=0) + 1
    colours = np.zeros((size + 1, 3), dtype=np.float32)
    alpha = np.zeros(size + 1, dtype=np.float32)
    for instance, class_id in inst2class.items():
        if class_id != background_id:
            colours[instance], alpha[instance] = _rgb(class_id), _FILL_ALPHA
    ids = np.minimum(mask, size)
    base = np.asarray(photo, dtype=np.float32)
    a = alpha[ids][..., None]
    out = base * (1 - a) + colours[ids] * a
    out[_edges(mask)] = (255, 255, 255)
    return Image.fromarray(out.astype(np.uint8), "RGB")


def id_png(mask: npt.NDArray[np.uint32]) -> bytes:
    """PNG whose pixel ``(r, g, b)`` holds the instance id ``r << 16 | g << 8 | b`` (the
    detail view's hover lookup, in JavaScript, reads it from a canvas)."""
    rgb = np.empty((*mask.shape, 3), dtype=np.uint8)
    rgb[..., 0] = (mask >> 16) & 0xFF
    rgb[..., 1] = (mask >> 8) & 0xFF
    rgb[..., 2] = mask & 0xFF
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _jpeg(picture: Image.Image, quality: int = 82) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class Pictures:
    """The review page's pictures of one store, cached in its Redis.

    ``labelstudio``: where photos are downloaded from when ``settings.images_dir`` does not
    have them (``None``: made from the settings when they name Label Studio, else no photos).
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: Settings,
        labelstudio: LabelStudio | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self._labelstudio = labelstudio
        if labelstudio is None and settings.label_studio_url and settings.label_studio_api_key:
            self._labelstudio = LabelStudio(
                settings.label_studio_url, settings.label_studio_api_key,
                timeout=10.0, images_dir=settings.images_dir,
            )  # fmt: skip
        self._exif = settings.convert.orientation == "display"

    def version_of(self, project: int, task_id: int) -> str | None:
        """The version of the entry the review shows for the task: the current one, else the
        last good one a failure kept; ``None`` without one."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._keys.manifest(project), str(task_id))
            pipe.hget(self._keys.states(project), str(task_id))
            current, state = pipe.execute()
        if current is not None:
            return text(current)
        return peek_state(state)[1] if state is not None else None

    def thumbnail(
        self, project: int, task_id: int, version: str, side: int, background_id: int | None
    ) -> bytes | None:
        """JPEG of the entry over its photo, longest side about ``side``; ``None``: no blob."""

        def draw(stored: StoredMask, photo: Image.Image) -> bytes:
            return _jpeg(draw_overlay(photo, stored.mask, stored.inst2class, background_id))

        key = self._keys.thumbnail(project, task_id, version, side)
        return self._cached(key, project, task_id, version, side, draw)

    def photo(self, project: int, task_id: int, version: str, side: int) -> bytes | None:
        """JPEG of the photo alone, the size of the entry's mask sampled to ``side``."""

        def draw(stored: StoredMask, photo: Image.Image) -> bytes:
            return _jpeg(photo, quality=88)

        key = self._keys.review_photo(project, task_id, version, side)
        return self._cached(key, project, task_id, version, side, draw)

    def areas(self, project: int, task_id: int, version: str) -> dict[int, int] | None:
        """``{instance id: pixels}`` of entry ``version`` at full size (:func:`count_areas`),
        cached by version like the pictures; ``None``: the blob is gone."""
        key = self._keys.review_areas(project, task_id, version)
        cached: Any = self._redis.get(key)
        if cached is not None:
            return {int(k): int(v) for k, v in json.loads(cached).items()}
        found = count_areas(self._redis, self._keys, project, task_id, version)
        if found is not None:
            self._redis.set(key, json.dumps(found, separators=(",", ":")), ex=CACHE_TTL_S)
        return found

    def _cached(
        self,
        key: str,
        project: int,
        task_id: int,
        version: str,
        side: int,
        draw: Callable[[StoredMask, Image.Image], bytes],
    ) -> bytes | None:
        """The picture cached at ``key``, else ``draw(blob, photo)`` (the photo at the size of
        the blob's mask sampled to ``side``), cached; ``None`` when the blob is gone."""
        cached: Any = self._redis.get(key)
        if cached is not None:
            return bytes(cached)
        stored = read_mask(self._redis, self._keys, project, task_id, version, side)
        if stored is None:
            return None
        height, width = stored.mask.shape
        with tempfile.TemporaryDirectory(dir=self._scratch()) as folder:
            path = self._photo_file(stored.image_url, task_id, Path(folder))
            photo = load_photo(path, (width, height), self._exif)
        picture = draw(stored, photo)
        self._redis.set(key, picture, ex=CACHE_TTL_S)
        return picture

    def _scratch(self) -> Path:
        folder = self._settings.snapshot_dir / "review-scratch"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _photo_file(self, url: str | None, task_id: int, folder: Path) -> Path | None:
        """The photo's file (local, or downloaded into ``folder``); ``None`` when it cannot be
        had (no URL, no Label Studio configured, refused or failed download)."""
        if not url or url.startswith("data:"):
            return None
        if self._labelstudio is None:
            if self._settings.images_dir is None:
                return None
            try:
                return local_image(self._settings.images_dir, url)
            except (ImageRefused, ValueError):
                return None
        try:
            info = self._labelstudio.image_info(url, folder, task_id=task_id)
        except (LabelStudioError, PanopticError, OSError, ValueError):
            return None  # drawn on grey: the review still shows the entry
        return info.path if info is not None else None

    def close(self) -> None:
        if self._labelstudio is not None:
            self._labelstudio.close()
