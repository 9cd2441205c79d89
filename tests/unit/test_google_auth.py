"""Google Cloud tokens: signed with the service-account key, cached, renewed before expiry."""

from __future__ import annotations

import asyncio

import pytest

from providers._google_auth import GoogleCredentialsError, GoogleToken, load_service_account
from proxy.config import ConfigError
from tests.fakes.google_oauth import FakeGoogleOAuth, key_json, service_account_key


async def _setup(expires_in: int = 3599) -> tuple[FakeGoogleOAuth, GoogleToken]:
    oauth = FakeGoogleOAuth(expires_in=expires_in)
    await oauth.start()
    info, public = service_account_key(oauth.token_uri)
    oauth.public_key = public
    return oauth, GoogleToken(
        load_service_account({"service_account_json": key_json(info)}, where="$")
    )


async def test_one_token_for_many_concurrent_requests() -> None:
    """Concurrent requests wait for one token fetch, and later ones reuse the token."""
    oauth, token = await _setup()
    try:
        got = await asyncio.gather(*(token.authorization() for _ in range(10)))
        assert set(got) == {"Bearer ya29.fake-1"}
        assert await token.authorization() == "Bearer ya29.fake-1"
        assert len(oauth.requests) == 1
        assert token.project == "fake-project"
    finally:
        await oauth.close()


async def test_token_renewed_before_it_expires() -> None:
    """A token within five minutes of expiry is replaced before it is used."""
    oauth, token = await _setup(expires_in=200)
    try:
        assert await token.authorization() == "Bearer ya29.fake-1"
        assert await token.authorization() == "Bearer ya29.fake-2"
        assert len(oauth.requests) == 2
    finally:
        await oauth.close()


async def test_a_key_the_endpoint_refuses_is_a_gateway_error() -> None:
    """A key whose signature the token endpoint rejects fails with a clear error, no key text."""
    oauth, _ = await _setup()
    try:
        info, _public = service_account_key(oauth.token_uri)  # signed by another key
        token = GoogleToken(info)
        with pytest.raises(GoogleCredentialsError) as err:
            await token.authorization()
        assert "invalid_grant" in err.value.message
        assert "PRIVATE KEY" not in err.value.message
    finally:
        await oauth.close()


def test_bad_key_documents_fail_at_start_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A missing file or a document that is not a service-account key is a ConfigError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_service_account({"service_account_file": str(tmp_path / "nope.json")}, where="$.p")
    with pytest.raises(ConfigError, match="not a service-account key"):
        load_service_account({"service_account_json": '{"type": "user"}'}, where="$.p")
    assert load_service_account({}, where="$.p") is None
