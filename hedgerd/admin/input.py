"""Bodies of the admin control endpoints (``POST /kill``, ``POST /resume``): schema and parsing.

Pure: :func:`parse_body` turns the raw bytes and the declared content type into a validated
model or raises :class:`BadBody` with the HTTP status and a message for the client. A control
request whose body cannot be read exactly is refused whole and changes nothing: guessing (a
``"false"`` string taken as true, the last of two duplicate keys) could turn a halt into a
partial halt.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

MAX_FIELD_NAME_CHARS = 64
"""Longest field name echoed back in an error (an unknown key is client input)."""


class KillBody(BaseModel):
    """``POST /kill``: ``{"reason": "...", "reducing": false}``, both optional, nothing else."""

    model_config = ConfigDict(strict=True, extra="forbid")

    reason: str | None = None
    reducing: bool = False


class ResumeBody(BaseModel):
    """``POST /resume``: no fields; an empty object or no body."""

    model_config = ConfigDict(strict=True, extra="forbid")


BodyModel = TypeVar("BodyModel", bound=BaseModel)


class BadBody(ValueError):
    """A body the endpoint refuses: ``status`` (4xx), ``message`` and the offending ``field``, if any."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def as_json(self) -> dict[str, Any]:
        """The error response's body."""
        data: dict[str, Any] = {"error": f"{self.message} (nothing was changed)"}
        if self.field is not None:
            data["field"] = self.field
        return data


_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
                    type(None): "null"}


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise BadBody(400, f"duplicate key {_shown(key)!r} in the body", _shown(key))
        data[key] = value
    return data


def _shown(name: str) -> str:
    return name if len(name) <= MAX_FIELD_NAME_CHARS else name[:MAX_FIELD_NAME_CHARS] + "..."


def parse_body(raw: bytes, content_type: str, charset: str | None, model: type[BodyModel]) -> BodyModel:
    """Validate ``raw`` as a JSON object of ``model``; an empty body means every field's default.

    Raises :class:`BadBody`: 415 for a content type other than ``application/json`` (UTF-8),
    400 for anything that is not exactly one JSON object of ``model``'s fields and types.
    """
    if not raw:
        return model()
    if content_type != "application/json" or (charset is not None and charset.lower() not in ("utf-8", "utf8")):
        raise BadBody(415, f"body must be JSON: send Content-Type: application/json, not {content_type!r}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody(400, "body is not valid UTF-8") from None
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except BadBody:
        raise
    except RecursionError:
        raise BadBody(400, "body is not JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer literal too long to convert
        raise BadBody(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadBody(400, f"body must be a JSON object, not {_JSON_TYPE_NAMES.get(type(data), 'a value')}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = _shown(".".join(str(part) for part in error["loc"]))
        if error["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields) or "none"
            raise BadBody(400, f"unknown field {field!r} (fields: {known})", field) from None
        raise BadBody(400, f"{field}: {error['msg']}", field) from None
