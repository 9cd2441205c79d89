"""The model list (``/v1/models``)."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["Model", "ModelList"]


class Model(msgspec.Struct):
    id: str
    created: int = 0
    owned_by: str = ""
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct):
    data: list[Model]
    object: Literal["list"] = "list"
