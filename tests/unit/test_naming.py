"""Image URLs in task data -> image keys."""

from __future__ import annotations

from typing import Any

import pytest

from ls_panoptic.naming import image_key, image_path, image_url


@pytest.mark.parametrize(
    ("url", "name", "path"),
    [
        ("/data/upload/3/5f1e2a9b-GX010032_8.jpg", "GX010032_8.jpg", "GX010032_8.jpg"),
        ("http://localhost:8080/data/upload/12/0a1b2c3d-x.png", "x.png", "x.png"),
        ("https://ls.example.com/ls/data/upload/1/deadbeef-a-b.jpg", "a-b.jpg", "a-b.jpg"),
        ("/data/upload/3/5f1e2a9b-my%20photo.jpg", "my photo.jpg", "my photo.jpg"),
        ("/data/upload/5f1e2a9b-old.jpg", "old.jpg", "old.jpg"),
        # not exactly 8 lowercase hex digits and a dash: kept whole
        ("/data/upload/3/5F1E2A9B-x.jpg", "5F1E2A9B-x.jpg", "5F1E2A9B-x.jpg"),
        ("/data/upload/3/5f1e2a9-x.jpg", "5f1e2a9-x.jpg", "5f1e2a9-x.jpg"),
        ("/data/upload/3/5f1e2a9bc-x.jpg", "5f1e2a9bc-x.jpg", "5f1e2a9bc-x.jpg"),
        ("/data/upload/3/5f1e2a9b_x.jpg", "5f1e2a9b_x.jpg", "5f1e2a9b_x.jpg"),
        ("/data/upload/3/5f1e2a9b-", "5f1e2a9b-", "5f1e2a9b-"),
        # only the first prefix goes
        ("/data/upload/3/5f1e2a9b-0a1b2c3d-x.jpg", "0a1b2c3d-x.jpg", "0a1b2c3d-x.jpg"),
        ("/data/local-files/?d=dir/sub/x.jpg", "x.jpg", "dir/sub/x.jpg"),
        ("/data/local-files/?d=dir%2Fmy%20photo%231.jpg", "my photo#1.jpg", "dir/my photo#1.jpg"),
        ("/data/local-files/?d=dir/a+b.jpg", "a b.jpg", "dir/a b.jpg"),
        ("/data/local-files/?d=dir/a%2Bb.jpg", "a+b.jpg", "dir/a+b.jpg"),
        ("/data/local-files/?d=/abs/./dir/../x.jpg", "x.jpg", "abs/x.jpg"),
        ("http://127.0.0.1:8080/data/local-files?d=imgs%5Cx.jpg", "x.jpg", "imgs/x.jpg"),
        ("s3://bucket/dir/x.jpg", "x.jpg", "dir/x.jpg"),
        ("s3://bucket/dir/x.jpg?versionId=3", "x.jpg", "dir/x.jpg"),
        ("gs://bucket/a%20b/x%2B1.jpg", "x+1.jpg", "a b/x+1.jpg"),
        ("azure-blob://container/x.jpg", "x.jpg", "x.jpg"),
        ("https://cdn.example.com/img/x.jpg?X-Amz-Signature=abc#frag", "x.jpg", "img/x.jpg"),
        ("https://cdn.example.com/img/a+b.jpg", "a+b.jpg", "img/a+b.jpg"),
        ("file:///home/me/x.jpg", "x.jpg", "home/me/x.jpg"),
        ("images/x.jpg", "x.jpg", "images/x.jpg"),
        ("/mnt/images/x.jpg", "x.jpg", "mnt/images/x.jpg"),
        ("C:\\images\\x.jpg", "x.jpg", "C:/images/x.jpg"),
    ],
)
def test_keys(url: str, name: str, path: str) -> None:
    assert image_key(url, "name", 7) == name
    assert image_key(url, "path", 7) == path
    assert image_path(url) == path
    assert image_key(url, "task", 7) == "7"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.com/", "has no file name"),
        ("s3://bucket", "has no file name"),
        ("/data/local-files/?x=1", r"has no \?d=<path>"),
        ("/data/local-files/?d=", r"has no \?d=<path>"),
        ("data:image/png;base64,iVBORw0KGgo=", "data: URL"),
    ],
)
def test_urls_without_a_name(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_key(url, "name", 1)


def test_task_scheme_needs_an_id_and_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="needs a task id"):
        image_key("x.jpg", "task", None)
    with pytest.raises(ValueError, match="unknown key scheme 'id'"):
        image_key("x.jpg", "id", 1)  # type: ignore[arg-type]


def test_image_url_by_key() -> None:
    data = {"image": " /data/upload/1/0a1b2c3d-x.jpg ", "photo": "s3://b/y.jpg"}
    assert image_url(data, None) == "/data/upload/1/0a1b2c3d-x.jpg"
    assert image_url(data, "photo") == "s3://b/y.jpg"
    with pytest.raises(ValueError, match=r"no key 'img' \(its keys: image, photo\)"):
        image_url(data, "img")
    with pytest.raises(ValueError, match="'n' is not an image URL: 3"):
        image_url({"n": 3}, "n")


def test_image_url_guessed_when_unnamed() -> None:
    assert image_url({"caption": "a dog", "url": "https://x.org/d.JPG?s=1"}, None) == (
        "https://x.org/d.JPG?s=1"
    )
    assert image_url({"file": "gs://b/d", "n": 4}, None) == "gs://b/d"
    with pytest.raises(ValueError, match=r"values a, b look like an image URL.*<Image value="):
        image_url({"a": "x.jpg", "b": "/data/upload/1/y.png"}, None)
    with pytest.raises(ValueError, match="no value that looks like an image URL"):
        image_url({"caption": "a dog"}, None)


@pytest.mark.parametrize(
    ("data", "value"),
    [
        ({"images": [{"url": "/data/upload/1/a.jpg"}, {"url": "/data/upload/1/b.jpg"}]}, None),
        ({"image": ["https://h/a.jpg", "https://h/b.jpg", "https://h/c.jpg"]}, "image"),
        ({"pages": ["s3://b/a.png", "s3://b/b.png"], "note": "x"}, "image"),
    ],
)
def test_a_task_of_several_images_is_named_as_such(data: dict[str, Any], value: str | None) -> None:
    with pytest.raises(ValueError, match=r"is a list of \d images \(a multi-image task\)"):
        image_url(data, value)


def test_a_list_of_tags_is_not_taken_for_images() -> None:
    with pytest.raises(ValueError, match="no value that looks like an image URL") as info:
        image_url({"tags": ["cat", "dog"]}, None)
    assert "multi-image" not in str(info.value)
