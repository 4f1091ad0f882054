"""The images of a batch conversion: a folder or a list file, and each image's size and EXIF.

Only headers are read (``Image.open`` is lazy): size and EXIF orientation, never the pixels. A PNG
whose ``eXIf`` chunk follows the image data is handled by walking its chunks; EXIF or XMP in PNG
text chunks placed after the image data is not read (Pillow would decode the image to find it).

Lookup by key scheme (see :mod:`ls_panoptic.naming`):

- ``name``: by file name, case-sensitive. A name found at several paths is an error for the image
  that asks for it, naming the paths (other images are unaffected).
- ``path``: by relative path (to the folder, or to the list file's folder as written in it). When
  no path matches exactly, a path that ends with the key, or a key that ends with the path, at a
  ``/`` boundary is used if it is the only one: a bucket key ``prefix/dir/x.jpg`` finds
  ``dir/x.jpg`` in a folder synced from ``prefix``.
- ``task``: keys do not name files; :meth:`ImageIndex.find` locates the image from its URL by
  path, then by a unique name.
"""

from __future__ import annotations

import os
import posixpath
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ls_panoptic.errors import ImageError, ImageSourceError, Remedy
from ls_panoptic.model import KeyScheme
from ls_panoptic.naming import IMAGE_EXTENSIONS, image_path
from ls_panoptic.orientation import (
    EXIF_ERRORS,
    ORIENTATION_TAG,
    display_size,
    exif_orientation,
    orientation_from_exif,
)

__all__ = ["ImageIndex", "ImageInfo", "read_image_info"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageInfo:
    """One image file, as far as its header tells.

    Attributes:
        path: the file.
        height, width: size in the display frame (after ``exif_transpose``).
        orientation: EXIF orientation 1..8 (1 when absent).
    """

    path: Path
    height: int
    width: int
    orientation: int = 1

    @property
    def stored_height(self) -> int:
        """Height of the stored pixel grid (before EXIF orientation)."""
        return display_size((self.height, self.width), self.orientation)[0]

    @property
    def stored_width(self) -> int:
        """Width of the stored pixel grid (before EXIF orientation)."""
        return display_size((self.height, self.width), self.orientation)[1]


def read_image_info(path: Path) -> ImageInfo:
    """Size and orientation of an image file from its header.

    Raises:
        ImageError: the file is missing or not a readable image (no task id: callers add it).
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.format == "PNG" and "exif" not in img.info:
                orientation = _png_orientation(img, path)
            else:
                orientation = exif_orientation(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None
    height, width = display_size((height, width), orientation)
    return ImageInfo(path, height, width, orientation)


def _png_orientation(img: Image.Image, path: Path) -> int:
    """Orientation of a PNG without EXIF in its header, as ``exif_transpose`` would find it."""
    try:
        trailing = _png_trailing_exif(path)
        if trailing is not None and ORIENTATION_TAG in trailing:
            return orientation_from_exif(trailing)
        # Pillow's PNG getexif() decodes the pixels to reach trailing chunks; the base class
        # reads only what the header gave (XMP, EXIF text chunks before the image data).
        return orientation_from_exif(Image.Image.getexif(img))
    except EXIF_ERRORS:
        return 1


def _png_trailing_exif(path: Path) -> Image.Exif | None:
    """The ``eXIf`` chunk of a PNG found by skipping chunk bodies, ``None`` when there is none."""
    with open(path, "rb") as fp:
        if fp.read(8) != _PNG_SIGNATURE:
            return None
        while len(head := fp.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                exif = Image.Exif()
                exif.load(fp.read(length))
                return exif
            if kind == b"IEND":
                break
            fp.seek(length + 4, os.SEEK_CUR)
    return None


class ImageIndex:
    """Image files by name and relative path; headers are read on first lookup, then cached."""

    def __init__(self, files: dict[str, Path], source: str) -> None:
        """``files``: ``{relative posix path: file}``; ``source`` names the folder or list file."""
        self._files = files
        self._source = source
        self._by_name: dict[str, list[str]] = {}
        for rel in sorted(files):
            self._by_name.setdefault(posixpath.basename(rel), []).append(rel)
        self._infos: dict[str, ImageInfo] = {}

    @classmethod
    def from_folder(cls, path: str | Path) -> ImageIndex:
        """Every image file under ``path``, recursively (extensions case-insensitive).

        Raises:
            ImageSourceError: not a folder, or no image files in it.
        """
        root = Path(path)
        if not root.is_dir():
            raise ImageSourceError(f"image folder {root} does not exist or is not a folder")
        files = {rel: root / rel for rel in _walk(root)}
        if not files:
            extensions = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
            raise ImageSourceError(f"image folder {root} has no image files ({extensions})")
        return cls(files, f"image folder {root}")

    @classmethod
    def from_list_file(cls, path: str | Path) -> ImageIndex:
        """The files listed in ``path``, one per line, relative to the list file's folder.

        Blank lines and lines starting with ``#`` are skipped.

        Raises:
            ImageSourceError: the list is unreadable, or names missing files (one line each).
        """
        list_file = Path(path)
        try:
            lines = list_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ImageSourceError(f"cannot read image list {list_file}: {exc}") from None
        files: dict[str, Path] = {}
        problems = []
        for number, line in enumerate(lines, start=1):
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            file = list_file.parent / entry
            if not file.is_file():
                problems.append(f"{list_file}:{number}: {entry}: no such file")
                continue
            files[_list_key(list_file.parent, entry)] = file
        if problems:
            raise ImageSourceError("\n".join(problems))
        if not files:
            raise ImageSourceError(f"image list {list_file} names no files")
        return cls(files, f"image list {list_file}")

    def keys(self, scheme: KeyScheme = "name") -> set[str]:
        """File names (``name``) or relative paths (``path``) of the indexed images."""
        return set(self._files) if scheme == "path" else set(self._by_name)

    def __len__(self) -> int:
        return len(self._files)

    def lookup(self, key: str, scheme: KeyScheme) -> ImageInfo | None:
        """The image an image key names, ``None`` when there is none.

        Raises:
            ImageError: the key matches several files (the message names them), or the file is
                unreadable.
            ValueError: scheme ``task`` (use :meth:`find`).
        """
        if scheme == "task":
            raise ValueError("task ids do not name image files; locate the image with find(url)")
        rel = self._match_name(key) if scheme == "name" else self._match_path(key)
        return None if rel is None else self._info(rel)

    def find(self, url: str, scheme: KeyScheme = "task") -> ImageInfo | None:
        """The image of a task from its image URL, under any key scheme.

        ``name`` and ``path`` look up the URL's key; ``task`` tries the path, then a unique name.
        """
        path = image_path(url)
        if scheme == "name":
            return self.lookup(posixpath.basename(path), "name")
        found = self.lookup(path, "path")
        if found is None and scheme == "task":
            found = self.lookup(posixpath.basename(path), "name")
        return found

    def _match_name(self, name: str) -> str | None:
        rels = self._by_name.get(name, [])
        if len(rels) > 1:
            raise ImageError(
                f"image name {name!r} matches several files in the {self._source}: "
                + ", ".join(rels),
                remedy=Remedy.KEY,
            )
        return rels[0] if rels else None

    def _match_path(self, key: str) -> str | None:
        key = posixpath.normpath(key.replace("\\", "/")).lstrip("/")
        if key in self._files:
            return key
        candidates = [
            rel
            for rel in self._by_name.get(posixpath.basename(key), [])
            if rel.endswith("/" + key) or key.endswith("/" + _without_parents(rel))
        ]
        if len(candidates) > 1:
            raise ImageError(
                f"image path {key!r} matches several files in the {self._source}: "
                + ", ".join(candidates),
            )
        return candidates[0] if candidates else None

    def _info(self, rel: str) -> ImageInfo:
        if rel not in self._infos:
            self._infos[rel] = read_image_info(self._files[rel])
        return self._infos[rel]


def _walk(root: Path) -> Iterable[str]:
    """Relative posix paths of image files under ``root``, following symlinks without loops."""
    seen: set[str] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield Path(folder, name).relative_to(root).as_posix()


def _without_parents(rel: str) -> str:
    while rel.startswith("../"):
        rel = rel[3:]
    return rel


def _list_key(base: Path, entry: str) -> str:
    """The relative path of a list entry: as written, or relative to the list's folder."""
    path = Path(entry)
    if path.is_absolute():
        try:
            path = path.relative_to(base.resolve())
        except ValueError:
            return posixpath.normpath(path.as_posix()).lstrip("/")
    return posixpath.normpath(path.as_posix())
