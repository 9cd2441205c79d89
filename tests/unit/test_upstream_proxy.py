"""Upstream proxies come from the standard variables, resolved once per provider."""

from __future__ import annotations

import pytest

from providers._upstream import proxy_for


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://api.openai.com/v1", {}, None),
        ("https://api.openai.com/v1", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://api.openai.com/v1", {"https_proxy": "http://p:3128"}, "http://p:3128"),
        ("http://127.0.0.1:11434/v1", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("http://10.0.0.5/v1", {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
        ("http://localhost:8000/v1", {"HTTP_PROXY": "http://p:3128"}, None),
        ("http://127.0.0.1:8000/v1", {"HTTP_PROXY": "http://p:3128"}, None),
        ("https://x.example.com", {"ALL_PROXY": "http://p:1"}, "http://p:1"),
        (
            "https://api.openai.com/v1",
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "localhost,.openai.com"},
            None,
        ),
        ("https://api.groq.com", {"HTTPS_PROXY": "http://p", "no_proxy": "*"}, None),
        ("https://api.groq.com", {"HTTPS_PROXY": "http://p", "NO_PROXY": "openai.com"}, "http://p"),
    ],
)
def test_proxy_for(url: str, env: dict[str, str], expected: str | None) -> None:
    """HTTP(S)_PROXY/ALL_PROXY apply unless NO_PROXY names the host or a parent domain, or the
    host is loopback."""
    assert expected == proxy_for(url, env)
