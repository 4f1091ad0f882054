"""The --images folder / list file: lookup, sizes in the display frame, header-only reads."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, PngImagePlugin

from ls_panoptic.errors import ImageError, ImageSourceError
from ls_panoptic.images import ImageIndex, ImageInfo, read_image_info
from ls_panoptic.model import KeyScheme
from ls_panoptic.orientation import ORIENTATION_TAG


def write_jpeg(path: Path, width: int, height: int, orientation: int | None = None) -> Path:
    """A JPEG stored as ``width x height`` with an EXIF orientation tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION_TAG] = orientation
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", exif=exif.tobytes())
    return path


def png_with_trailing_exif(path: Path, width: int, height: int, orientation: int) -> Path:
    """A PNG whose eXIf chunk comes after IDAT (Pillow then only finds it by loading)."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 7).save(buffer, format="PNG")
    data = buffer.getvalue()
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + body))
    iend = data.rindex(b"IEND") - 4
    path.write_bytes(data[:iend] + chunk + data[iend:])
    return path


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_rotated_jpeg_sizes_match_exif_transpose(tmp_path: Path, orientation: int) -> None:
    path = write_jpeg(tmp_path / "x.jpg", 40, 30, orientation)
    with Image.open(path) as img:
        display_w, display_h = ImageOps.exif_transpose(img).size
    info = read_image_info(path)
    assert (info.height, info.width, info.orientation) == (display_h, display_w, orientation)
    assert (info.stored_height, info.stored_width) == (30, 40)


@pytest.mark.usefixtures("no_pixel_decoding")
def test_header_only_reads(tmp_path: Path) -> None:
    assert read_image_info(write_jpeg(tmp_path / "a.jpg", 40, 30, 6)) == ImageInfo(
        tmp_path / "a.jpg", 40, 30, 6
    )
    png = png_with_trailing_exif(tmp_path / "b.png", 20, 10, 8)
    assert read_image_info(png) == ImageInfo(png, 20, 10, 8)


def test_png_xmp_orientation_read_from_header(tmp_path: Path, no_pixel_decoding: None) -> None:
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tiff:Orientation="6"/>'
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp + "</rdf:RDF></x:xmpmeta>")
    path = tmp_path / "xmp.png"
    Image.new("L", (20, 10)).save(path, pnginfo=info)
    assert read_image_info(path) == ImageInfo(path, 20, 10, 6)


def test_png_orientations_agree_with_pillow(tmp_path: Path) -> None:
    xmp = tmp_path / "xmp.png"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", '<rdf:Description tiff:Orientation="6"/>')
    Image.new("L", (20, 10)).save(xmp, pnginfo=info)
    for path in (xmp, png_with_trailing_exif(tmp_path / "b.png", 20, 10, 5)):
        with Image.open(path) as img:
            width, height = ImageOps.exif_transpose(img).size
        assert (read_image_info(path).height, read_image_info(path).width) == (height, width)


def test_folder_recursive_case_insensitive_extensions(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "a" / "GX010032_8.JPG", 8, 6)
    write_jpeg(tmp_path / "a" / "b" / "deep.jpeg", 8, 6, 6)
    Image.new("RGB", (5, 4)).save(tmp_path / "c.Png")
    (tmp_path / "notes.txt").write_text("not an image")
    index = ImageIndex.from_folder(tmp_path)
    assert index.keys() == {"GX010032_8.JPG", "deep.jpeg", "c.Png"}
    assert index.keys("path") == {"a/GX010032_8.JPG", "a/b/deep.jpeg", "c.Png"}
    assert len(index) == 3
    deep = index.lookup("deep.jpeg", "name")
    assert deep is not None and (deep.height, deep.width, deep.orientation) == (8, 6, 6)
    assert index.lookup("missing.jpg", "name") is None
    assert index.lookup("notes.txt", "name") is None


def test_duplicate_names_fail_only_that_name(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "train" / "x.jpg", 4, 4)
    write_jpeg(tmp_path / "val" / "x.jpg", 4, 4)
    write_jpeg(tmp_path / "val" / "y.jpg", 4, 4)
    index = ImageIndex.from_folder(tmp_path)
    with pytest.raises(ImageError, match=r"'x.jpg' matches several files .*train/x.jpg, val/x.jpg"):
        index.lookup("x.jpg", "name")
    assert index.lookup("y.jpg", "name") is not None
    found = index.lookup("val/x.jpg", "path")
    assert found is not None and found.path == tmp_path / "val" / "x.jpg"


def test_path_lookup_exact_and_by_suffix(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "dir" / "x.jpg", 4, 4)
    write_jpeg(tmp_path / "a" / "dup" / "z.jpg", 4, 4)
    write_jpeg(tmp_path / "b" / "dup" / "z.jpg", 4, 4)
    index = ImageIndex.from_folder(tmp_path)
    expected = tmp_path / "dir" / "x.jpg"
    for key in ("dir/x.jpg", "/dir/x.jpg", "bucket-prefix/dir/x.jpg", "x.jpg"):
        found = index.lookup(key, "path")
        assert found is not None and found.path == expected, key
    assert index.lookup("other/x.jpg", "path") is None
    assert index.lookup("ir/x.jpg", "path") is None  # only at a "/" boundary
    with pytest.raises(ImageError, match=r"'dup/z\.jpg' matches several files"):
        index.lookup("dup/z.jpg", "path")
    assert index.lookup("a/dup/z.jpg", "path") is not None


def test_find_by_url(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "imgs" / "my photo.jpg", 4, 4)
    write_jpeg(tmp_path / "one" / "same.jpg", 4, 4)
    write_jpeg(tmp_path / "two" / "same.jpg", 4, 4)
    index = ImageIndex.from_folder(tmp_path)
    local = "/data/local-files/?d=imgs/my%20photo.jpg"
    upload = "/data/upload/4/0a1b2c3d-my%20photo.jpg"
    moved = "s3://bucket/other/my%20photo.jpg"
    schemes: tuple[KeyScheme, ...] = ("name", "path", "task")
    for scheme in schemes:
        found = index.find(local, scheme)
        assert found is not None and found.path.name == "my photo.jpg"
        assert index.find(upload, scheme) is not None
    assert index.find(moved, "task") is not None  # no such path: by unique name
    assert index.find(moved, "path") is None
    two = index.find("s3://bucket/two/same.jpg", "task")
    assert two is not None and two.path.parent.name == "two"
    with pytest.raises(ValueError, match="find"):
        index.lookup("17", "task")


def test_list_file(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "imgs" / "a.jpg", 4, 3)
    outside = write_jpeg(tmp_path / "elsewhere" / "b.jpg", 4, 3)
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text(f"# training images\n\n../imgs/a.jpg\n  {outside}  \n", encoding="utf-8")
    index = ImageIndex.from_list_file(listing)
    assert index.keys() == {"a.jpg", "b.jpg"}
    assert "../imgs/a.jpg" in index.keys("path")
    found = index.lookup("imgs/a.jpg", "path")
    assert found is not None and (found.height, found.width) == (3, 4)


def test_list_file_missing_entries_named_by_line(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "a.jpg", 4, 3)
    listing = tmp_path / "list.txt"
    listing.write_text("a.jpg\nnope.jpg\n# ok\nsub/also-missing.png\n", encoding="utf-8")
    with pytest.raises(ImageSourceError) as caught:
        ImageIndex.from_list_file(listing)
    assert str(caught.value).splitlines() == [
        f"{listing}:2: nope.jpg: no such file",
        f"{listing}:4: sub/also-missing.png: no such file",
    ]


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ImageSourceError, match="does not exist or is not a folder"):
        ImageIndex.from_folder(tmp_path / "missing")
    with pytest.raises(ImageSourceError, match=r"has no image files \(bmp, jpeg, jpg"):
        ImageIndex.from_folder(tmp_path)
    with pytest.raises(ImageSourceError, match="cannot read image list"):
        ImageIndex.from_list_file(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ImageSourceError, match="names no files"):
        ImageIndex.from_list_file(tmp_path / "empty.txt")


def test_unreadable_image_fails_on_lookup(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    index = ImageIndex.from_folder(tmp_path)
    with pytest.raises(ImageError, match=r"cannot read image .*broken\.jpg"):
        index.lookup("broken.jpg", "name")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loops_are_walked_once(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "d" / "x.jpg", 4, 4)
    (tmp_path / "d" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert ImageIndex.from_folder(tmp_path).keys("path") == {"d/x.jpg"}
