"""Google Cloud access tokens for providers on Google Cloud (Vertex AI), with google-auth.

Credentials come from a service-account key (a file, or its JSON text, e.g. from a secret
variable) or, when neither is configured, from Application Default Credentials
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's user credentials, the metadata server).

google-auth's refresh is blocking (it uses ``requests``), so it runs in a worker thread, never on
the event loop; one refresh at a time, however many requests are waiting; and a token is renewed
``REFRESH_MARGIN_S`` before it expires, so no request is sent with a token about to lapse.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from proxy.config import ConfigError
from proxy.errors import GatewayError

__all__ = ["CREDENTIAL_FIELDS", "REFRESH_MARGIN_S", "GoogleCredentialsError", "GoogleToken"]

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REFRESH_MARGIN_S = 300.0
CREDENTIAL_FIELDS = frozenset({"service_account_file", "service_account_json"})


class GoogleCredentialsError(GatewayError):
    """No usable Google credentials, or the token endpoint refused them: the gateway's
    configuration is at fault, not the caller's request."""

    status = 500
    type = "provider_auth_error"
    code = "provider_credentials"
    # Another provider in the fallback chain may still serve.
    retryable = True


def load_service_account(credentials: Mapping[str, str], *, where: str) -> dict[str, Any] | None:
    """The service-account key the config names, parsed and checked; ``None`` for ADC."""
    text: str | None = None
    if credentials.get("service_account_json"):
        text = credentials["service_account_json"]
        source = f"{where}.credentials.service_account_json"
    elif credentials.get("service_account_file"):
        path = credentials["service_account_file"]
        source = f"{where}.credentials.service_account_file"
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"at {source}: cannot read `{path}`: {exc.strerror or exc}") from exc
    if text is None:
        return None
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"at {source}: not a JSON service-account key") from exc
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if not isinstance(info, dict) or info.get("type") != "service_account" or missing:
        raise ConfigError(
            f"at {source}: not a service-account key (expected type `service_account` with "
            "client_email, private_key and token_uri)"
        )
    return info


class GoogleToken:
    """A bearer token for Google Cloud APIs, cached and renewed ahead of expiry."""

    __slots__ = ("_credentials", "_info", "_lock", "project")

    def __init__(self, info: dict[str, Any] | None) -> None:
        self._info = info
        self._credentials: Any = None
        self._lock = asyncio.Lock()
        # The project the credentials belong to (a default when the config names none).
        self.project: str | None = info.get("project_id") if info else None

    async def authorization(self) -> str:
        """``Bearer <token>``, refreshed first when missing or within the margin of expiry."""
        creds = self._credentials
        if creds is None or not _fresh(creds):
            async with self._lock:
                creds = self._credentials
                if creds is None or not _fresh(creds):
                    creds = await asyncio.to_thread(self._refresh)
        return f"Bearer {creds.token}"

    def discard(self, authorization: str) -> None:
        """Forget the token of ``authorization`` (``Bearer <token>``) after the API refused it
        (revoked, or expired early): the next request fetches a new one instead of reusing it
        until its announced expiry."""
        creds = self._credentials
        if creds is not None and creds.token and authorization == f"Bearer {creds.token}":
            creds.token = None

    def _refresh(self) -> Any:
        """Runs in a worker thread: build the credentials once, then fetch a token."""
        # google-auth (with requests and cryptography) is imported on the first refresh, not
        # at start-up: most gateways never use it, and it costs ~25 MB of memory.
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
        from google.oauth2 import service_account

        try:
            creds = self._credentials
            if creds is None:
                if self._info is not None:
                    creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                        self._info, scopes=SCOPES
                    )
                else:
                    creds, project = google.auth.default(scopes=SCOPES)
                    self.project = self.project or project
            creds.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.GoogleAuthError as exc:
            # google-auth's messages name the token endpoint's answer, never the private key.
            raise GoogleCredentialsError(
                f"Google credentials could not be used: {type(exc).__name__}: {exc}"
            ) from None
        self._credentials = creds
        return creds


def _fresh(creds: Any) -> bool:
    if not creds.token:
        return False
    expiry = creds.expiry
    if expiry is None:
        return True
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return bool((expiry - now).total_seconds() > REFRESH_MARGIN_S)
