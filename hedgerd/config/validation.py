"""Configuration problems with dotted paths: :class:`InvalidConfigError` and the translation of
pydantic errors into it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from hedgerd.config.schema import ENV_PREFIX, FieldProblems
from hedgerd.errors import ConfigError


class InvalidConfigError(ConfigError):
    """One or more configuration problems.

    ``path`` and ``reason`` are the first problem's; ``problems`` holds all of them and the message
    lists them all, one ``path: reason`` per line.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        if not problems:
            raise ValueError("InvalidConfigError needs at least one problem")
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        path, reason = self.problems[0]
        super().__init__(path, reason)
        if len(self.problems) > 1:
            self.args = ("\n".join(f"{p}: {r}" if p else r for p, r in self.problems),)


def dotted_path(*parts: Iterable[str | int] | str) -> str:
    """Join path tuples and dotted strings into one dotted path (``hedges.0.venue``)."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out += [p for p in part.split(".") if p]
        else:
            out += [str(p) for p in part]
    return ".".join(out)


def _reason(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        return "unknown key (no such setting)"
    if kind == "missing":
        return "required setting is missing"
    message = str(error["msg"])
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    if kind == "list_type" and loc in (("venues",), ("hedges",)):
        message += (f" (from the environment give the whole list as JSON, e.g. "
                    f"{ENV_PREFIX}{str(loc[0]).upper()}='[...]'; per-item variables are not supported)")
    return message


def config_error_from_validation(exc: ValidationError) -> InvalidConfigError:
    """Translate a pydantic ValidationError into dotted-path problems (never showing input values)."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblems):
            problems += [(dotted_path(loc, rel), reason) for rel, reason in cause.problems]
        else:
            problems.append((dotted_path(loc), _reason(error)))
    return InvalidConfigError(problems or [("", "invalid configuration")])
