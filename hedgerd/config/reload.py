"""What a SIGHUP may change in place: :data:`SAFE_RELOAD_FIELDS`, :func:`reloadable_fields` and
:func:`reload_diff`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from hedgerd.config.schema import Settings
from hedgerd.config.validation import dotted_path

SAFE_RELOAD_FIELDS: tuple[str, ...] = (
    "hedges.*.threshold",
    "hedges.*.target",
    "hedges.*.min_order",
    "hedges.*.max_order",
    "hedges.*.max_position",
    "hedges.*.max_price_age",
    "hedges.*.max_delta_notional",
    "hedges.*.hedge_ratio",
    "executor.rate_limits.**",
    "executor.default_rate_limit.**",
    # not executor.order_timeout: the ccxt connector gives it to the venue at startup as the
    # window after which an unanswered order can no longer execute (Binance's recvWindow), and
    # the executor resends only after that window; a live change would let the two disagree
    "executor.max_retries",
    "executor.backoff_initial",
    "executor.backoff_max",
    "executor.max_orders_in_flight",
    "kill_switch.**",
    "logging.level",
    "risk.**",
)
"""Dotted-path patterns of fields a SIGHUP may change in place: ``*`` is one path segment,
a trailing ``**`` one or more. Everything else (mode, venues, ledger, admin, hedges added,
removed or with another underlying/instrument/venue/inventory) needs a restart."""

_HEDGE_IDENTITY = frozenset({"underlying", "venue", "symbol", "inventory"})


_Path = tuple[str | int, ...]


def _matches(pattern: str, path: _Path | str) -> bool:
    """Whether a dotted path (or path tuple) matches one :data:`SAFE_RELOAD_FIELDS` pattern."""
    want = pattern.split(".")
    have = path.split(".") if isinstance(path, str) else [str(p) for p in path]
    if want[-1] == "**":
        want = want[:-1]
        if len(have) <= len(want):
            return False
        have = have[:len(want)]
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


def reloadable_fields() -> list[str]:
    """Every setting a SIGHUP changes in place: :data:`SAFE_RELOAD_FIELDS` expanded over the
    schema down to its leaves, ``*`` standing for a list index or dict key (``hedges.*.threshold``)."""
    found: list[str] = []

    def walk(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            here = (*path, name)
            container = get_origin(info.annotation) in (list, dict)
            item = get_args(info.annotation)[-1] if container else info.annotation
            if isinstance(item, type) and issubclass(item, BaseModel):
                walk(item, (*here, "*") if container else here)
            elif any(_matches(pattern, here) for pattern in SAFE_RELOAD_FIELDS):
                found.append(".".join(here))

    walk(Settings, ())
    return found


def _diff(old: Any, new: Any, path: _Path, out: list[_Path]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(k for k in new if k not in old)]:
            if key in old and key in new:
                _diff(old[key], new[key], (*path, key), out)
            else:
                out.append((*path, key))
    elif isinstance(old, list) and isinstance(new, list):
        for i in range(max(len(old), len(new))):
            if i < len(old) and i < len(new):
                _diff(old[i], new[i], (*path, i), out)
            else:
                out.append((*path, i))
    elif old != new:
        out.append(path)


def _classify(old: Settings, new: Settings) -> tuple[list[_Path], list[_Path]]:
    changed: list[_Path] = []
    exclude = {"credentials"}  # merged into venues, compared there
    _diff(old.model_dump(exclude=exclude), new.model_dump(exclude=exclude), (), changed)
    replaced = {p[1] for p in changed
                if p[0] == "hedges" and len(p) >= 2 and (len(p) == 2 or p[2] in _HEDGE_IDENTITY)}
    applied: list[_Path] = []
    rejected: list[_Path] = []
    for path in changed:
        if path[0] == "hedges" and len(path) >= 2 and path[1] in replaced:
            rejected.append(path)
        elif any(_matches(pattern, path) for pattern in SAFE_RELOAD_FIELDS):
            applied.append(path)
        else:
            rejected.append(path)
    return applied, rejected


def reload_diff(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """Split the changes from ``old`` to ``new`` into (applied, rejected) dotted paths.

    Applied ones match :data:`SAFE_RELOAD_FIELDS`; every change to a hedge whose identity
    (underlying, venue, symbol, inventory) changed, or that was added or removed, is rejected.
    Secrets are compared by value but only their paths are returned.
    """
    applied, rejected = _classify(old, new)
    return [dotted_path(p) for p in applied], [dotted_path(p) for p in rejected]
