"""``FakeOpenAI`` with endpoints the gateway only forwards (``/openai/v1``): files (upload, list,
retrieve, content), moderations and image generation, in OpenAI's wire format, recorded like
every other request."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.openai import (
    _BAD_JSON,
    MODEL_CREATED,
    FakeOpenAI,
    Recorded,
    _ApiError,
    _Call,
    _missing,
    _noise,
    _now,
    _random,
)

__all__ = ["FakeOpenAIPlatform", "platform"]


class FakeOpenAIPlatform(FakeOpenAI):
    """``files``: uploaded files by id, (filename, purpose, content)."""

    def __init__(self, api_key: str | None = "sk-fake-upstream") -> None:
        super().__init__(api_key)
        self.files: dict[str, tuple[str, str, bytes]] = {}
        self._routes.update(
            {
                ("POST", "/v1/files"): self._file_create,
                ("GET", "/v1/files"): self._file_list,
                ("POST", "/v1/moderations"): self._moderation,
                ("POST", "/v1/images/generations"): self._image,
            }
        )

    def _file_obj(self, file_id: str) -> dict[str, Any]:
        filename, purpose, content = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": MODEL_CREATED,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }

    async def _file_create(self, call: _Call) -> web.StreamResponse:
        if "file" not in call.rec.files:
            raise _missing("file")
        if "purpose" not in call.rec.form:
            raise _missing("purpose")
        file_id = "file-" + _random(24)
        filename, content = call.rec.files["file"]
        self.files[file_id] = (filename, call.rec.form["purpose"], content)
        # The file's own URLs exist from now on (unknown ids stay 404s).
        self._routes[("GET", f"/v1/files/{file_id}")] = self._file_retrieve
        self._routes[("GET", f"/v1/files/{file_id}/content")] = self._file_content
        return self._json(call, self._file_obj(file_id))

    async def _file_list(self, call: _Call) -> web.StreamResponse:
        data = [self._file_obj(i) for i in self.files]
        return self._json(call, {"object": "list", "data": data, "has_more": False})

    async def _file_retrieve(self, call: _Call) -> web.StreamResponse:
        return self._json(call, self._file_obj(call.request.path.rsplit("/", 1)[-1]))

    async def _file_content(self, call: _Call) -> web.StreamResponse:
        file_id = call.request.path.split("/")[3]
        filename, _, content = self.files[file_id]
        headers = self._headers(call, "application/octet-stream")
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return web.Response(body=content, headers=headers)

    async def _moderation(self, call: _Call) -> web.StreamResponse:
        body = _body(call.rec, "input")
        text = body["input"] if isinstance(body["input"], str) else " ".join(body["input"])
        flagged = "kill" in text
        result = {
            "flagged": flagged,
            "categories": {"violence": flagged, "hate": False},
            "category_scores": {"violence": 0.91 if flagged else 0.01, "hate": 0.0},
            "category_applied_input_types": {"violence": ["text"], "hate": ["text"]},
        }
        model = body.get("model", "omni-moderation-latest")
        return self._json(call, {"id": "modr-" + _random(8), "model": model, "results": [result]})

    async def _image(self, call: _Call) -> web.StreamResponse:
        body = _body(call.rec, "prompt")
        picture = base64.b64encode(_noise(body["prompt"], 64)).decode()
        usage = {
            "input_tokens": 10,
            "output_tokens": 272,
            "total_tokens": 282,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
        }
        return self._json(
            call, {"created": _now(), "data": [{"b64_json": picture}], "usage": usage}
        )


def _body(rec: Recorded, required: str) -> dict[str, Any]:
    """A JSON body whose ``model`` may be left out (moderations, images)."""
    if not isinstance(rec.json, dict):
        raise _ApiError(400, _BAD_JSON)
    if required not in rec.json:
        raise _missing(required)
    return rec.json


@pytest.fixture
async def platform() -> AsyncIterator[FakeOpenAIPlatform]:
    fake = await FakeOpenAIPlatform().start()
    try:
        yield fake
    finally:
        await fake.close()
