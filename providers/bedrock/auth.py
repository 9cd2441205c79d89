"""How a Bedrock request is authenticated: a Bedrock API key, or AWS Signature Version 4.

A Bedrock API key is sent as ``Authorization: Bearer <key>`` (what botocore does when
``AWS_BEARER_TOKEN_BEDROCK`` is set). Otherwise each request is signed with botocore's
``SigV4Auth`` (service ``bedrock``) over the exact method, URL, headers and body that go out.

Credentials come from the provider's ``credentials`` (access keys, or a ``profile`` of the shared
AWS files), else from the environment (``AWS_ACCESS_KEY_ID``...), else from botocore's standard
chain (shared files, SSO, container and instance roles). Anything that may do I/O (files, the
instance metadata service, an STS call) runs in a thread, once, on the first request; credentials
that expire (roles, SSO) are refreshed in a thread when botocore says they are due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, EnvProvider
from botocore.exceptions import BotoCoreError
from botocore.session import Session

from proxy.errors import GatewayError

__all__ = [
    "CredentialSource",
    "CredentialsUnavailableError",
    "env_credentials",
    "sign",
    "static_credentials",
]

SERVICE = "bedrock"


class CredentialsUnavailableError(GatewayError):
    """No usable AWS credentials: the gateway's configuration, not the caller, must change; the
    next fallback may serve."""

    status = 503
    type = "provider_unavailable"
    code = "no_credentials"
    retryable = True


def static_credentials(key_id: str, secret: str, token: str | None) -> Any:
    return Credentials(key_id, secret, token or None, method="config")


def env_credentials(env: Mapping[str, str]) -> Any:
    """``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN`` read by botocore's
    own environment provider; ``None`` when unset. No I/O. With ``AWS_CREDENTIAL_EXPIRATION``
    they are refreshable: botocore reads ``env`` again when they are due."""
    return EnvProvider(environ=env).load()


class CredentialSource:
    """AWS credentials for signing: given up front, or resolved by ``resolve`` (which may block)
    in a thread on first use."""

    __slots__ = ("_creds", "_lock", "_resolve", "describe", "provider")

    def __init__(
        self,
        *,
        provider: str,
        describe: str,
        creds: Any = None,
        resolve: Callable[[], Any] | None = None,
    ) -> None:
        self._creds = creds
        self._resolve = resolve
        self._lock = asyncio.Lock()
        self.provider = provider
        self.describe = describe

    @classmethod
    def profile(cls, name: str, *, provider: str) -> CredentialSource:
        return cls(
            resolve=lambda: Session(profile=name).get_credentials(),
            provider=provider,
            describe=f"the AWS profile `{name}`",
        )

    @classmethod
    def chain(cls, *, provider: str) -> CredentialSource:
        return cls(
            resolve=lambda: Session().get_credentials(),
            provider=provider,
            describe="the standard AWS credential chain",
        )

    async def frozen(self) -> Any:
        """A consistent (access key, secret, token) snapshot, refreshed first when due."""
        creds = self._creds if self._creds is not None else await self._first()
        due = getattr(creds, "refresh_needed", None)
        if due is not None and due():
            return await self._blocking(creds.get_frozen_credentials)
        return creds.get_frozen_credentials()

    async def _first(self) -> Any:
        async with self._lock:
            if self._creds is None and self._resolve is not None:
                self._creds = await self._blocking(self._resolve)
            if self._creds is None:
                raise CredentialsUnavailableError(
                    f"Provider `{self.provider}` found no AWS credentials in {self.describe}: set "
                    "credentials.access_key_id/secret_access_key, AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY, a profile, or use a Bedrock API key."
                )
            return self._creds

    async def _blocking(self, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except BotoCoreError as exc:
            raise CredentialsUnavailableError(
                f"Provider `{self.provider}` could not get AWS credentials from "
                f"{self.describe}: {exc}"
            ) from None


def sign(
    creds: Any, region: str, *, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> dict[str, str]:
    """``headers`` plus SigV4's (``Authorization``, ``X-Amz-Date``, ``X-Amz-Security-Token``).

    ``url`` must be percent-encoded exactly as it is sent: botocore encodes the path once more
    for the canonical request, as AWS does on its side with the path it received.
    """
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(creds, SERVICE, region).add_auth(request)
    return dict(request.headers.items())
