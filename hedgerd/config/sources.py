"""Loading the configuration (pydantic-settings): :func:`load_settings` and its sources.

Sources, later wins:

1. built-in defaults: the embedded default, paper mode on two simulated venues;
2. a TOML file: ``load_settings(config_file)`` (``hedgerd --config FILE``), else ``HEDGERD_CONFIG``;
3. environment variables ``HEDGERD_*``: names are case-insensitive and ``__`` nests
   (``HEDGERD_ADMIN__PORT=9200``, ``HEDGERD_HEDGES='[...]'``); the list sections ``venues`` and
   ``hedges`` can only be replaced whole, as JSON;
4. files in the secrets dir (``secrets_dir`` argument, else ``HEDGERD_SECRETS_DIR``, else
   ``/run/secrets`` when it exists): one value per file, the file named like the variable in
   lower case (``hedgerd_admin__token``).

Unknown keys are errors everywhere: in the file, in ``HEDGERD_*`` variables and in ``hedgerd_*``
secret files (other files in the secrets dir are ignored).

Credentials never need to be in the file. The top-level ``credentials`` table, keyed by venue
name, is merged into the venue of that name (its values win over the venue's own), so::

    HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY=...             (environment)
    HEDGERD_CREDENTIALS__BINANCE_SPOT__SECRET=...
    /run/secrets/hedgerd_credentials__binance_spot__api_key    (secrets dir, one file per value)
    /run/secrets/hedgerd_credentials__binance_spot__secret
    /run/secrets/hedgerd_credentials__binance_spot__password   (only venues that need one)

set the credentials of the venue named ``binance-spot``. Venue names are matched ignoring case
and treating ``-`` and ``_`` alike, because a shell cannot export a name containing ``-``.

Entry point: :func:`load_settings` (raises :class:`~hedgerd.errors.ConfigError` with the
offending field's dotted path). Rendering, reload rules and secret masking live beside this module
(:mod:`hedgerd.config`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsError,
    TomlConfigSettingsSource,
)

from hedgerd.config.schema import (
    CONFIG_FILE_ENV,
    DEFAULT_SECRETS_DIR,
    ENV_PREFIX,
    LAYERED_SOURCES,
    RESERVED_ENV_VARS,
    SECRETS_DIR_ENV,
    Settings,
    venue_key,
)
from hedgerd.config.validation import InvalidConfigError, config_error_from_validation
from hedgerd.errors import ConfigError


def _normalize_credentials(data: dict[str, Any]) -> dict[str, Any]:
    """Key one source's ``credentials`` by :func:`venue_key`, so that sources merge per venue."""
    credentials = data.get("credentials")
    if not isinstance(credentials, Mapping):
        return data
    merged: dict[str, Any] = {}
    for name, value in credentials.items():
        key = venue_key(str(name))
        previous = merged.get(key)
        merged[key] = {**previous, **value} if isinstance(previous, Mapping) and isinstance(value, Mapping) \
            else value
    return {**data, "credentials": merged}


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env_vars = {name.lower(): value for name, value in environ.items()}

    def __call__(self) -> dict[str, Any]:
        return _normalize_credentials(super().__call__())


class SecretsDirSource(NestedSecretsSettingsSource):
    """pydantic-settings' nested secrets dir source (files named like the env variables)."""

    def __call__(self) -> dict[str, Any]:
        return _normalize_credentials(super().__call__())


class TomlFileSource(TomlConfigSettingsSource):
    """pydantic-settings' TOML file source."""

    def __call__(self) -> dict[str, Any]:
        return _normalize_credentials(super().__call__())


def _unknown_keys(names: Iterable[str], *, origin: Literal["env", "secrets"]) -> list[tuple[str, str]]:
    prefix = ENV_PREFIX.lower()
    reserved = {n.lower() for n in RESERVED_ENV_VARS} if origin == "env" else set()
    fields = list(Settings.model_fields)
    problems: list[tuple[str, str]] = []
    for name in sorted(names):
        if not name.startswith(prefix) or name in reserved:
            continue
        head = name[len(prefix):].split("__", 1)[0]
        if head in fields:
            continue
        shown = name.upper() if origin == "env" else f"secrets file {name}"
        reason = f"unknown setting {head!r} (top-level settings: {', '.join(fields)})"
        nested = next((f for f in fields if head.startswith(f + "_")), None)
        if nested is not None:
            rest = name[len(prefix) + len(nested) + 1:]
            fixed = f"{prefix}{nested}__{rest}"
            example = fixed.upper() if origin == "env" else fixed
            reason += f"; nested keys are separated by '__', e.g. {example}"
        problems.append((shown, reason))
    return problems


def toml_source(path: Path, settings_cls: type[BaseSettings] = Settings) -> TomlFileSource:
    """The TOML file at ``path`` as a source for ``settings_cls``; ConfigError naming the file if
    it is missing, not a file, unreadable or not TOML."""
    if not path.exists():
        raise ConfigError(str(path), "config file not found")
    if not path.is_file():
        raise ConfigError(str(path), "not a regular file")
    try:
        return TomlFileSource(settings_cls, toml_file=path)
    except tomllib.TOMLDecodeError as exc:
        error = ConfigError(str(path), f"invalid TOML: {exc}")
    except UnicodeDecodeError:
        error = ConfigError(str(path), "invalid TOML: the file is not UTF-8 text")
    except OSError as exc:
        error = ConfigError(str(path), f"cannot read: {exc.strerror or type(exc).__name__}")
    raise error


def secrets_source(directory: Path, settings_cls: type[BaseSettings] = Settings) -> SecretsDirSource:
    """The secrets dir ``directory`` as a source for ``settings_cls``; ConfigError naming the
    directory if it is missing or unreadable."""
    if not directory.is_dir():
        raise ConfigError(str(directory), "secrets dir not found or not a directory")
    try:
        return SecretsDirSource(SecretsSettingsSource(settings_cls, secrets_dir=directory),
                                 secrets_dir=directory, secrets_dir_missing="error")
    except SettingsError as exc:
        error = ConfigError(str(directory), f"secrets dir: {exc}")
    except OSError as exc:
        error = ConfigError(str(directory), f"cannot read secrets dir: {exc.strerror or type(exc).__name__}")
    raise error


_FIELD_IN_SETTINGS_ERROR = re.compile(r'field "(?P<field>[^"]+)"')


def load_settings(config_file: Path | str | None = None, *, env: Mapping[str, str] | None = None,
                  secrets_dir: Path | str | None = None) -> Settings:
    """Build the effective settings from defaults < TOML file < environment < secrets dir.

    ``config_file`` defaults to ``$HEDGERD_CONFIG`` (no file: the embedded default);
    ``env`` defaults to ``os.environ`` (pass a mapping to isolate tests); ``secrets_dir``
    defaults to ``$HEDGERD_SECRETS_DIR``, else ``/run/secrets`` if it exists. An explicitly
    named file or directory that does not exist is an error.

    Raises :class:`~hedgerd.errors.ConfigError` (usually :class:`InvalidConfigError`) whose
    ``path`` is the offending field's dotted path (or the file / variable name); input values
    never appear in the message.
    """
    environ = dict(os.environ if env is None else env)
    by_upper = {name.upper(): value for name, value in environ.items()}
    file_name = config_file if config_file is not None else (by_upper.get(CONFIG_FILE_ENV) or None)
    dir_name = secrets_dir if secrets_dir is not None else (by_upper.get(SECRETS_DIR_ENV) or None)

    layered: list[PydanticBaseSettingsSource] = []
    unknown: list[tuple[str, str]] = []
    if dir_name is not None:
        secrets = secrets_source(Path(dir_name))
    elif DEFAULT_SECRETS_DIR.is_dir():
        secrets = secrets_source(DEFAULT_SECRETS_DIR)
    else:
        secrets = None
    if secrets is not None:
        layered.append(secrets)
        unknown += _unknown_keys(secrets.env_vars, origin="secrets")
    env_source = MappingEnvSource(Settings, environ)
    layered.append(env_source)
    unknown += _unknown_keys(env_source.env_vars, origin="env")
    if file_name is not None:
        layered.append(toml_source(Path(file_name)))
    if unknown:
        raise InvalidConfigError(unknown)

    token = LAYERED_SOURCES.set(tuple(layered))
    try:
        return Settings()
    except ValidationError as exc:
        error: ConfigError = config_error_from_validation(exc)
    except SettingsError as exc:  # e.g. a HEDGERD_ADMIN='{not json' value
        match = _FIELD_IN_SETTINGS_ERROR.search(str(exc))
        where = "secrets dir file" if SecretsDirSource.__name__ in str(exc) else "environment variable"
        error = ConfigError(match["field"] if match else "",
                            f"cannot parse the value from the {where} (a section or list needs JSON)")
    finally:
        LAYERED_SOURCES.reset(token)
    raise error
