"""Service settings: the ONLY place that reads the environment.

Every variable is optional (an empty value counts as unset) and is validated when read: a bad
value raises :class:`SettingsError` naming the variable and what it accepts. Secrets (the tokens
and any password in ``REDIS_URL``) never appear in ``repr()`` or in error messages; log
:meth:`Settings.describe` instead.

Booleans accept ``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any letter case).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ls_panoptic.model import DEFAULT_MAX_PIXELS, ConvertOptions
from ls_panoptic.selection import parse_policy

__all__ = ["Settings", "SettingsError"]

_T = TypeVar("_T")
_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS.update({"0": False, "false": False, "no": False, "off": False})
_PREFIX = "LS_PANOPTIC_"
_MAX_RETRIES = 25  # attempts after the first of one job (LS_PANOPTIC_RETRY_INTERVALS)
_MAX_DEBOUNCE_MS = 60_000  # LS_PANOPTIC_DEBOUNCE_MS: dispatcher.DEBOUNCE_KEY_TTL covers it
#: default of LS_PANOPTIC_TIME_LIMIT: seconds one image's conversion may take
DEFAULT_TIME_LIMIT = 60.0
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")  # queue names and key prefixes: no spaces, no glob chars


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything the backend and the worker are configured with (see ``from_env``).

    ``max_image_pixels`` is the conversion's pixel limit and ``time_limit`` its time limit per
    image: they are copied into ``convert.max_pixels`` and ``convert.time_limit``, whatever
    ``convert`` says.
    """

    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    label_studio_url: str | None = None
    label_studio_api_key: str | None = field(default=None, repr=False)
    webhook_token: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    dev_mode: bool = False
    images_dir: Path | None = None
    resync_interval: float = 600.0
    queue_name: str = "ls-panoptic"
    key_prefix: str = "lsp"
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    #: scratch folder (``LS_PANOPTIC_SNAPSHOT_DIR``) of the review page's thumbnails: photos
    #: downloaded for them go to ``review-scratch/`` in it, one temporary folder each, removed
    #: after use. Despite the name, no snapshot is written there: the backend streams them
    snapshot_dir: Path = Path("snapshots")
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    #: seconds one image's conversion may take; a slower one is that task's recorded error.
    #: rq's timeout of a sync job stays well above it (``jobqueue.sync_timeout``)
    time_limit: float = DEFAULT_TIME_LIMIT
    #: seconds between the attempts of a failed job; ``None``: ``jobqueue.DEFAULT_RETRY_INTERVALS``
    retry_intervals: tuple[int, ...] | None = None
    #: milliseconds a task must stay free of events before its sync job pulls it (0 = off)
    debounce_ms: int = 50
    #: seconds a sync job waits at most for that quiet period, from the job's start
    debounce_max_s: float = 10.0
    #: seconds a sync job trusts the stored label config before fetching it again (0 = always)
    config_ttl: float = 60.0

    def __post_init__(self) -> None:
        convert = self.convert
        if (convert.max_pixels, convert.time_limit) != (self.max_image_pixels, self.time_limit):
            convert = replace(convert, max_pixels=self.max_image_pixels, time_limit=self.time_limit)
            object.__setattr__(self, "convert", convert)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; ``environ`` defaults to ``os.environ``.

        Raises:
            SettingsError: naming the first bad variable and the values it accepts.
        """
        env = _Env(os.environ if environ is None else environ)
        default = cls()
        settings = cls(
            redis_url=env.get("REDIS_URL", _redis_url, default.redis_url),
            label_studio_url=env.get("LABEL_STUDIO_URL", _http_url, None),
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY", str, None),
            webhook_token=env.get("WEBHOOK_TOKEN", str, None),
            api_token=env.get("API_TOKEN", str, None),
            dev_mode=env.get("LS_PANOPTIC_DEV", _bool, default.dev_mode),
            images_dir=env.get("LS_PANOPTIC_IMAGES_DIR", _path, None),
            resync_interval=env.get(
                "LS_PANOPTIC_RESYNC_INTERVAL", _seconds, default.resync_interval
            ),
            queue_name=env.get("LS_PANOPTIC_QUEUE", _name, default.queue_name),
            key_prefix=env.get("LS_PANOPTIC_KEY_PREFIX", _name, default.key_prefix),
            convert=_convert_options(env),
            snapshot_dir=env.get("LS_PANOPTIC_SNAPSHOT_DIR", _path, default.snapshot_dir),
            max_image_pixels=env.get(
                "LS_PANOPTIC_MAX_IMAGE_PIXELS", _int_range(1, None), default.max_image_pixels
            ),
            time_limit=env.get("LS_PANOPTIC_TIME_LIMIT", _positive_seconds, default.time_limit),
            retry_intervals=env.get("LS_PANOPTIC_RETRY_INTERVALS", _intervals, None),
            debounce_ms=env.get(
                "LS_PANOPTIC_DEBOUNCE_MS", _int_range(0, _MAX_DEBOUNCE_MS), default.debounce_ms
            ),
            debounce_max_s=env.get("LS_PANOPTIC_DEBOUNCE_MAX_S", _seconds, default.debounce_max_s),
            config_ttl=env.get("LS_PANOPTIC_CONFIG_TTL_S", _seconds, default.config_ttl),
        )
        env.reject_unknown(_PREFIX)
        return settings

    def require_tokens(self) -> None:
        """Fail closed: the backend must not serve without both tokens, unless in dev mode.

        Raises:
            SettingsError: naming the missing variable(s).
        """
        if not self.dev_mode:
            _require(
                {"WEBHOOK_TOKEN": self.webhook_token, "API_TOKEN": self.api_token},
                "a long random string, e.g. from `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`; LS_PANOPTIC_DEV=1 turns authentication "
                "off for local development only",
            )

    def require_label_studio(self) -> None:
        """The worker needs Label Studio; the backend alone does not.

        Raises:
            SettingsError: unless ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` are set.
        """
        _require(
            {
                "LABEL_STUDIO_URL": self.label_studio_url,
                "LABEL_STUDIO_API_KEY": self.label_studio_api_key,
            },
            "the URL like http://label-studio:8080, the key from Account & Settings "
            "(a legacy token or a personal access token)",
        )

    def describe(self) -> dict[str, Any]:
        """A log-safe, JSON-ready summary: no password, tokens only as ``set``/``unset``."""
        out: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.repr and f.name != "convert"
        }
        out.update({k: str(v) for k, v in out.items() if isinstance(v, Path)})
        out["convert"] = {**asdict(self.convert), "stuff": sorted(self.convert.stuff)}
        out["redis_url"] = _redact(self.redis_url)
        for name in ("label_studio_api_key", "webhook_token", "api_token"):
            out[name] = "set" if getattr(self, name) else "unset"
        return out


def _require(values: Mapping[str, str | None], hint: str) -> None:
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise SettingsError(f"{' and '.join(missing)} must be set: {hint}")


class _Env:
    """Looks variables up; ``get`` applies a parser and wraps its ``ValueError``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._known: set[str] = set()

    def get(self, name: str, parse: Callable[[str], _T], default: _T) -> _T:
        self._known.add(name)
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None

    def reject_unknown(self, prefix: str) -> None:
        """A misspelt ``LS_PANOPTIC_*`` variable would silently fall back to its default."""
        unknown = sorted(n for n in self._environ if n.startswith(prefix) and n not in self._known)
        if unknown:
            known = ", ".join(sorted(n for n in self._known if n.startswith(prefix)))
            raise SettingsError(f"{', '.join(unknown)}: unknown setting (known: {known})")


def _convert_options(env: _Env) -> ConvertOptions:
    base = ConvertOptions()
    return ConvertOptions(
        overlap=env.get("LS_PANOPTIC_OVERLAP", _choice("last", "first", "smallest"), base.overlap),
        stuff=env.get("LS_PANOPTIC_STUFF", _label_list, base.stuff),
        brush_threshold=env.get(
            "LS_PANOPTIC_BRUSH_THRESHOLD", _int_range(1, 255), base.brush_threshold
        ),
        unknown_labels=env.get(
            "LS_PANOPTIC_UNKNOWN_LABELS", _choice("error", "skip"), base.unknown_labels
        ),
        annotation=env.get("LS_PANOPTIC_ANNOTATION", _policy, base.annotation),
        use_predictions=env.get("LS_PANOPTIC_USE_PREDICTIONS", _bool, base.use_predictions),
        orientation=env.get(
            "LS_PANOPTIC_ORIENTATION", _choice("display", "file"), base.orientation
        ),
        key=env.get("LS_PANOPTIC_KEY", _choice("name", "path", "task"), base.key),
        max_regions=env.get("LS_PANOPTIC_MAX_REGIONS", _int_range(1, None), base.max_regions),
    )


def _choice(*allowed: str) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        if raw not in allowed:
            raise ValueError(f"{raw!r} is not valid: must be {'|'.join(allowed)}")
        return raw

    return parse


def _bool(raw: str) -> bool:
    if raw.lower() in _BOOLS:
        return _BOOLS[raw.lower()]
    raise ValueError(f"{raw!r} is not a boolean: must be 1|0|true|false|yes|no|on|off")


def _int_range(low: int, high: int | None) -> Callable[[str], int]:
    accepted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not {accepted}") from None
        if value < low or (high is not None and value > high):
            raise ValueError(f"{raw!r} is not {accepted}")
        return value

    return parse


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{raw!r} is not a number of seconds >= 0 (0 turns it off)")
    return value


def _positive_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{raw!r} is not a number of seconds > 0")
    return value


def _intervals(raw: str) -> tuple[int, ...]:
    parse = _int_range(1, 86_400)
    try:
        values = tuple(parse(part.strip()) for part in raw.split(","))
    except ValueError:
        values = ()
    if not 1 <= len(values) <= _MAX_RETRIES:
        raise ValueError(
            f"{raw!r} is not a list of 1 to {_MAX_RETRIES} comma-separated seconds "
            "(integers from 1 to 86400), e.g. 10,30,120,600,1800"
        )
    return values


def _name(raw: str) -> str:
    if not _NAME.fullmatch(raw):
        raise ValueError(f"{raw!r} is not valid: use letters, digits and _ . : - only")
    return raw


def _label_list(raw: str) -> frozenset[str]:
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _policy(raw: str) -> str:
    parse_policy(raw)  # ValueError names the accepted forms
    return raw


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _http_url(raw: str) -> str:
    try:
        parts = urlsplit(raw)
        _ = parts.port
    except ValueError:
        raise ValueError("not a valid URL: bad host or port (use http://HOST:PORT)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{raw!r} is not valid: must be an http:// or https:// URL with a host")
    if parts.username or parts.password:  # the value holds a secret: do not echo it
        raise ValueError("credentials do not belong in the URL: use LABEL_STUDIO_API_KEY")
    if parts.query or parts.fragment:
        raise ValueError(f"{raw!r} is not valid: no query or fragment in the URL")
    return raw.rstrip("/")


def _redis_url(raw: str) -> str:
    # the value may hold a password: messages never echo it
    try:
        parts = urlsplit(raw)
        _ = parts.port
    except ValueError:
        raise ValueError("not a valid URL: use redis://[:PASSWORD@]HOST:PORT/DB") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"scheme {parts.scheme!r} is not valid: must be redis://, rediss:// or unix://"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("the URL has no host: use redis://[:PASSWORD@]HOST:PORT/DB")
    return raw


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}***@{netloc}").geturl()
