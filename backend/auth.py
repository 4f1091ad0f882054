"""Shared-token authentication: checked before a request body is read or parsed.

Two tokens guard the service (both from ``Settings``):

- ``WEBHOOK_TOKEN``: what Label Studio presents on ``/webhook`` and the ML-backend routes, either
  ``Authorization: Bearer <token>`` (a project webhook's headers) or HTTP Basic with the token as
  password and any user name (the ML-backend "Basic authentication" settings).
- ``API_TOKEN``: ``Authorization: Bearer <token>`` for the snapshot/entries API; the ops dashboard
  (``/rq``) also accepts it as a Basic password so that a browser can log in.

Comparison is constant-time (``hmac.compare_digest``). A missing token is only possible in dev
mode (``create_app`` refuses otherwise): the guard then lets every request through.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from .errors import ApiError

__all__ = ["TokenGuard", "presented_token"]


def presented_token(header: str | None, *, allow_basic: bool) -> str | None:
    """The token carried by an ``Authorization`` header value, or ``None``.

    ``Bearer <token>`` gives the token as is; ``Basic base64(user:password)`` gives the password
    (only when ``allow_basic``). Anything else, or undecodable Basic credentials, gives ``None``.
    """
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer":
        return credentials or None
    if scheme == "basic" and allow_basic:
        try:
            raw = base64.b64decode(credentials, validate=True)
        except ValueError:  # binascii.Error, or text that is not even ASCII
            return None
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:  # requests' HTTPBasicAuth encodes str as latin-1
            decoded = raw.decode("latin-1")
        _user, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


@dataclass(frozen=True)
class TokenGuard:
    """Checks one token. ``variable`` names its setting in messages (never its value)."""

    variable: str
    token: str | None
    allow_basic: bool = False
    realm: str = "ls-panoptic"

    @property
    def open(self) -> bool:
        """True when no token is configured (dev mode only): nothing is checked."""
        return self.token is None

    def check(self, header: str | None) -> None:
        """Raise ``ApiError(401)`` unless ``header`` carries the token."""
        if self.token is None:
            return
        presented = presented_token(header, allow_basic=self.allow_basic)
        if presented is None:
            raise ApiError(401, f"missing credentials: {self._how()}", self._challenge())
        if not hmac.compare_digest(presented.encode("utf-8"), self.token.encode("utf-8")):
            raise ApiError(401, f"invalid credentials: {self._how()}", self._challenge())

    def _how(self) -> str:
        how = f"send 'Authorization: Bearer <{self.variable}>'"
        if self.allow_basic:
            how += f" or HTTP Basic with {self.variable} as the password"
        return how

    def _challenge(self) -> dict[str, str]:
        scheme = "Basic" if self.allow_basic else "Bearer"
        return {"WWW-Authenticate": f'{scheme} realm="{self.realm}"'}
