"""A fake Google OAuth 2.0 token endpoint, and service-account keys that point at it.

It answers the JWT-bearer grant the way ``oauth2.googleapis.com/token`` does, after checking the
assertion's RS256 signature against the key's public half, so a test proves the gateway signs
with the configured key.
"""

from __future__ import annotations

import json
from typing import Any

import google.auth.jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.base import Exchange, FakeServer

__all__ = ["FakeGoogleOAuth", "service_account_key"]


def service_account_key(
    token_uri: str, *, project: str = "fake-project"
) -> tuple[dict[str, Any], bytes]:
    """A service-account key (as its JSON document) with a fresh RSA key, and the public key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "fakekeyid0001",
        "private_key": pem,
        "client_email": f"gateway@{project}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    return info, public


class FakeGoogleOAuth(FakeServer):
    """``POST /token``: checks the signed assertion and hands out ``ya29.fake-<n>`` tokens."""

    def __init__(self, public_key: bytes | None = None, expires_in: int = 3599) -> None:
        super().__init__()
        self.public_key = public_key
        self.expires_in = expires_in
        self.issued: list[str] = []

    @property
    def token_uri(self) -> str:
        return f"{self.root_url}/token"

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("POST", "/token", self._token)]

    async def _token(self, ex: Exchange) -> web.StreamResponse:
        form = dict(p.split("=", 1) for p in ex.rec.body.decode().split("&") if "=" in p)
        if form.get("grant_type") != "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer":
            return self.json({"error": "unsupported_grant_type"}, 400)
        try:
            claims = (
                google.auth.jwt.decode(
                    form.get("assertion", ""),
                    certs=self.public_key,
                    verify=True,
                    # google-auth names Google's own endpoint as the audience, wherever it posts.
                    audience="https://oauth2.googleapis.com/token",
                )
                if self.public_key
                else {}
            )
        except ValueError as exc:
            body = {"error": "invalid_grant", "error_description": f"Invalid JWT Signature. {exc}"}
            return self.json(body, 400)
        if self.public_key and "cloud-platform" not in str(claims.get("scope", "")):
            return self.json({"error": "invalid_scope"}, 400)
        token = f"ya29.fake-{len(self.issued) + 1}"
        self.issued.append(token)
        return self.json(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        )


def key_json(info: dict[str, Any]) -> str:
    return json.dumps(info)
