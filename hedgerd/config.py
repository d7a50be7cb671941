"""Configuration schema and loading (pydantic-settings).

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

Entry points: :func:`load_settings` (raises :class:`~hedgerd.errors.ConfigError` with the
offending field's dotted path), :func:`render_settings` (secrets masked), :func:`reload_diff` and
:func:`reloadable_fields` (SIGHUP), :func:`settings_notes` (remarks for ``check-config``),
:func:`secret_values` (for log redaction).
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from hedgerd.admin.token import GENERATE_HINT, admin_token_weakness
from hedgerd.errors import ConfigError
from hedgerd.models import OrderType, is_derivative, split_symbol

MASK = "**********"
"""What every secret value is rendered as."""


class _FieldProblems(ValueError):
    """Raised by validators: (path relative to the validated model, reason) pairs.

    :func:`config_error_from_validation` turns them into full dotted paths.
    """

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {reason}" if path else reason for path, reason in problems))
        self.problems = list(problems)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)


class Mode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class VenueKind(StrEnum):
    SIM = "sim"
    CCXT = "ccxt"


class VenueRole(StrEnum):
    INVENTORY = "inventory"
    HEDGE = "hedge"


class SimSettings(_Section):
    """Parameters of an in-process simulated venue (kind = "sim")."""

    seed: int = 1
    symbol: str = "BTC/USDT"
    initial_price: Decimal = Field(default=Decimal(60000), gt=0)
    volatility: float = Field(default=0.8, ge=0, description="annualised GBM volatility")
    price_interval: float = Field(default=0.25, gt=0, description="seconds between price ticks")
    spread_bps: Decimal = Field(default=Decimal(2), ge=0)
    flow_rate: float = Field(default=4.0, ge=0, description="client fills per second (Poisson)")
    flow_mean_size: Decimal = Field(default=Decimal("0.05"), gt=0, description="mean client fill, base units")
    taker_fee_bps: Decimal = Field(default=Decimal(5), ge=0)
    latency_ms: float = Field(default=5.0, ge=0)
    requests_per_second: float = Field(default=20.0, gt=0, description="venue-side rate limit")

    @field_validator("symbol")
    @classmethod
    def _unified_symbol(cls, symbol: str) -> str:
        split_symbol(symbol)
        return symbol


class VenueConfig(_Section):
    """One trading account on one exchange."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: VenueKind = VenueKind.SIM
    role: VenueRole
    exchange: str | None = Field(default=None, description="ccxt exchange id, for kind = 'ccxt'")
    sandbox: bool = False
    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    password: SecretStr | None = None
    urls: dict[str, Any] = Field(default_factory=dict, description="ccxt url overrides")
    options: dict[str, Any] = Field(default_factory=dict, description="ccxt options")
    sim_base_url: str | None = Field(default=None, description=(
        "root of a `hedgerd venue-sim` (e.g. http://127.0.0.1:8901): every ccxt url of the venue points at it"))
    sim: SimSettings = Field(default_factory=SimSettings)

    @field_validator("name")
    @classmethod
    def _no_nesting_delimiter(cls, name: str) -> str:
        if "__" in name:
            raise ValueError("must not contain '__' (the environment nesting delimiter)")
        return name

    @field_validator("sim_base_url")
    @classmethod
    def _simulator_root(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the simulator's root, http://host:port (e.g. 'http://127.0.0.1:8901')")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry a user or password (the venue's credentials sign its requests)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be the simulator's root, without a path, query or fragment "
                             "(each API section's path is added to it)")
        try:
            parts.port  # noqa: B018 -- parsing the port is what checks it
        except ValueError as exc:
            raise ValueError(f"has an invalid port: {exc}") from None
        return url.rstrip("/")

    @model_validator(mode="after")
    def _ccxt_needs_exchange(self) -> VenueConfig:
        if self.kind is VenueKind.CCXT and not self.exchange:
            raise _FieldProblems([("exchange", "kind = 'ccxt' needs an exchange id (e.g. 'binanceusdm')")])
        if self.sim_base_url is not None:
            # imported here: the connector package imports this module
            from hedgerd.connectors.sim_urls import SIMULATED_EXCHANGES

            if self.kind is not VenueKind.CCXT or self.exchange not in SIMULATED_EXCHANGES:
                raise _FieldProblems([("sim_base_url", "the simulator speaks Binance spot and USD-M: "
                                       "it needs kind = 'ccxt' and exchange = "
                                       + " or ".join(repr(e) for e in SIMULATED_EXCHANGES))])
            if self.sandbox:
                raise _FieldProblems([("sim_base_url", "sandbox = true would point the venue at the "
                                       "exchange's testnet: set one of the two")])
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # urls/options may carry credentials (ccxt accepts apiKey in options, user:pass in urls)
        for name, value in super().__repr_args__():
            yield name, (mask_secrets(value, by_key=True) if name in _SECRET_BEARING_DICTS else value)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self.api_key.get_secret_value() and self.secret
                    and self.secret.get_secret_value())


class InventorySource(_Section):
    """An inventory asset held on a venue that a hedge covers."""

    venue: str
    asset: str = Field(min_length=1)


class HedgeConfig(_Section):
    """How one underlying is hedged. Sizes are in base units of the underlying."""

    underlying: str = Field(min_length=1)
    inventory: list[InventorySource] = Field(min_length=1)
    venue: str = Field(description="hedge venue name")
    symbol: str = Field(description="hedge instrument, e.g. BTC/USDT:USDT")
    hedge_ratio: Decimal = Field(default=Decimal(1), gt=0, le=10)
    threshold: Decimal = Field(default=Decimal("0.05"), ge=0, description="|net delta| that triggers a hedge")
    target: Decimal = Field(default=Decimal(0), description="net delta to hedge back to")
    min_order: Decimal = Field(default=Decimal("0.001"), ge=0)
    max_order: Decimal = Field(default=Decimal(1), gt=0)
    max_position: Decimal = Field(default=Decimal(10), gt=0, description="max |perp position|")
    max_price_age: float = Field(default=5.0, gt=0, description="seconds; older price halts")
    max_delta_notional: Decimal = Field(default=Decimal(1_000_000), gt=0,
                                        description="|net delta notional| that halts")

    @field_validator("symbol")
    @classmethod
    def _derivative_symbol(cls, symbol: str) -> str:
        split_symbol(symbol)
        if not is_derivative(symbol):
            raise ValueError(f"the hedge instrument must be a derivative like 'BTC/USDT:USDT', "
                             f"not spot {symbol!r}")
        return symbol

    @model_validator(mode="after")
    def _sizes_consistent(self) -> HedgeConfig:
        problems: list[tuple[str, str]] = []
        if self.min_order > self.max_order:
            problems.append(("min_order", f"must not exceed max_order ({self.max_order})"))
        if self.max_order > self.max_position:
            problems.append(("max_order", f"must not exceed max_position ({self.max_position})"))
        seen: dict[tuple[str, str], int] = {}
        for j, source in enumerate(self.inventory):
            key = (source.venue, source.asset)
            if key in seen:
                problems.append((f"inventory.{j}", f"{source.asset} on {source.venue!r} is already listed "
                                                   f"as inventory.{seen[key]} (it would be counted twice)"))
            seen.setdefault(key, j)
        if problems:
            raise _FieldProblems(problems)
        return self


RATE_LIMITED_ENDPOINTS = ("create_order", "fetch_order", "cancel_order")


class RateLimitConfig(_Section):
    """A venue's token bucket: ``requests_per_second`` tokens refill a bucket of ``burst``.

    Each request takes its endpoint's weight in tokens (default 1), e.g. to mirror a venue's
    request-weight table: ``weights = { fetch_order = 2, cancel_order = 1 }``.
    """

    requests_per_second: float = Field(default=10.0, gt=0)
    burst: int = Field(default=10, ge=1)
    weights: dict[str, float] = Field(default_factory=dict, description="tokens per request, by endpoint")

    @field_validator("weights")
    @classmethod
    def _known_positive_weights(cls, v: dict[str, float]) -> dict[str, float]:
        for endpoint, weight in v.items():
            if endpoint not in RATE_LIMITED_ENDPOINTS:
                raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(RATE_LIMITED_ENDPOINTS)}")
            if not weight > 0:
                raise ValueError(f"weight of {endpoint} must be positive")
        return v

    def weight(self, endpoint: str) -> float:
        """Tokens one request to ``endpoint`` takes."""
        return self.weights.get(endpoint, 1.0)


class ExecutorConfig(_Section):
    order_type: OrderType = OrderType.MARKET
    max_slippage_bps: Decimal = Field(default=Decimal(20), ge=0, le=1000)
    order_timeout: float = Field(default=5.0, gt=0, description="seconds before the outcome is unknown")
    max_retries: int = Field(default=5, ge=0)
    backoff_initial: float = Field(default=0.2, gt=0)
    backoff_max: float = Field(default=5.0, gt=0)
    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=dict, description="per venue name")
    default_rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    client_id_prefix: str = Field(default="hgd", pattern=r"^[A-Za-z0-9]{1,8}$")
    cancel_on_shutdown: bool = True
    max_orders_in_flight: int = Field(
        default=4, ge=1, le=64,
        description="hedge orders per underlying that may be unsettled at once; each new one is sized on "
                    "net delta including the others (1: wait for each order to settle before the next)")

    @model_validator(mode="after")
    def _backoff_consistent(self) -> ExecutorConfig:
        if self.backoff_initial > self.backoff_max:
            raise _FieldProblems([("backoff_initial", f"must not exceed backoff_max ({self.backoff_max})")])
        return self

    def rate_limit_for(self, venue: str) -> RateLimitConfig:
        return self.rate_limits.get(venue, self.default_rate_limit)


class KillSwitchConfig(_Section):
    engaged: bool = False
    kill_file: Path | None = Path("var/KILL")
    cancel_open_orders_on_halt: bool = True
    max_consecutive_errors: int = Field(default=5, ge=1)
    max_realized_loss: Decimal | None = Field(default=None, gt=0, description="quote units; None = off")

    @field_validator("kill_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class AdminConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)
    token: SecretStr | None = None
    max_body_bytes: int = Field(default=4096, ge=64)

    def token_weakness(self) -> str | None:
        """Why the token must not guard live trading (see :mod:`hedgerd.admin.token`); None when
        it may, or when there is none (the HTTP controls are then disabled)."""
        token = self.token.get_secret_value() if self.token is not None else ""
        return admin_token_weakness(token) if token else None


class LedgerConfig(_Section):
    path: Path = Path("var/hedgerd.sqlite")
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    batch_max: int = Field(default=512, ge=1)
    commit_on: Literal["auto", "loop", "thread"] = Field(
        default="auto", description="where commits run: the event loop (no fsync, lowest latency) or a writer "
                                    "thread (fsyncs off the loop); auto = loop with NORMAL, thread with FULL")


class LoggingConfig(_Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class RiskConfig(_Section):
    safety_tick: float = Field(default=1.0, gt=0, description="seconds between unconditional re-evaluations")
    max_price_jump: Decimal = Field(default=Decimal("0.2"), gt=0,
                                    description="fractional jump in one tick rejected as wild")
    busy_poll: float = Field(
        default=0.0, ge=0, le=3600,
        description="seconds the event loop keeps spinning (polling without sleeping) after each venue event: "
                    "a faster reaction for a CPU core kept busy (see hedgerd.busypoll); 0 sleeps as usual")


class ReconcileConfig(_Section):
    """Startup reconciliation of the ledger against the venues, before the first hedge."""

    tolerance: Decimal = Field(default=Decimal("0.00001"), ge=0,
                               description="|ledger - venue| per position above which they disagree")
    adopt_venue_positions: bool = Field(
        default=False, description="on disagreement, journal the venue's figure instead of starting HALTED")
    adopt_on_first_start: bool = Field(
        default=True, description="a position the ledger has never seen is taken from the venue")
    unknown_open_orders: Literal["cancel", "keep"] = Field(
        default="cancel", description="open orders with our client id prefix that the ledger does not know")
    backfill_overlap: float = Field(default=10.0, ge=0, description="seconds re-fetched before the last fill")


class AdaptivePolicyConfig(_Section):
    """Parameters of the adaptive policy (cost-aware cube-root band, see :mod:`hedgerd.policy`)."""

    risk_aversion: float = Field(default=1.0, gt=0,
                                 description="penalty per unit of hedged-PnL variance, 1/quote")
    cost_bps: Decimal = Field(default=Decimal(6), ge=0, description="taker fee + half spread, bps of notional")
    order_cost: Decimal = Field(default=Decimal(0), ge=0, description="fixed cost per hedge order, quote units")
    flow_half_life: float = Field(default=300.0, gt=0, description="seconds, client flow variance EWMA")
    price_half_life: float = Field(default=300.0, gt=0, description="seconds, price variance EWMA")
    warmup: float = Field(default=60.0, ge=0, description="seconds of prices before the band is used")
    min_band: Decimal = Field(default=Decimal("0.001"), ge=0, description="base units")
    max_band: Decimal = Field(default=Decimal(5), gt=0, description="base units")
    fast_half_life: float = Field(default=60.0, gt=0,
                                  description="seconds, fast EWMAs that take over after a regime shift")
    shift_z: float = Field(default=3.0, ge=0,
                           description="standard errors between fast and slow EWMA that signal a shift")
    flow_drift: bool = Field(default=True, description="trade deeper into the band when the flow is one-sided")
    drift_half_life: float = Field(default=15.0, gt=0, description="seconds, EWMA of signed client flow")
    drift_z: float = Field(default=3.0, ge=0, description="standard errors a flow drift must exceed to count")

    @model_validator(mode="after")
    def _band_range(self) -> AdaptivePolicyConfig:
        if self.min_band > self.max_band:
            raise _FieldProblems([("min_band", f"must not exceed max_band ({self.max_band})")])
        return self


class PolicyConfig(_Section):
    """Which hedge policy decides orders: ``fixed`` (``hedges.*.threshold``) or ``adaptive``."""

    name: Literal["fixed", "adaptive"] = "fixed"
    adaptive: AdaptivePolicyConfig = Field(default_factory=AdaptivePolicyConfig)


def default_venues() -> list[VenueConfig]:
    return [
        VenueConfig(name="sim-spot", kind=VenueKind.SIM, role=VenueRole.INVENTORY,
                    sim=SimSettings(seed=1, symbol="BTC/USDT")),
        VenueConfig(name="sim-perp", kind=VenueKind.SIM, role=VenueRole.HEDGE,
                    sim=SimSettings(seed=2, symbol="BTC/USDT:USDT", flow_rate=0.0)),
    ]


def default_hedges() -> list[HedgeConfig]:
    return [
        HedgeConfig(underlying="BTC", inventory=[InventorySource(venue="sim-spot", asset="BTC")],
                    venue="sim-perp", symbol="BTC/USDT:USDT"),
    ]


# --------------------------------------------------------------------------------------------
# Top level: Settings and its cross-field checks
# --------------------------------------------------------------------------------------------

ENV_PREFIX = "HEDGERD_"
CONFIG_FILE_ENV = "HEDGERD_CONFIG"
SECRETS_DIR_ENV = "HEDGERD_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
RESERVED_ENV_VARS = frozenset({CONFIG_FILE_ENV, SECRETS_DIR_ENV})
"""``HEDGERD_*`` variables that are not settings fields (so not unknown keys)."""

CREDENTIAL_FIELDS = ("api_key", "secret", "password")
_SECRET_BEARING_DICTS = frozenset({"urls", "options"})
_SECRET_KEY = re.compile(r"key|secret|passw|token|auth|credential|signature|private", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def venue_key(name: str) -> str:
    """How venue names are compared for credentials and uniqueness: case and ``-``/``_`` ignored."""
    return name.lower().replace("-", "_")


def credential_env_var(venue: str, field: str) -> str:
    """The environment variable that sets ``field`` (api_key, secret, password) of ``venue``."""
    return f"{ENV_PREFIX}CREDENTIALS__{venue_key(venue).upper()}__{field.upper()}"


def credential_secret_file(venue: str, field: str) -> str:
    """The secrets dir file name that sets ``field`` of ``venue``."""
    return credential_env_var(venue, field).lower()


class VenueCredentials(_Section):
    """API credentials of one venue; merged into the venue of the same name (see module doc)."""

    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    password: SecretStr | None = None


# Sources that load_settings() hands to Settings.settings_customise_sources for one construction.
_LAYERED_SOURCES: contextvars.ContextVar[tuple[PydanticBaseSettingsSource, ...] | None] = (
    contextvars.ContextVar("hedgerd_layered_sources", default=None))


class Settings(BaseSettings):
    """The whole daemon configuration.

    ``Settings(...)`` validates exactly what it is given (no environment, no files), which keeps
    tests deterministic; :func:`load_settings` layers file, environment and secrets dir.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        hide_input_in_errors=True,
    )

    mode: Mode = Mode.PAPER
    venues: list[VenueConfig] = Field(default_factory=default_venues, min_length=1)
    hedges: list[HedgeConfig] = Field(default_factory=default_hedges)
    credentials: dict[str, VenueCredentials] = Field(
        default_factory=dict, description="per venue name; merged into venues (env / secrets dir)")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    kill_switch: KillSwitchConfig = Field(default_factory=KillSwitchConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    reconcile: ReconcileConfig = Field(default_factory=ReconcileConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layered = _LAYERED_SOURCES.get()
        return (init_settings,) if layered is None else (init_settings, *layered)

    @field_validator("mode", mode="before")
    @classmethod
    def _lower_mode(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cross_field_checks(self) -> Settings:
        problems = self._merge_credentials()
        problems += _venue_problems(self.venues)
        problems += _hedge_problems(self.hedges, self.venues)
        problems += _executor_problems(self.executor, self.venues)
        if self.mode is Mode.LIVE:
            problems += _live_mode_problems(self.venues, self.hedges)
            weakness = self.admin.token_weakness()
            if weakness is not None:
                problems.append(("admin.token", f"mode = 'live' refuses this admin token: it {weakness}; "
                                                f"{GENERATE_HINT}"))
        if problems:
            raise _FieldProblems(problems)
        return self

    def _merge_credentials(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        index = {venue_key(v.name): i for i, v in reversed(list(enumerate(self.venues)))}
        given_as: dict[str, str] = {}
        merged = list(self.venues)
        for name, creds in self.credentials.items():
            key = venue_key(name)
            if key in given_as:
                problems.append((f"credentials.{name}", f"same venue as credentials.{given_as[key]} "
                                                        "(names ignore case and '-'/'_'); give it once"))
                continue
            given_as[key] = name
            i = index.get(key)
            if i is None:
                problems.append((f"credentials.{name}", f"no venue named {name!r} ({_known(self.venues)})"))
                continue
            update = {f: getattr(creds, f) for f in CREDENTIAL_FIELDS if getattr(creds, f) is not None}
            if update:
                merged[i] = merged[i].model_copy(update=update)
        self.venues = merged
        return problems

    def venue(self, name: str) -> VenueConfig:
        """The venue called ``name`` (exact name); KeyError if there is none."""
        for venue in self.venues:
            if venue.name == name:
                return venue
        raise KeyError(name)


def _known(venues: Sequence[VenueConfig]) -> str:
    return "venues: " + (", ".join(repr(v.name) for v in venues) or "none")


def _venue_problems(venues: Sequence[VenueConfig]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    first: dict[str, int] = {}
    for i, venue in enumerate(venues):
        key = venue_key(venue.name)
        if key in first:
            problems.append((f"venues.{i}.name",
                             f"duplicate venue name {venue.name!r} (venues.{first[key]} is "
                             f"{venues[first[key]].name!r}; names are compared ignoring case and '-'/'_')"))
        first.setdefault(key, i)
    return problems


def _lookup(venues: Sequence[VenueConfig], name: str) -> VenueConfig | str:
    """The venue with exactly this name, or a reason why there is none."""
    for venue in venues:
        if venue.name == name:
            return venue
    similar = [v.name for v in venues if venue_key(v.name) == venue_key(name)]
    if similar:
        return f"no venue named {name!r} (did you mean {similar[0]!r}?)"
    return f"no venue named {name!r} ({_known(venues)})"


def _hedge_problems(hedges: Sequence[HedgeConfig], venues: Sequence[VenueConfig]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    underlyings: dict[str, int] = {}
    instruments: dict[tuple[str, str], int] = {}
    covered: dict[tuple[str, str], int] = {}
    for i, hedge in enumerate(hedges):
        at = f"hedges.{i}"
        first = underlyings.setdefault(hedge.underlying.upper(), i)
        if first != i:
            problems.append((f"{at}.underlying", f"duplicate underlying {hedge.underlying!r} "
                                                 f"(already hedges.{first}); one entry per underlying"))
        venue = _lookup(venues, hedge.venue)
        if isinstance(venue, str):
            problems.append((f"{at}.venue", venue))
        elif venue.role is not VenueRole.HEDGE:
            problems.append((f"{at}.venue", f"venue {venue.name!r} has role {venue.role.value!r}; "
                                            "a hedge venue needs role 'hedge'"))
        elif venue.kind is VenueKind.SIM and venue.sim.symbol != hedge.symbol:
            problems.append((f"{at}.symbol", f"instrument {hedge.symbol!r} does not exist on sim venue "
                                             f"{venue.name!r} (it trades {venue.sim.symbol!r})"))
        first = instruments.setdefault((hedge.venue, hedge.symbol), i)
        if first != i:
            problems.append((f"{at}.symbol", f"conflicts with hedges.{first} ({hedges[first].underlying}): "
                                             f"both hedge into {hedge.symbol} on {hedge.venue!r}"))
        for j, source in enumerate(hedge.inventory):
            src_at = f"{at}.inventory.{j}"
            inv = _lookup(venues, source.venue)
            if isinstance(inv, str):
                problems.append((f"{src_at}.venue", inv))
            elif inv.role is not VenueRole.INVENTORY:
                problems.append((f"{src_at}.venue", f"venue {inv.name!r} has role {inv.role.value!r}; "
                                                    "an inventory venue needs role 'inventory'"))
            elif inv.kind is VenueKind.SIM and source.asset not in split_symbol(inv.sim.symbol)[:2]:
                problems.append((f"{src_at}.asset", f"asset {source.asset!r} is not traded on sim venue "
                                                    f"{inv.name!r} (it trades {inv.sim.symbol!r})"))
            owner = covered.setdefault((source.venue, source.asset), i)
            if owner != i:
                problems.append((src_at, f"{source.asset} on {source.venue!r} is already covered by "
                                         f"hedges.{owner} ({hedges[owner].underlying}); "
                                         "it would be hedged twice"))
    return problems


def _executor_problems(executor: ExecutorConfig, venues: Sequence[VenueConfig]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for name in executor.rate_limits:
        venue = _lookup(venues, name)
        if isinstance(venue, str):
            problems.append((f"executor.rate_limits.{name}", venue))
    return problems


def _live_mode_problems(venues: Sequence[VenueConfig],
                        hedges: Sequence[HedgeConfig]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for i, venue in enumerate(venues):
        if venue.kind is not VenueKind.CCXT or venue.has_credentials:
            continue
        has_key = bool(venue.api_key and venue.api_key.get_secret_value())
        missing = "secret" if has_key else "api_key"
        problems.append((f"venues.{i}.{missing}",
                         f"mode = 'live' needs api_key and secret for ccxt venue {venue.name!r}: set "
                         f"{credential_env_var(venue.name, 'api_key')} and "
                         f"{credential_env_var(venue.name, 'secret')}, or the secrets files "
                         f"{credential_secret_file(venue.name, 'api_key')} and "
                         f"{credential_secret_file(venue.name, 'secret')}"))
    sims = {v.name for v in venues if v.kind is VenueKind.SIM}
    for i, hedge in enumerate(hedges):
        refs = [(f"hedges.{i}.venue", hedge.venue)]
        refs += [(f"hedges.{i}.inventory.{j}.venue", s.venue) for j, s in enumerate(hedge.inventory)]
        for path, name in refs:
            if name in sims:
                problems.append((path, f"mode = 'live' cannot hedge with sim venue {name!r} "
                                       "(simulated fills would drive real orders); use mode = 'paper'"))
    return problems


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

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


def _dotted(*parts: Iterable[str | int] | str) -> str:
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
        if isinstance(cause, _FieldProblems):
            problems += [(_dotted(loc, rel), reason) for rel, reason in cause.problems]
        else:
            problems.append((_dotted(loc), _reason(error)))
    return InvalidConfigError(problems or [("", "invalid configuration")])


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


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env_vars = {name.lower(): value for name, value in environ.items()}

    def __call__(self) -> dict[str, Any]:
        return _normalize_credentials(super().__call__())


class _SecretsDirSource(NestedSecretsSettingsSource):
    """pydantic-settings' nested secrets dir source (files named like the env variables)."""

    def __call__(self) -> dict[str, Any]:
        return _normalize_credentials(super().__call__())


class _TomlFileSource(TomlConfigSettingsSource):
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


def _toml_source(path: Path, settings_cls: type[BaseSettings] = Settings) -> _TomlFileSource:
    if not path.exists():
        raise ConfigError(str(path), "config file not found")
    if not path.is_file():
        raise ConfigError(str(path), "not a regular file")
    try:
        return _TomlFileSource(settings_cls, toml_file=path)
    except tomllib.TOMLDecodeError as exc:
        error = ConfigError(str(path), f"invalid TOML: {exc}")
    except UnicodeDecodeError:
        error = ConfigError(str(path), "invalid TOML: the file is not UTF-8 text")
    except OSError as exc:
        error = ConfigError(str(path), f"cannot read: {exc.strerror or type(exc).__name__}")
    raise error


def _secrets_source(directory: Path, settings_cls: type[BaseSettings] = Settings) -> _SecretsDirSource:
    if not directory.is_dir():
        raise ConfigError(str(directory), "secrets dir not found or not a directory")
    try:
        return _SecretsDirSource(SecretsSettingsSource(settings_cls, secrets_dir=directory),
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
        secrets = _secrets_source(Path(dir_name))
    elif DEFAULT_SECRETS_DIR.is_dir():
        secrets = _secrets_source(DEFAULT_SECRETS_DIR)
    else:
        secrets = None
    if secrets is not None:
        layered.append(secrets)
        unknown += _unknown_keys(secrets.env_vars, origin="secrets")
    env_source = _MappingEnvSource(Settings, environ)
    layered.append(env_source)
    unknown += _unknown_keys(env_source.env_vars, origin="env")
    if file_name is not None:
        layered.append(_toml_source(Path(file_name)))
    if unknown:
        raise InvalidConfigError(unknown)

    token = _LAYERED_SOURCES.set(tuple(layered))
    try:
        return Settings()
    except ValidationError as exc:
        error: ConfigError = config_error_from_validation(exc)
    except SettingsError as exc:  # e.g. a HEDGERD_ADMIN='{not json' value
        match = _FIELD_IN_SETTINGS_ERROR.search(str(exc))
        where = "secrets dir file" if _SecretsDirSource.__name__ in str(exc) else "environment variable"
        error = ConfigError(match["field"] if match else "",
                            f"cannot parse the value from the {where} (a section or list needs JSON)")
    finally:
        _LAYERED_SOURCES.reset(token)
    raise error


# --------------------------------------------------------------------------------------------
# Rendering (secrets masked)
# --------------------------------------------------------------------------------------------

def mask_secrets(value: Any, *, by_key: bool = False) -> Any:
    """A copy of ``value`` with every SecretStr masked; with ``by_key``, also every dict value whose
    key looks secret (key, secret, password, token, ...) and the user:password part of URLs."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Mapping):
        return {k: MASK if by_key and _SECRET_KEY.search(str(k)) and v not in (None, "")
                else mask_secrets(v, by_key=by_key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, by_key=by_key) for v in value]
    if by_key and isinstance(value, str):
        return _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", value)
    return value


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
            out[name] = _plain(item, by_key=by_key or name in _SECRET_BEARING_DICTS)
        return out
    if isinstance(value, Mapping):
        return {str(k): MASK if by_key and _SECRET_KEY.search(str(k)) and v not in (None, "")
                else _plain(v, by_key=by_key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, by_key=by_key) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", value) if by_key else value
    return value


def secret_values(settings: Settings) -> list[str]:
    """Every secret value in ``settings`` (SecretStr fields and what :func:`mask_secrets` would hide in
    venue urls/options), e.g. to register with a log redactor. Never print the result."""
    found: list[str] = []

    def collect(value: Any, by_key: bool) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                collect(getattr(value, name), by_key or name in _SECRET_BEARING_DICTS)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if by_key and _SECRET_KEY.search(str(key)) and isinstance(item, str | int) and str(item):
                    found.append(str(item))
                else:
                    collect(item, by_key)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item, by_key)
        elif by_key and isinstance(value, str):
            for match in _URL_USERINFO.finditer(value):
                found.append(match.group(0)[len(match["scheme"]):-1])

    collect(settings, False)
    return sorted({v for v in found if v})


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
    return notes


# --------------------------------------------------------------------------------------------
# Reload (SIGHUP)
# --------------------------------------------------------------------------------------------

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
    return [_dotted(p) for p in applied], [_dotted(p) for p in rejected]
