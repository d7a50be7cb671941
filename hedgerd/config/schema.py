"""The configuration schema: :class:`Settings`, its sections and the cross-field checks."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hedgerd.admin.token import GENERATE_HINT, admin_token_weakness
from hedgerd.config.ha import HaConfig, ha_problems
from hedgerd.config.masking import SECRET_BEARING_DICTS, mask_secrets
from hedgerd.models import OrderType, is_derivative, split_symbol


class FieldProblems(ValueError):
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


class SimOptionsSettings(_Section):
    """An in-process options venue (hedgerd/connectors/paper_options.py; the model is in docs/instruments.md).

    European calls and puts on the venue's base, listed at start for every expiry and strike:
    strikes on a ``strike_step`` grid around the initial price, each expiry at 08:00 UTC of
    the day ``expiry_days`` after the start (Deribit's hour). Marks are Black-76 on the forward
    ``F = S e^(basis T)`` with the smile ``vol(k, T) = atm_vol (T / 30 d)^(-term_slope)
    + skew k + curvature k^2``, ``k = ln(K/F)``.
    """

    expiry_days: list[float] = Field(default_factory=lambda: [1.0, 7.0, 28.0], min_length=1, description=(
        "days from the start to each listed expiry (rounded to 08:00 UTC of that day)"))
    strike_step: Decimal = Field(default=Decimal(2500), gt=0, description="quote units between listed strikes")
    strikes_each_side: int = Field(default=4, ge=0, le=20, description=(
        "strikes listed above and below the one nearest the initial price"))
    atm_vol: float = Field(default=0.6, gt=0, le=5, description="at-the-money implied vol at 30 days, annualised")
    skew: float = Field(default=-0.1, ge=-2, le=2, description=(
        "vol per unit of log-moneyness ln(K/F); negative: puts richer than calls"))
    curvature: float = Field(default=0.4, ge=0, le=10, description="vol per unit of log-moneyness squared")
    term_slope: float = Field(default=0.1, ge=-1, le=1, description=(
        "ATM vol scales as (T / 30 days)^(-term_slope): positive = short expiries richer"))
    basis: float = Field(default=0.05, ge=-1, le=1, description="annualised forward premium over the index")
    half_spread_vol: float = Field(default=0.01, ge=0, le=0.5, description=(
        "clients trade at the mark vol +/- this (0.01 = one vol point)"))
    flow_rate: float = Field(default=0.05, ge=0, description="client option trades per second (Poisson)")
    flow_mean_size: Decimal = Field(default=Decimal(1), gt=0, description="mean client trade, contracts")
    initial_trades: int = Field(default=0, ge=0, le=100_000, description=(
        "client trades booked at start, as one batch of fills (the book a desk carries into the day)"))
    client_buy_probability: float = Field(default=0.6, ge=0, le=1, description=(
        "probability that a client buys (the desk sells): above 0.5 leaves the desk short gamma"))
    moneyness_width: float = Field(default=0.1, gt=0, description=(
        "client trades pick strikes with weight exp(-(k / width)^2): most flow near the money"))
    quote_interval: float = Field(default=1.0, gt=0, le=60, description="seconds between option quote rounds")
    collateral: Decimal = Field(default=Decimal(10), ge=0, description=(
        "account equity at start, in the settle currency (fetch_collateral adds premiums and marks)"))


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
    maker_fee_bps: Decimal = Field(default=Decimal(2), ge=-10, description=(
        "hedge venue: fee on fills of our resting (post-only) orders; negative is a rebate"))
    market_volume: Decimal = Field(default=Decimal(1), gt=0, description=(
        "hedge venue: base units the rest of the market trades per second (half each side), the flow "
        "that fills resting orders (docs/passive.md)"))
    touch_depth: Decimal = Field(default=Decimal(2), ge=0, description=(
        "hedge venue: mean base units already queued at the touch when our resting order joins it"))
    sweep_probability: float = Field(default=0.1, ge=0, le=1, description=(
        "hedge venue: chance per price tick that a side's flow sweeps beyond the touch it started at"))
    adverse_selection_bps: Decimal = Field(default=Decimal("0.5"), ge=0, le=100, description=(
        "hedge venue: the mid moves this far against a resting order the moment it fills (docs/passive.md)"))
    latency_ms: float = Field(default=5.0, ge=0)
    requests_per_second: float = Field(default=20.0, gt=0, description="venue-side rate limit")
    fee_currency: str | None = Field(default=None, pattern=r"^[A-Z0-9]{2,10}$", description=(
        "hedge venue: charge fees in this third currency (e.g. BNB) instead of the settle currency"))
    fee_currency_price: Decimal | None = Field(default=None, gt=0, description=(
        "price of fee_currency in the quote currency; fixed, streamed as FEE/QUOTE by the hedge venue"))
    fee_currency_discount: Decimal = Field(default=Decimal(0), ge=0, lt=1, description=(
        "fraction off the taker fee when paid in fee_currency (Binance: 0.1 on USD-M futures with BNB)"))
    funding_interval: float = Field(default=28_800.0, ge=60, description=(
        "hedge venue: seconds between funding payments, at multiples of it in epoch time (Binance: 8 h, "
        "00:00/08:00/16:00 UTC)"))
    funding_interest_rate: Decimal = Field(default=Decimal("0.0001"), ge=-1, le=1, description=(
        "hedge venue: interest rate I of the funding rate P + clamp(I - P, +-0.05 %) per interval "
        "(Binance: 0.0001); with funding_premium_std = 0 it is the rate"))
    funding_premium_std: float = Field(default=0.0006, ge=0, le=0.1, description=(
        "hedge venue: stationary standard deviation of the perpetual's premium P (an Ornstein-Uhlenbeck "
        "process, one hour mean reversion, averaged over the interval); 0: no premium"))
    funding: bool = Field(default=True, description=(
        "hedge venue: charge funding on the perpetual position (hedgerd.sim.funding; README 'Hedging cost')"))

    margin_balance: Decimal = Field(default=Decimal(1_000_000), gt=0, description=(
        "hedge venue: the paper account's cross-margin wallet in the settle currency at start (BTC on an inverse "
        "perpetual such as BTC/USD:BTC) "
        "(hedgerd/connectors/paper_margin.py)"))
    maintenance_margin_rate: Decimal = Field(default=Decimal("0.004"), gt=0, lt=1, description=(
        "hedge venue: maintenance margin as a fraction of the position's notional at the mark "
        "(Binance USD-M BTCUSDT's first tier: 0.004); the position is liquidated when the margin balance "
        "falls to it"))
    contract_size: Decimal | None = Field(default=None, gt=0, description=(
        "hedge venue: one contract in base units (linear) or quote units (inverse, settle = base as in "
        "'BTC/USD:BTC'); unset = 1 for linear, 10 for inverse (Deribit's BTC-PERPETUAL)"))
    options: SimOptionsSettings | None = Field(default=None, description=(
        "inventory venue: list options on the base instead of trading spot; symbol gives the options' "
        "quote and settle currency ('BTC/USD:BTC' = coin-settled like Deribit, 'BTC/USDC:USDC' = quote-settled)"))

    @field_validator("symbol")
    @classmethod
    def _unified_symbol(cls, symbol: str) -> str:
        split_symbol(symbol)
        return symbol

    @model_validator(mode="after")
    def _fee_currency_priced(self) -> SimSettings:
        if self.fee_currency is not None and self.fee_currency_price is None:
            raise ValueError("fee_currency needs fee_currency_price (its price in the quote currency)")
        if self.options is not None and not is_derivative(self.symbol):
            raise ValueError("an options venue's symbol names its settle currency: 'BTC/USD:BTC' "
                             "(coin-settled) or 'BTC/USDC:USDC' (quote-settled)")
        return self


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
    price_symbols: list[str] = Field(default_factory=list, description=(
        "kind = 'ccxt': more unified symbols whose prices the venue streams, no fills: a fee currency's "
        "conversion, e.g. 'BNB/USDT' or 'BNB/USDT:USDT' for fees paid in BNB"))

    @field_validator("price_symbols")
    @classmethod
    def _unified_price_symbols(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            split_symbol(symbol)
        return symbols

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
            raise FieldProblems([("exchange", "kind = 'ccxt' needs an exchange id (e.g. 'binanceusdm')")])
        if self.sim_base_url is not None:
            # imported here: the connector package imports this module
            from hedgerd.connectors.ccxt.urls import SIM_URL_TABLES

            if self.kind is not VenueKind.CCXT or self.exchange not in SIM_URL_TABLES:
                raise FieldProblems([("sim_base_url", "the simulator speaks Binance spot and USD-M and "
                                       "Deribit: it needs kind = 'ccxt' and exchange = "
                                       + " or ".join(repr(e) for e in SIM_URL_TABLES))])
            if self.sandbox:
                raise FieldProblems([("sim_base_url", "sandbox = true would point the venue at the "
                                       "exchange's testnet: set one of the two")])
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # urls/options may carry credentials (ccxt accepts apiKey in options, user:pass in urls)
        for name, value in super().__repr_args__():
            yield name, (mask_secrets(value, by_key=True) if name in SECRET_BEARING_DICTS else value)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self.api_key.get_secret_value() and self.secret
                    and self.secret.get_secret_value())


ALL_INSTRUMENTS = "*"
"""``InventorySource.asset`` that stands for every derivative on the venue whose underlying is the hedge's."""


class InventorySource(_Section):
    """An inventory asset held on a venue that a hedge covers."""

    venue: str
    asset: str = Field(min_length=1, description=(
        "a coin (the spot balance, e.g. 'BTC'), one instrument's unified symbol (e.g. 'BTC/USD:BTC-261227-100000-C'), "
        "or '*': every option, future and perpetual on the venue whose underlying is the hedge's underlying"))

    @field_validator("asset")
    @classmethod
    def _known_form(cls, asset: str) -> str:
        if asset != ALL_INSTRUMENTS and "*" in asset:
            raise ValueError("'*' stands alone (every instrument of the hedge's underlying), not in a pattern")
        return asset

    @property
    def all_instruments(self) -> bool:
        """True for ``asset = "*"``."""
        return self.asset == ALL_INSTRUMENTS


class HedgeConfig(_Section):
    """How one underlying is hedged. Sizes are in base units of the underlying."""

    underlying: str = Field(min_length=1)
    inventory: list[InventorySource] = Field(min_length=1)
    venue: str = Field(description="hedge venue name")
    symbol: str = Field(description=(
        "hedge instrument: a linear perpetual (BTC/USDT:USDT) or an inverse one (BTC/USD:BTC); "
        "sizes stay in base units"))
    hedge_ratio: Decimal = Field(default=Decimal(1), gt=0, le=10)
    threshold: Decimal = Field(default=Decimal("0.05"), ge=0, description="|net delta| that triggers a hedge")
    target: Decimal = Field(default=Decimal(0), description="net delta to hedge back to")
    min_order: Decimal = Field(default=Decimal("0.001"), ge=0)
    max_order: Decimal = Field(default=Decimal(1), gt=0)
    max_position: Decimal = Field(default=Decimal(10), gt=0, description="max |perp position|")
    max_price_age: float = Field(default=5.0, gt=0, description="seconds; older price halts")
    max_delta_notional: Decimal = Field(default=Decimal(1_000_000), gt=0,
                                        description="|net delta notional| that halts")
    include_collateral: bool = Field(default=False, description=(
        "count the inventory venues' account equity in the underlying (coin-margined collateral) as long delta"))
    greeks_source: Literal["model", "venue"] = Field(default="model", description=(
        "options' delta and gamma from our own Black-76 on the quote's mark IV and forward (model) or as the "
        "venue publishes them (venue); the other one is the cross-check"))
    max_greeks_age: float = Field(default=10.0, gt=0, description=(
        "seconds; an older option quote on a held option halts trading, like a stale price"))
    max_greeks_disagreement: Decimal | None = Field(default=None, gt=0, description=(
        "|book delta by model - by venue| in base units beyond which trading halts; None = off"))

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
        every = {s.venue: j for j, s in reversed(list(enumerate(self.inventory))) if s.all_instruments}
        for j, source in enumerate(self.inventory):
            key = (source.venue, source.asset)
            if key in seen:
                problems.append((f"inventory.{j}", f"{source.asset} on {source.venue!r} is already listed "
                                                   f"as inventory.{seen[key]} (it would be counted twice)"))
            elif not source.all_instruments and is_derivative(source.asset) and source.venue in every:
                problems.append((f"inventory.{j}", f"{source.asset} on {source.venue!r} is already covered by "
                                                   f"inventory.{every[source.venue]} ('*': every instrument "
                                                   "of the underlying; it would be counted twice)"))
            seen.setdefault(key, j)
        if problems:
            raise FieldProblems(problems)
        return self


RATE_LIMITED_ENDPOINTS = ("create_order", "fetch_order", "cancel_order", "dead_man_switch")


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
    order_type: OrderType = Field(default=OrderType.MARKET, description=(
        "market, limit_ioc, or passive: post-only limits at the touch, repriced as the book moves, "
        "escalated to IOC on urgency or timeout (docs/passive.md)"))
    passive_timeout: float = Field(default=5.0, gt=0, description=(
        "passive: seconds an intent may rest before what is left is sent as an IOC"))
    passive_urgency: Decimal = Field(default=Decimal("1.5"), ge=1, le=100, description=(
        "passive: send what is left as an IOC once |net delta| (orders in flight left out) exceeds this "
        "multiple of the policy's band"))
    passive_max_reprices: int = Field(default=30, ge=0, le=999, description=(
        "passive: child orders one intent may place after its first before what is left goes out as an IOC"))
    passive_check_interval: float = Field(default=1.0, gt=0, le=60, description=(
        "passive: seconds between looks at the book (reprice, escalate) while a child rests"))
    passive_poll_interval: float = Field(default=5.0, gt=0, le=300, description=(
        "passive: seconds between look-ups of a resting child by client id when no stream update came"))
    max_slippage_bps: Decimal = Field(default=Decimal(20), ge=0, le=1000)
    order_timeout: float = Field(default=5.0, gt=0, description="seconds before the outcome is unknown")
    max_retries: int = Field(default=5, ge=0)
    backoff_initial: float = Field(default=0.2, gt=0)
    backoff_max: float = Field(default=5.0, gt=0)
    rate_limits: dict[str, RateLimitConfig] = Field(default_factory=dict, description="per venue name")
    default_rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    client_id_prefix: str = Field(default="hgd", pattern=r"^[A-Za-z0-9]{1,8}$")
    cancel_on_shutdown: bool = True
    dead_man_switch: Literal["off", "auto"] = Field(
        default="auto",
        description="the venue's dead-man switch (Binance USD-M: countdownCancelAll per hedge symbol): auto arms it "
                    "on every hedge venue that offers one, so the venue cancels the open orders of an instance that "
                    "crashed, hung or was fenced within dead_man_switch_window; off never sets it (docs/ha.md)")
    dead_man_switch_window: float = Field(
        default=10.0, ge=5.0, le=3600.0,
        description="seconds the venue waits for the next refresh before it cancels the hedge symbols' open orders; "
                    "refreshed every third of it, each refresh one request per symbol (dead_man_switch weight)")
    max_orders_in_flight: int = Field(
        default=4, ge=1, le=64,
        description="hedge orders per underlying that may be unsettled at once; each new one is sized on "
                    "net delta including the others (1: wait for each order to settle before the next)")

    @model_validator(mode="after")
    def _backoff_consistent(self) -> ExecutorConfig:
        if self.order_type is OrderType.POST_ONLY:
            raise FieldProblems([("order_type", "post_only is a child order of passive; use passive")])
        if self.backoff_initial > self.backoff_max:
            raise FieldProblems([("backoff_initial", f"must not exceed backoff_max ({self.backoff_max})")])
        return self

    def rate_limit_for(self, venue: str) -> RateLimitConfig:
        return self.rate_limits.get(venue, self.default_rate_limit)


class KillSwitchConfig(_Section):
    engaged: bool = False
    kill_file: Path | None = Path("var/KILL")
    cancel_open_orders_on_halt: bool = True
    max_consecutive_errors: int = Field(default=5, ge=1)
    max_realized_loss: Decimal | None = Field(default=None, gt=0, description="quote units; None = off")
    min_liquidation_distance: Decimal | None = Field(
        default=None, gt=0, lt=1,
        description="REDUCING (orders that would grow the hedge position refused) when the hedge position's "
                    "liquidation price is closer to the mark than this fraction of it (e.g. 0.1), as polled "
                    "every risk.liquidation_poll_interval; None = off")

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


LEDGER_URL_SCHEMES = ("postgresql", "postgres")


class LedgerConfig(_Section):
    path: Path = Field(default=Path("var/hedgerd.sqlite"),
                       description="the SQLite ledger file (the embedded default); unused when url is set")
    url: SecretStr | None = Field(
        default=None,
        description="a PostgreSQL ledger instead of the SQLite file: postgresql://user[:password]@host[:port]/database"
                    "[?sslmode=...] (psycopg, extra 'postgres'). A secret, masked in logs and status: give it from "
                    "the secrets dir (hedgerd_ledger__url) or HEDGERD_LEDGER__URL rather than in the file")
    synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL", description="SQLite: NORMAL survives a process crash, FULL also power loss (fsync per "
                                      "commit); PostgreSQL always commits durably (synchronous_commit = on)")
    batch_max: int = Field(default=512, ge=1, description="writes per transaction at most (group commit)")
    commit_on: Literal["auto", "loop", "thread"] = Field(
        default="auto", description="where commits run: the event loop (no fsync, lowest latency) or a writer "
                                    "thread (fsyncs off the loop); auto = loop with NORMAL, thread with FULL, "
                                    "always thread on PostgreSQL (each commit waits for the server)")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # the message never repeats the value: it may hold a password
        try:
            parts = urlsplit(value.get_secret_value().strip())
            parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
        except ValueError:
            raise ValueError("not a valid URL; expected postgresql://user@host[:port]/database") from None
        if parts.scheme not in LEDGER_URL_SCHEMES:
            raise ValueError("must be a postgresql:// URL (leave it unset for the SQLite file in ledger.path)")
        if not parts.path.strip("/"):
            raise ValueError("names no database; expected postgresql://user@host[:port]/database")
        return SecretStr(value.get_secret_value().strip())

    def location(self) -> Path | str:
        """Where the ledger is: the PostgreSQL URL (with its password: never log it) or the SQLite path."""
        return self.url.get_secret_value() if self.url is not None else self.path


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
    liquidation_poll_interval: float = Field(
        default=10.0, gt=0, le=3600,
        description="seconds between polls of each hedge position's liquidation price and margin ratio "
                    "(ccxt fetch_positions: one venue request per hedge each time)")
    pnl_method: Literal["average", "fifo"] = Field(
        default="average",
        description="how the hedge leg's closes are matched for realized PnL in /status and `hedgerd status`: "
                    "'average' (average cost) or 'fifo' (oldest lots first); both are tracked and exported "
                    "(hedgerd_hedge_realized_pnl{method}), so a reload switches at once; docs/pnl.md")


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
    funding_poll_interval: float = Field(default=300.0, gt=0, le=86_400, description=(
        "seconds between fetches of the hedge venues' funding payments (hedgerd.funding; the first at start "
        "backfills the downtime)"))
    funding_backfill_overlap: float = Field(default=28_800.0, ge=0, description=(
        "seconds re-fetched before the last journaled funding payment (a venue may list one late; "
        "repeats are ignored by venue and payment id)"))


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
            raise FieldProblems([("min_band", f"must not exceed max_band ({self.max_band})")])
        return self


class GammaPolicyConfig(_Section):
    """Parameters of the gamma policy: the adaptive band (``[policy.adaptive]``, whose ``cost_bps`` and
    ``risk_aversion`` are also the Whalley-Wilmott band's ``c`` and ``a``) combined with the book's gamma
    (see :mod:`hedgerd.policy.gamma`)."""

    negligible_gamma: float = Field(default=1e-9, ge=0, description=(
        "|book gamma| (base units per unit of price) at or below which the band is the adaptive one unchanged"))


class PolicyConfig(_Section):
    """Which hedge policy decides orders: ``fixed`` (``hedges.*.threshold``), ``adaptive`` or ``gamma``."""

    name: Literal["fixed", "adaptive", "gamma"] = "fixed"
    adaptive: AdaptivePolicyConfig = Field(default_factory=AdaptivePolicyConfig)
    gamma: GammaPolicyConfig = Field(default_factory=GammaPolicyConfig)


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


ENV_PREFIX = "HEDGERD_"
CONFIG_FILE_ENV = "HEDGERD_CONFIG"
SECRETS_DIR_ENV = "HEDGERD_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
RESERVED_ENV_VARS = frozenset({CONFIG_FILE_ENV, SECRETS_DIR_ENV})
"""``HEDGERD_*`` variables that are not settings fields (so not unknown keys)."""

CREDENTIAL_FIELDS = ("api_key", "secret", "password")


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
    """API credentials of one venue; merged into the venue of the same name (see :mod:`hedgerd.config.sources`)."""

    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    password: SecretStr | None = None


# Sources that load_settings() hands to Settings.settings_customise_sources for one construction.
LAYERED_SOURCES: contextvars.ContextVar[tuple[PydanticBaseSettingsSource, ...] | None] = (
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
    ha: HaConfig = Field(default_factory=HaConfig, description="active/standby leadership (docs/ha.md)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layered = LAYERED_SOURCES.get()
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
        problems += ha_problems(self.ha, [v.name for v in self.venues if v.kind is VenueKind.SIM],
                                ledger_on_postgres=self.ledger.url is not None)
        if self.ledger.url is not None and self.mode is Mode.PAPER and any(v.kind is VenueKind.SIM
                                                                           for v in self.venues):
            problems.append(("ledger.url", "a paper run on in-process simulated venues starts each run with an "
                                           "empty ledger (the previous SQLite file is archived); use ledger.path "
                                           "here, or a PostgreSQL ledger against real venues or hedgerd venue-sim"))
        if self.mode is Mode.LIVE:
            problems += _live_mode_problems(self.venues, self.hedges)
            weakness = self.admin.token_weakness()
            if weakness is not None:
                problems.append(("admin.token", f"mode = 'live' refuses this admin token: it {weakness}; "
                                                f"{GENERATE_HINT}"))
        if problems:
            raise FieldProblems(problems)
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
        elif venue.kind is VenueKind.SIM and venue.sim.options is not None:
            problems.append((f"{at}.venue", f"sim venue {venue.name!r} lists options (sim.options): "
                                            "it is an inventory venue and takes no hedge orders"))
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
            elif inv.kind is VenueKind.SIM and inv.sim.options is not None:
                if not source.all_instruments:
                    problems.append((f"{src_at}.asset", f"sim venue {inv.name!r} lists options (sim.options), "
                                                        "whose symbols depend on the start date: use asset = '*' "
                                                        "(every option on the hedge's underlying)"))
            elif (inv.kind is VenueKind.SIM and not source.all_instruments
                  and source.asset not in split_symbol(inv.sim.symbol)[:2]):
                problems.append((f"{src_at}.asset", f"asset {source.asset!r} is not traded on sim venue "
                                                    f"{inv.name!r} (it trades {inv.sim.symbol!r})"))
            # '*' covers only the hedge's own underlying: a BTC and an ETH hedge may both use it on one venue
            asset = f"*{hedge.underlying.upper()}" if source.all_instruments else source.asset
            owner = covered.setdefault((source.venue, asset), i)
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
