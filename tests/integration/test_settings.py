"""Settings.from_env: every variable parsed and validated; secrets never shown (no Redis)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ls_panoptic.model import ConvertOptions
from worker.jobqueue import DEFAULT_SYNC_TIMEOUT, SYNC_TIMEOUT_MARGIN, sync_timeout
from worker.settings import Settings, SettingsError

FULL_ENV = {
    "REDIS_URL": "redis://:s3cret-redis@redis.internal:6380/2",
    "LABEL_STUDIO_URL": "https://ls.example.org/",
    "LABEL_STUDIO_API_KEY": "ls-key-123",
    "WEBHOOK_TOKEN": "hook-token-456",
    "API_TOKEN": "api-token-789",
    "LS_PANOPTIC_DEV": "no",
    "LS_PANOPTIC_IMAGES_DIR": "/data/images",
    "LS_PANOPTIC_RESYNC_INTERVAL": "90.5",
    "LS_PANOPTIC_QUEUE": "panoptic-q",
    "LS_PANOPTIC_KEY_PREFIX": "gt.v2",
    "LS_PANOPTIC_OVERLAP": "smallest",
    "LS_PANOPTIC_STUFF": " sky, road ,,",
    "LS_PANOPTIC_BRUSH_THRESHOLD": "200",
    "LS_PANOPTIC_ANNOTATION": "annotator:7",
    "LS_PANOPTIC_USE_PREDICTIONS": "TRUE",
    "LS_PANOPTIC_ORIENTATION": "file",
    "LS_PANOPTIC_KEY": "path",
    "LS_PANOPTIC_UNKNOWN_LABELS": "skip",
    "LS_PANOPTIC_SNAPSHOT_DIR": "/tmp/snaps",
    "LS_PANOPTIC_MAX_IMAGE_PIXELS": "50_000_000",
    "LS_PANOPTIC_TIME_LIMIT": "12.5",
}
SECRETS = ("s3cret-redis", "ls-key-123", "hook-token-456", "api-token-789")


def test_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    # the service limits each image's conversion time; the core's default is no limit
    assert Settings().convert == dataclasses.replace(ConvertOptions(), time_limit=60.0)


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(FULL_ENV)
    assert settings == Settings(
        redis_url="redis://:s3cret-redis@redis.internal:6380/2",
        label_studio_url="https://ls.example.org",
        label_studio_api_key="ls-key-123",
        webhook_token="hook-token-456",
        api_token="api-token-789",
        dev_mode=False,
        images_dir=Path("/data/images"),
        resync_interval=90.5,
        queue_name="panoptic-q",
        key_prefix="gt.v2",
        convert=ConvertOptions(
            overlap="smallest",
            stuff=frozenset({"sky", "road"}),
            brush_threshold=200,
            unknown_labels="skip",
            annotation="annotator:7",
            use_predictions=True,
            orientation="file",
            key="path",
        ),
        snapshot_dir=Path("/tmp/snaps"),
        max_image_pixels=50_000_000,
        time_limit=12.5,
    )


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LS_PANOPTIC_QUEUE", "from-os-environ")
    assert Settings.from_env().queue_name == "from-os-environ"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LS_PANOPTIC_OVERLAP", "top", "must be last|first|smallest"),
        ("LS_PANOPTIC_ORIENTATION", "exif", "must be display|file"),
        ("LS_PANOPTIC_KEY", "url", "must be name|path|task"),
        ("LS_PANOPTIC_UNKNOWN_LABELS", "ignore", "must be error|skip"),
        ("LS_PANOPTIC_BRUSH_THRESHOLD", "0", "an integer from 1 to 255"),
        ("LS_PANOPTIC_BRUSH_THRESHOLD", "256", "an integer from 1 to 255"),
        ("LS_PANOPTIC_BRUSH_THRESHOLD", "12.5", "an integer from 1 to 255"),
        ("LS_PANOPTIC_MAX_IMAGE_PIXELS", "0", "an integer >= 1"),
        ("LS_PANOPTIC_TIME_LIMIT", "0", "seconds > 0"),
        ("LS_PANOPTIC_TIME_LIMIT", "-5", "seconds > 0"),
        ("LS_PANOPTIC_TIME_LIMIT", "nan", "seconds > 0"),
        ("LS_PANOPTIC_TIME_LIMIT", "inf", "seconds > 0"),
        ("LS_PANOPTIC_TIME_LIMIT", "30s", "seconds > 0"),
        ("LS_PANOPTIC_RESYNC_INTERVAL", "-1", "seconds >= 0"),
        ("LS_PANOPTIC_RESYNC_INTERVAL", "nan", "seconds >= 0"),
        ("LS_PANOPTIC_RESYNC_INTERVAL", "inf", "seconds >= 0"),
        ("LS_PANOPTIC_RESYNC_INTERVAL", "10m", "seconds >= 0"),
        ("LS_PANOPTIC_DEV", "maybe", "must be 1|0|true|false|yes|no"),
        ("LS_PANOPTIC_USE_PREDICTIONS", "2", "must be 1|0|true|false|yes|no"),
        ("LS_PANOPTIC_ANNOTATION", "newest", "latest"),
        ("LS_PANOPTIC_ANNOTATION", "annotator:bob", "annotator:"),
        ("LS_PANOPTIC_QUEUE", "my queue", "letters, digits"),
        ("LS_PANOPTIC_KEY_PREFIX", "lsp*", "letters, digits"),
        ("LABEL_STUDIO_URL", "localhost:8080", "http:// or https://"),
        ("LABEL_STUDIO_URL", "ftp://ls.example.org", "http:// or https://"),
        ("LABEL_STUDIO_URL", "http://ls.example.org:80a", "port"),
        ("LABEL_STUDIO_URL", "http://ls.example.org/?next=1", "no query"),
        ("REDIS_URL", "http://127.0.0.1:6379/0", "redis://, rediss:// or unix://"),
        ("REDIS_URL", "redis:///0", "no host"),
    ],
)
def test_bad_values_name_the_variable_and_the_accepted_values(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        *[("1", True), ("true", True), ("Yes", True), ("ON", True)],
        *[("0", False), ("FALSE", False), ("no", False), ("off", False)],
    ],
)
def test_booleans(raw: str, value: bool) -> None:
    settings = Settings.from_env({"LS_PANOPTIC_DEV": raw, "LS_PANOPTIC_USE_PREDICTIONS": raw})
    assert settings.dev_mode is value
    assert settings.convert.use_predictions is value


def test_empty_and_blank_values_count_as_unset() -> None:
    env = {name: "  " for name in FULL_ENV}
    assert Settings.from_env(env) == Settings()


def test_a_misspelt_variable_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(SettingsError, match="LS_PANOPTIC_OVERLAPS: unknown setting") as info:
        Settings.from_env({"LS_PANOPTIC_OVERLAPS": "first"})
    assert "LS_PANOPTIC_OVERLAP," in str(info.value)  # the known names are listed


def test_secrets_never_appear_in_repr_or_describe() -> None:
    settings = Settings.from_env(FULL_ENV)
    shown = repr(settings) + json.dumps(settings.describe())
    for secret in SECRETS:
        assert secret not in shown
    described = settings.describe()
    assert described["redis_url"] == "redis://:***@redis.internal:6380/2"
    assert described["webhook_token"] == described["api_token"] == "set"
    assert described["convert"]["stuff"] == ["road", "sky"]
    assert "label_studio_url='https://ls.example.org'" in repr(settings)


def test_errors_never_echo_secrets() -> None:
    with pytest.raises(SettingsError) as redis_error:
        Settings.from_env({"REDIS_URL": "http://:s3cret-redis@host:6379/0"})
    with pytest.raises(SettingsError) as ls_error:
        Settings.from_env({"LABEL_STUDIO_URL": "https://admin:s3cret-redis@ls.example.org"})
    assert "s3cret-redis" not in str(redis_error.value) + str(ls_error.value)
    assert "LABEL_STUDIO_API_KEY" in str(ls_error.value)


def test_require_tokens_fails_closed() -> None:
    with pytest.raises(SettingsError, match=r"WEBHOOK_TOKEN and API_TOKEN must be set"):
        Settings.from_env({}).require_tokens()
    with pytest.raises(SettingsError, match=r"^API_TOKEN must be set"):
        Settings.from_env({"WEBHOOK_TOKEN": "w"}).require_tokens()
    with pytest.raises(SettingsError, match=r"^WEBHOOK_TOKEN must be set"):
        Settings(webhook_token="", api_token="a").require_tokens()  # empty is missing
    Settings.from_env({"WEBHOOK_TOKEN": "w", "API_TOKEN": "a"}).require_tokens()
    Settings.from_env({"LS_PANOPTIC_DEV": "1"}).require_tokens()


def test_require_label_studio() -> None:
    with pytest.raises(SettingsError, match="LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"):
        Settings.from_env({}).require_label_studio()
    with pytest.raises(SettingsError, match=r"^LABEL_STUDIO_API_KEY must be set"):
        Settings.from_env({"LABEL_STUDIO_URL": "http://ls:8080"}).require_label_studio()
    Settings.from_env(
        {"LABEL_STUDIO_URL": "http://ls:8080", "LABEL_STUDIO_API_KEY": "k"}
    ).require_label_studio()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.dev_mode = True  # type: ignore[misc]


def test_debounce_and_config_cache_settings() -> None:
    default = Settings.from_env({})
    assert (default.debounce_ms, default.debounce_max_s, default.config_ttl) == (50, 10.0, 60.0)
    settings = Settings.from_env(
        {
            "LS_PANOPTIC_DEBOUNCE_MS": "120",
            "LS_PANOPTIC_DEBOUNCE_MAX_S": "2.5",
            "LS_PANOPTIC_CONFIG_TTL_S": "0",
        }
    )
    assert (settings.debounce_ms, settings.debounce_max_s, settings.config_ttl) == (120, 2.5, 0.0)
    assert Settings.from_env({"LS_PANOPTIC_DEBOUNCE_MS": "0"}).debounce_ms == 0  # off
    described = settings.describe()
    assert (described["debounce_ms"], described["config_ttl"]) == (120, 0.0)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LS_PANOPTIC_DEBOUNCE_MS", "-1", "an integer from 0 to 60000"),
        ("LS_PANOPTIC_DEBOUNCE_MS", "60001", "an integer from 0 to 60000"),
        ("LS_PANOPTIC_DEBOUNCE_MS", "0.05", "an integer from 0 to 60000"),
        ("LS_PANOPTIC_DEBOUNCE_MAX_S", "-2", "seconds >= 0"),
        ("LS_PANOPTIC_DEBOUNCE_MAX_S", "inf", "seconds >= 0"),
        ("LS_PANOPTIC_CONFIG_TTL_S", "1h", "seconds >= 0"),
        ("LS_PANOPTIC_CONFIG_TTL_S", "nan", "seconds >= 0"),
    ],
)
def test_bad_debounce_and_config_cache_values(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    assert str(info.value).startswith(f"{name}: ") and expected in str(info.value)


def test_the_time_limit_reaches_the_conversion_and_rq_allows_more() -> None:
    default = Settings.from_env({})
    assert default.time_limit == default.convert.time_limit == 60.0
    settings = Settings.from_env({"LS_PANOPTIC_TIME_LIMIT": "0.25"})
    assert settings.time_limit == settings.convert.time_limit == 0.25
    assert settings.describe()["time_limit"] == settings.describe()["convert"]["time_limit"]
    # copied into the conversion options whatever they say, as max_image_pixels is
    assert Settings(convert=ConvertOptions(time_limit=5), time_limit=7).convert.time_limit == 7
    # rq's timeout of a sync job stays well above the limit, the debounce wait included
    assert sync_timeout(default) == DEFAULT_SYNC_TIMEOUT
    for limit in (0.25, 60, 599, 3600, 86_400):
        for debounce_max_s in (0.0, 10.0, 600.0):
            tuned = Settings(time_limit=limit, debounce_max_s=debounce_max_s)
            assert sync_timeout(tuned) >= limit + debounce_max_s + SYNC_TIMEOUT_MARGIN
