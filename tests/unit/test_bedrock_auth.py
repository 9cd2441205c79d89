"""Bedrock's credential handling: blocking work happens off the event loop, once; expiring
credentials are refreshed; missing ones are a clear 503."""

from __future__ import annotations

import asyncio
import datetime
import threading
from typing import Any

import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import ProfileNotFound

from providers.bedrock.auth import CredentialSource, CredentialsUnavailableError, env_credentials


def _soon(minutes: int) -> str:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
    return when.isoformat()


async def test_resolved_once_in_a_thread() -> None:
    """A resolver (botocore's chain) runs in a worker thread, once for concurrent requests."""
    loop_thread = threading.get_ident()
    calls: list[int] = []

    def resolve() -> Any:
        calls.append(threading.get_ident())
        return Credentials("AKIA1", "secret")

    source = CredentialSource(resolve=resolve, provider="bedrock", describe="a test chain")
    got = await asyncio.gather(*(source.frozen() for _ in range(5)))
    assert {g.access_key for g in got} == {"AKIA1"}
    assert len(calls) == 1
    assert calls[0] != loop_thread


async def test_expiring_credentials_are_refreshed_in_a_thread() -> None:
    """Credentials inside botocore's refresh window are refreshed (in a thread) before use."""
    loop_thread = threading.get_ident()
    refreshed: list[int] = []

    def refresh() -> dict[str, str]:
        refreshed.append(threading.get_ident())
        return {
            "access_key": "ASIANEW",
            "secret_key": "new",
            "token": "t2",
            "expiry_time": _soon(60),
        }

    metadata = {
        "access_key": "ASIAOLD",
        "secret_key": "old",
        "token": "t1",
        "expiry_time": _soon(5),
    }
    creds = RefreshableCredentials.create_from_metadata(metadata, refresh, "test")
    source = CredentialSource(creds=creds, provider="bedrock", describe="a role")
    first = await source.frozen()
    assert (first.access_key, first.token) == ("ASIANEW", "t2")
    again = await source.frozen()
    assert again.access_key == "ASIANEW"
    assert len(refreshed) == 1
    assert refreshed[0] != loop_thread


async def test_no_credentials_is_a_503_naming_the_source() -> None:
    """A chain that finds nothing is a 503 provider_unavailable that says where it looked."""
    source = CredentialSource(resolve=lambda: None, provider="aws", describe="the chain")
    with pytest.raises(CredentialsUnavailableError) as info:
        await source.frozen()
    assert (info.value.status, info.value.type, info.value.retryable) == (
        503,
        "provider_unavailable",
        True,
    )
    assert "Provider `aws` found no AWS credentials in the chain" in info.value.message


async def test_botocore_failures_are_a_503() -> None:
    """botocore's own errors while resolving (an unknown profile) become the same 503."""

    def resolve() -> Any:
        raise ProfileNotFound(profile="nope")

    source = CredentialSource(resolve=resolve, provider="bedrock", describe="the profile `nope`")
    with pytest.raises(CredentialsUnavailableError) as info:
        await source.frozen()
    assert "nope" in info.value.message


def test_environment_credentials() -> None:
    """The AWS_* variables are read by botocore's environment provider; none set, none found."""
    env = {"AWS_ACCESS_KEY_ID": "AKIA2", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}
    found = env_credentials(env).get_frozen_credentials()
    assert (found.access_key, found.secret_key, found.token) == ("AKIA2", "s", "t")
    assert env_credentials({}) is None
