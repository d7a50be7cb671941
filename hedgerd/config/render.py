"""Showing the configuration: effective settings as TOML or JSON with secrets masked (a small TOML
writer: the standard library only reads TOML), and the remarks ``check-config`` prints."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from hedgerd.admin.token import GENERATE_HINT
from hedgerd.config.masking import MASK, SECRET_BEARING_DICTS, SECRET_KEY_PATTERN, URL_USERINFO_PATTERN
from hedgerd.config.schema import Mode, Settings, SimSettings, VenueConfig, VenueKind


def _plain(value: Any, *, by_key: bool = False) -> Any:
    """TOML/JSON-ready data: models to dicts, enums to values, paths to str, secrets masked."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, BaseModel):
        out: dict[str, Any] = {}
        for name, field in type(value).model_fields.items():
            if isinstance(value, Settings) and name == "credentials":
                continue  # merged into venues
            if isinstance(value, VenueConfig) and name == "sim" and value.kind is not VenueKind.SIM \
                    and value.sim == SimSettings():
                continue  # unused outside sim venues
            item = getattr(value, name)
            if item is None:
                if field.default_factory is not None or field.default not in (None, PydanticUndefined):
                    out[name] = ""  # an explicit "off" for an optional field whose default is on
                continue
            out[name] = _plain(item, by_key=by_key or name in SECRET_BEARING_DICTS)
        return out
    if isinstance(value, Mapping):
        return {str(k): MASK if by_key and SECRET_KEY_PATTERN.search(str(k)) and v not in (None, "")
                else _plain(v, by_key=by_key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, by_key=by_key) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return URL_USERINFO_PATTERN.sub(rf"\g<scheme>{MASK}@", value) if by_key else value
    return value


def masked_settings_dict(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data with every secret masked (credentials merged into venues)."""
    data = _plain(settings)
    assert isinstance(data, dict)
    return data


def render_settings(settings: Settings, fmt: Literal["toml", "json"] = "toml") -> str:
    """The effective settings as TOML (readable back by :func:`load_settings`) or JSON.

    Every secret shows as ``**********``; decimals are exact (JSON carries them as strings).
    """
    data = masked_settings_dict(settings)
    if fmt == "json":
        return json.dumps(data, indent=2, default=str) + "\n"
    if fmt == "toml":
        return f"# effective hedgerd configuration; secrets are shown as {MASK}\n" + toml_dumps(data)
    raise ValueError(f"unknown format {fmt!r} (toml or json)")


def toml_dumps(data: Mapping[str, Any]) -> str:
    """``data`` as TOML that :func:`load_settings` reads back; ``None`` values are left out."""
    lines: list[str] = []
    _toml_table(lines, (), data, array_item=False)
    return "\n".join(lines).lstrip("\n") + "\n"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_str(text: str) -> str:
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_str(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Decimal):
        if value.is_finite():
            if value == value.to_integral_value() and abs(value) < 2**63:
                return str(int(value))
            if Decimal(repr(float(value))) == value:
                return repr(float(value))
        return _toml_str(str(value))  # exact, read back by pydantic as a Decimal
    if isinstance(value, Mapping):
        items = [f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    return _toml_str(str(value))


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _toml_table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any], *,
                array_item: bool) -> None:
    if path:
        header = ".".join(_toml_key(p) for p in path)
        lines += ["", f"[[{header}]]" if array_item else f"[{header}]"]
    for key, value in table.items():
        if value is not None and not _is_table(value) and not _is_table_array(value):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if _is_table(value):
            _toml_table(lines, (*path, key), value, array_item=False)
        elif _is_table_array(value):
            for item in value:
                _toml_table(lines, (*path, key), item, array_item=True)


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_notes(settings: Settings) -> list[str]:
    """Remarks about a valid configuration worth showing to the operator (``check-config``)."""
    notes: list[str] = []
    ccxt = [v.name for v in settings.venues if v.kind is VenueKind.CCXT]
    if settings.mode is Mode.PAPER and ccxt:
        notes.append(f"mode = 'paper' with ccxt venues ({', '.join(ccxt)}): accepted, credentials are "
                     "optional in paper mode")
    for venue in settings.venues:
        if venue.sim_base_url is not None:
            parts = urlsplit(venue.sim_base_url)
            clear = parts.scheme == "http" and not _is_loopback(parts.hostname or "")
            notes.append(f"venue {venue.name!r} trades on the exchange simulator at {venue.sim_base_url}, "
                         "not on the exchange" + (" (plain http to another host: its api key crosses the "
                                                  "network unencrypted)" if clear else ""))
    if not settings.hedges:
        notes.append("no hedges configured: nothing will be hedged")
    if settings.admin.token is None:
        notes.append("admin.token is not set: POST /kill and POST /resume are disabled")
    weakness = settings.admin.token_weakness()
    if weakness is not None:  # only paper mode gets this far with one
        notes.append(f"admin.token {weakness}: accepted in paper mode, refused in live mode; {GENERATE_HINT}")
    if settings.admin.host not in ("127.0.0.1", "::1", "localhost"):
        notes.append(f"admin.host = {settings.admin.host!r} is not loopback")
    if settings.kill_switch.engaged:
        notes.append("kill_switch.engaged = true: the daemon starts HALTED")
    if settings.risk.busy_poll > 0:
        notes.append(f"risk.busy_poll = {settings.risk.busy_poll:g}: the event loop keeps one CPU core at 100% "
                     "while venue events come less than that many seconds apart; give the process a whole core")
    lock_db = settings.ha.url or settings.ledger.url
    if settings.ha.enabled and lock_db is not None:
        where = urlsplit(lock_db.get_secret_value().strip())
        notes.append(f"ha.enabled: one instance of an active/standby pair competing for the lock on "
                     f"{where.hostname}:{where.port or 5432}{where.path}; it sends only while it leads, waits "
                     f"{settings.ha.takeover_wait:g} s after taking the lock, exits 75 when it loses it (docs/ha.md)")
    return notes
