"""Secret masking: what every secret value is shown as, and finding the values to hide."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from hedgerd.config.schema import Settings

MASK = "**********"
"""What every secret value is rendered as."""

SECRET_BEARING_DICTS = frozenset({"urls", "options"})
SECRET_KEY_PATTERN = re.compile(r"key|secret|passw|token|auth|credential|signature|private", re.IGNORECASE)
URL_USERINFO_PATTERN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def mask_secrets(value: Any, *, by_key: bool = False) -> Any:
    """A copy of ``value`` with every SecretStr masked; with ``by_key``, also every dict value whose
    key looks secret (key, secret, password, token, ...) and the user:password part of URLs."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Mapping):
        return {k: MASK if by_key and SECRET_KEY_PATTERN.search(str(k)) and v not in (None, "")
                else mask_secrets(v, by_key=by_key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, by_key=by_key) for v in value]
    if by_key and isinstance(value, str):
        return URL_USERINFO_PATTERN.sub(rf"\g<scheme>{MASK}@", value)
    return value


def secret_values(settings: Settings) -> list[str]:
    """Every secret value in ``settings`` (SecretStr fields and what :func:`mask_secrets` would hide in
    venue urls/options), e.g. to register with a log redactor. Never print the result."""
    found: list[str] = []

    def collect(value: Any, by_key: bool) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            found.append(secret)
            found.extend(_url_passwords(secret))  # a driver's message may quote the password alone
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                collect(getattr(value, name), by_key or name in SECRET_BEARING_DICTS)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if by_key and SECRET_KEY_PATTERN.search(str(key)) and isinstance(item, str | int) and str(item):
                    found.append(str(item))
                else:
                    collect(item, by_key)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item, by_key)
        elif by_key and isinstance(value, str):
            for match in URL_USERINFO_PATTERN.finditer(value):
                found.append(match.group(0)[len(match["scheme"]):-1])

    collect(settings, False)
    return sorted({v for v in found if v})


def _url_passwords(text: str) -> list[str]:
    """The password of each ``scheme://user:password@`` in ``text`` (e.g. a database URL)."""
    passwords = []
    for match in URL_USERINFO_PATTERN.finditer(text):
        userinfo = match.group(0)[len(match["scheme"]):-1]
        if ":" in userinfo:
            passwords.append(userinfo.split(":", 1)[1])
    return passwords
