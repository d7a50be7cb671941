"""The control commands ``hedgerd status | kill | resume``: a client of the running daemon's admin API.

They read only the ``admin`` section (address and token), from the same sources as the daemon
(TOML file < ``HEDGERD_ADMIN__*`` < secrets dir), and validate nothing else: the person pressing
the kill switch must never be stopped by missing exchange credentials or by a venue setting that
would keep a daemon from starting. A bad ``admin`` section, or a config file that is missing or
not TOML, is still a clear error.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from hedgerd.admin.status_view import describe_kill, describe_resume, describe_status
from hedgerd.config import (
    CONFIG_FILE_ENV,
    DEFAULT_SECRETS_DIR,
    ENV_PREFIX,
    SECRETS_DIR_ENV,
    AdminConfig,
    config_error_from_validation,
)
from hedgerd.config.sources import MappingEnvSource, secrets_source, toml_source
from hedgerd.errors import ConfigError
from hedgerd.log import register_secrets

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
REQUEST_TIMEOUT = 5.0  # seconds; a daemon whose loop is stuck still gets SIGUSR1 (see README)

# The admin API is always reached directly: an http_proxy in the operator's shell would send the
# kill through a proxy that cannot reach this host's loopback, and hand it the admin token.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_HTTP_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)


class _AdminSources(BaseSettings):
    """Only tells the sources which settings to read: the ``admin`` section, everything else ignored."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False,
                                      extra="ignore", hide_input_in_errors=True)

    admin: AdminConfig = Field(default_factory=AdminConfig)


class _AdminSection(BaseModel):
    """What the sources' merged ``admin`` values are validated as (errors get ``admin.`` paths)."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    admin: AdminConfig = Field(default_factory=AdminConfig)


def load_admin_config(config_file: Path | str | None = None, *, env: Mapping[str, str] | None = None,
                      secrets_dir: Path | str | None = None) -> AdminConfig:
    """The ``admin`` section as the daemon would see it, reading and validating nothing else.

    Same sources and precedence as :func:`hedgerd.config.load_settings`; raises
    :class:`~hedgerd.errors.ConfigError` for a missing or unparseable file or secrets dir, and for
    an invalid ``admin`` value (with its dotted path).
    """
    environ = dict(os.environ if env is None else env)
    by_upper = {name.upper(): value for name, value in environ.items()}
    file_name = config_file if config_file is not None else (by_upper.get(CONFIG_FILE_ENV) or None)
    dir_name = secrets_dir if secrets_dir is not None else (by_upper.get(SECRETS_DIR_ENV) or None)

    sources: list[PydanticBaseSettingsSource] = []  # lowest precedence first
    if file_name is not None:
        sources.append(toml_source(Path(file_name), _AdminSources))
    sources.append(MappingEnvSource(_AdminSources, environ))
    if dir_name is not None:
        sources.append(secrets_source(Path(dir_name), _AdminSources))
    elif DEFAULT_SECRETS_DIR.is_dir():
        sources.append(secrets_source(DEFAULT_SECRETS_DIR, _AdminSources))

    merged: Any = {}
    for source in sources:
        try:
            value = source().get("admin")
        except SettingsError:  # e.g. HEDGERD_ADMIN='{not json'
            raise ConfigError("admin", "cannot parse the admin value from the environment or the secrets dir "
                                       "(a section needs JSON)") from None
        if value is None:
            continue
        merged = {**merged, **value} if isinstance(merged, dict) and isinstance(value, dict) else value
    try:
        return _AdminSection.model_validate({"admin": merged}).admin
    except ValidationError as exc:
        raise config_error_from_validation(exc) from None


def admin_base_url(admin: AdminConfig) -> str:
    """Where the daemon's admin API answers on this host (a wildcard bind is reached on loopback)."""
    host = admin.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{admin.port}"


def _answer(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def control_command(command: str, admin: AdminConfig, *, url: str | None = None, as_json: bool = False,
                    reason: str | None = None, reducing: bool = False,
                    now: Callable[[], float] = time.time) -> int:
    """Run ``status``, ``kill`` or ``resume`` against the daemon; print the answer; the exit code."""
    token = admin.token.get_secret_value() if admin.token is not None else None
    if token:
        register_secrets([token])
    if command == "status":
        method, path, body = "GET", "/status", None
    elif command == "kill":
        method, path, body = "POST", "/kill", {"reason": reason, "reducing": reducing}
    else:
        method, path, body = "POST", "/resume", {}
    if url is not None:
        try:
            _HTTP_URL.validate_python(url)
        except ValidationError:
            print(f"hedgerd: --url {url!r} is not an http(s) URL such as http://127.0.0.1:9108", file=sys.stderr)
            return EXIT_USAGE
    base = (url or admin_base_url(admin)).rstrip("/")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _DIRECT.open(request, timeout=REQUEST_TIMEOUT) as response:
            raw, code = response.read(), int(response.status)
    except urllib.error.HTTPError as exc:
        raw, code = exc.read(), int(exc.code)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        problem = f"no HTTP answer ({type(exc).__name__})" if isinstance(exc, http.client.HTTPException) else exc
        print(f"hedgerd: cannot reach the daemon at {base}: {problem}", file=sys.stderr)
        if command == "kill":
            print("hedgerd: if the daemon runs but does not answer, `kill -USR1 <pid>` halts it, or create "
                  "the kill file (kill_switch.kill_file)", file=sys.stderr)
        return EXIT_FAILURE
    answer = _answer(raw)
    ok = 200 <= code < 300
    out = sys.stdout if ok else sys.stderr
    if as_json or not isinstance(answer, dict):
        print(raw.decode(errors="replace"), file=out)
    elif command == "status" and ok:
        print(describe_status(answer, now()), file=out)
    elif command == "kill" and ok:
        print(describe_kill(answer, "reducing" if reducing else "halted"), file=out)
    elif command == "resume" and code in (200, 409):
        print(describe_resume(answer), file=out)
    else:
        print(f"hedgerd: the daemon refused ({code}): {answer.get('error', raw.decode(errors='replace'))}",
              file=out)
        if code == 401 and not token:
            print("hedgerd: no admin token was found here: set HEDGERD_ADMIN__TOKEN, the secrets file "
                  "hedgerd_admin__token, or admin.token in the --config file", file=out)
        if code in (401, 403) and command == "kill":
            print("hedgerd: `kill -USR1 <pid>` or the kill file (kill_switch.kill_file) halts it without the "
                  "token", file=out)
    return EXIT_OK if ok else EXIT_FAILURE
