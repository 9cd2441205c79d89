"""The unified messages as Converse's ``system`` blocks and user/assistant turns. Pure.

``system``/``developer`` messages, wherever they are, become the top-level ``system`` blocks;
consecutive turns of one role are merged (Converse wants user and assistant to alternate), so
consecutive tool results travel in one user turn. Images named by http(s) URL arrive downloaded
in ``media`` (Converse takes image bytes or S3 locations only); ``data:`` URLs are passed on
without re-encoding. Tool results carry no ``status``: OpenAI's tool messages have no error flag,
and Bedrock takes ``status`` from Claude models only.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

import msgspec
from msgspec import UNSET, UnsetType

from providers.bedrock import wire as w
from proxy.errors import InvalidRequestError
from proxy.schemas.chat import (
    AssistantMessage,
    ChatRequest,
    ContentPart,
    DeveloperMessage,
    FilePart,
    FunctionCall,
    FunctionMessage,
    ImagePart,
    InputAudioPart,
    RefusalPart,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserMessage,
)

__all__ = ["image_urls", "turns"]

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_DOC_NAME_DROP = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")


class _CacheControl(msgspec.Struct):
    type: str = "ephemeral"
    ttl: str | None = None


_decode_cache = msgspec.json.Decoder(_CacheControl).decode
_json_value = msgspec.json.Decoder().decode


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def image_urls(req: ChatRequest) -> list[str]:
    """The http(s) image URLs the request names, to download before translating."""
    urls: list[str] = []
    for m in req.messages:
        if isinstance(m, (UserMessage, ToolMessage)) and isinstance(m.content, list):
            for part in m.content:
                if isinstance(part, ImagePart) and part.image_url.url.startswith("http"):
                    urls.append(part.image_url.url)
    return urls


def turns(
    req: ChatRequest, media: Mapping[str, tuple[str, bytes]]
) -> tuple[list[w.SystemBlock], list[w.Message]]:
    """The system blocks and the alternating turns (consecutive same-role messages merged)."""
    system: list[w.SystemBlock] = []
    out: list[w.Message] = []
    docs = _DocNames()

    def add(role: str, blocks: list[w.ContentBlock]) -> None:
        if not blocks:
            return
        if out and out[-1].role == role:
            out[-1].content.extend(blocks)
        else:
            out.append(w.Message(role=role, content=blocks))

    for i, m in enumerate(req.messages):
        at = f"messages[{i}]"
        if isinstance(m, (SystemMessage, DeveloperMessage)):
            system.extend(_system_blocks(m.content, at))
        elif isinstance(m, UserMessage):
            add("user", _user_blocks(m.content, media, docs, at))
        elif isinstance(m, AssistantMessage):
            add("assistant", _assistant_blocks(m, at))
        elif isinstance(m, ToolMessage):
            add("user", [_tool_result(m, media, at)])
        elif isinstance(m, FunctionMessage):
            raise _bad(
                "Bedrock pairs tool results by call id: send `tool` messages, not the legacy "
                "`function` role.",
                f"{at}.role",
            )
    return system, out


def _cache_point(part: TextPart) -> w.CachePoint | None:
    """A ``cache_control`` mark (Anthropic's prompt caching) as a Converse cache point after the
    part: the prefix up to it is cached."""
    if part.cache_control is UNSET:
        return None
    point = w.CachePoint(type="default")
    try:
        ttl = _decode_cache(part.cache_control).ttl
    except (msgspec.DecodeError, msgspec.ValidationError):
        return point
    if ttl in ("5m", "1h"):
        point.ttl = ttl
    return point


def _system_blocks(content: str | list[ContentPart], at: str) -> list[w.SystemBlock]:
    if isinstance(content, str):
        return [w.SystemBlock(text=content)] if content else []
    blocks: list[w.SystemBlock] = []
    for j, part in enumerate(content):
        if not isinstance(part, TextPart):
            raise _bad("A system message takes text only on Bedrock.", f"{at}.content[{j}]")
        if part.text:
            blocks.append(w.SystemBlock(text=part.text))
        point = _cache_point(part)
        if point is not None:
            blocks.append(w.SystemBlock(cache_point=point))
    return blocks


def _text_blocks(part: TextPart) -> list[w.ContentBlock]:
    # Bedrock refuses blank text blocks ("The text field in the ContentBlock object ... is blank").
    blocks = [w.ContentBlock(text=part.text)] if part.text else []
    point = _cache_point(part)
    if point is not None:
        blocks.append(w.ContentBlock(cache_point=point))
    return blocks


def _user_blocks(
    content: str | list[ContentPart],
    media: Mapping[str, tuple[str, bytes]],
    docs: _DocNames,
    at: str,
) -> list[w.ContentBlock]:
    if isinstance(content, str):
        return [w.ContentBlock(text=content)] if content else []
    blocks: list[w.ContentBlock] = []
    for j, part in enumerate(content):
        where = f"{at}.content[{j}]"
        if isinstance(part, TextPart):
            blocks.extend(_text_blocks(part))
        elif isinstance(part, ImagePart):
            blocks.append(w.ContentBlock(image=_image(part.image_url.url, media, where)))
        elif isinstance(part, FilePart):
            blocks.append(w.ContentBlock(document=_document(part, docs, where)))
        elif isinstance(part, InputAudioPart):
            source = w.MediaSource(data=part.input_audio.data)
            blocks.append(w.ContentBlock(audio=w.AudioBlock(part.input_audio.format, source)))
        elif isinstance(part, RefusalPart):
            raise _bad("A refusal part belongs to an assistant message.", where)
    return blocks


def _data_url(url: str, where: str) -> tuple[str, str]:
    """``data:<mime>;base64,<data>`` as (mime, base64 text), passed on without re-encoding."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64") or not payload:
        raise _bad("An inline file must be a base64 data URL: `data:<type>;base64,<data>`.", where)
    return head[5:-7].lower(), payload


def _image(url: str, media: Mapping[str, tuple[str, bytes]], where: str) -> w.ImageBlock:
    if url.startswith("data:"):
        mime, data = _data_url(url, where)
    elif url in media:
        raw_mime, raw = media[url]
        mime, data = raw_mime.lower(), _b64(raw)
    else:
        raise _bad(f"Bedrock needs image bytes: `{url[:100]}` was not downloaded.", where)
    fmt = _IMAGE_FORMATS.get(mime.split(";")[0].strip())
    if fmt is None:
        raise _bad(f"Bedrock takes PNG, JPEG, GIF and WebP images, not `{mime}`.", where)
    return w.ImageBlock(format=fmt, source=w.MediaSource(data=data))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class _DocNames:
    """Document names as Bedrock allows them (letters, digits, single spaces, hyphens,
    parentheses, square brackets), unique within the request."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def name(self, filename: str | UnsetType) -> str:
        stem = filename.rsplit(".", 1)[0] if isinstance(filename, str) else ""
        base = " ".join(_DOC_NAME_DROP.sub(" ", stem).split())[:180] or "document"
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base} ({n})"
        self.used.add(name)
        return name


def _document(part: FilePart, docs: _DocNames, where: str) -> w.DocumentBlock:
    ref = part.file
    if not isinstance(ref.file_data, str):
        raise _bad("Bedrock needs the file's content (`file_data`); file ids are not known.", where)
    if ref.file_data.startswith("data:"):
        mime, data = _data_url(ref.file_data, where)
        fmt = _DOCUMENT_FORMATS.get(mime)
    else:
        data = ref.file_data
        ext = ref.filename.rsplit(".", 1)[-1].lower() if isinstance(ref.filename, str) else "pdf"
        fmt = ext if ext in _DOCUMENT_FORMATS.values() else None
        mime = f".{ext}"
    if fmt is None:
        known = ", ".join(sorted(_DOCUMENT_FORMATS.values()))
        raise _bad(f"Bedrock takes documents of types {known}, not `{mime}`.", where)
    return w.DocumentBlock(format=fmt, name=docs.name(ref.filename), source=w.MediaSource(data))


def _assistant_blocks(m: AssistantMessage, at: str) -> list[w.ContentBlock]:
    blocks = _reasoning_blocks(m)
    if isinstance(m.content, str):
        if m.content:
            blocks.append(w.ContentBlock(text=m.content))
    elif isinstance(m.content, list):
        for part in m.content:
            if isinstance(part, TextPart):
                blocks.extend(_text_blocks(part))
            elif isinstance(part, RefusalPart) and part.refusal:
                blocks.append(w.ContentBlock(text=part.refusal))
    if m.function_call not in (UNSET, None):
        raise _bad("Send `tool_calls`, not the legacy `function_call`.", f"{at}.function_call")
    for k, call in enumerate(m.tool_calls or ()):
        where = f"{at}.tool_calls[{k}].function.arguments"
        block = w.ToolUseBlock(call.id, call.function.name, _arguments(call.function, where))
        blocks.append(w.ContentBlock(tool_use=block))
    return blocks


def _arguments(fn: FunctionCall, where: str) -> msgspec.Raw:
    text = fn.arguments.strip() or "{}"
    try:
        value = _json_value(text)
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise _bad("A tool call's arguments must be a JSON object for Bedrock.", where)
    return msgspec.Raw(text.encode())


def _reasoning_blocks(m: AssistantMessage) -> list[w.ContentBlock]:
    """A previous turn's thinking, sent back as it came: Claude refuses a tool-use turn whose
    thinking lost its signature. Reasoning text without a block (no signature) is not sent."""
    thinking = [b for b in m.thinking_blocks or () if b.type == "thinking"]
    blocks: list[w.ContentBlock] = []
    for b in m.thinking_blocks or ():
        if b.type == "redacted_thinking" and isinstance(b.data, str):
            content = w.ReasoningContent(redacted_content=b.data)
        elif b.type == "thinking":
            text = b.thinking if isinstance(b.thinking, str) else ""
            if not text and len(thinking) == 1 and isinstance(m.reasoning_content, str):
                # A streamed turn: the text came as reasoning_content, the signature as a block.
                text = m.reasoning_content
            content = w.ReasoningContent(reasoning_text=w.ReasoningText(text, b.signature))
        else:
            continue
        blocks.append(w.ContentBlock(reasoning_content=content))
    return blocks


def _tool_result(m: ToolMessage, media: Mapping[str, tuple[str, bytes]], at: str) -> w.ContentBlock:
    content: list[w.ToolResultContent] = []
    if isinstance(m.content, str):
        content.append(w.ToolResultContent(text=m.content))
    else:
        for j, part in enumerate(m.content):
            if isinstance(part, TextPart):
                content.append(w.ToolResultContent(text=part.text))
            elif isinstance(part, ImagePart):
                image = _image(part.image_url.url, media, f"{at}.content[{j}]")
                content.append(w.ToolResultContent(image=image))
            else:
                raise _bad("A tool result takes text and images on Bedrock.", f"{at}.content[{j}]")
    return w.ContentBlock(tool_result=w.ToolResultBlock(m.tool_call_id, content))
