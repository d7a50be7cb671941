"""Config loading: sources and precedence, validation with dotted paths, masking, reload."""

from __future__ import annotations

import json
import secrets
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import hedgerd.config as config
import hedgerd.config.reload as config_reload
import hedgerd.config.sources as config_sources
from hedgerd.config import (
    MASK,
    SAFE_RELOAD_FIELDS,
    HedgeConfig,
    InvalidConfigError,
    InventorySource,
    Mode,
    RateLimitConfig,
    Settings,
    VenueConfig,
    VenueKind,
    VenueRole,
    credential_env_var,
    credential_secret_file,
    load_settings,
    masked_settings_dict,
    reload_diff,
    render_settings,
    secret_values,
    settings_notes,
)
from hedgerd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CANARY_KEY = "CANARY-api-key-7f3a9c"
CANARY_SECRET = "CANARY-secret-b81e44"
CANARY_TOKEN = "CANARY-token-52d0e1-8c4b7a9f3e6d2c1b"  # long enough for live mode

CCXT_VENUES = """
[[venues]]
name = "binance-spot"
kind = "ccxt"
exchange = "binance"
role = "inventory"

[[venues]]
name = "binance-usdm"
kind = "ccxt"
exchange = "binanceusdm"
role = "hedge"

[[hedges]]
underlying = "BTC"
inventory = [{ venue = "binance-spot", asset = "BTC" }]
venue = "binance-usdm"
symbol = "BTC/USDT:USDT"
"""

ALL_CCXT_CREDENTIALS = {
    credential_env_var(venue, field): f"value-{venue}-{field}"
    for venue in ("binance-spot", "binance-usdm") for field in ("api_key", "secret")
}


class Loader:
    """load_settings isolated from the machine: own TOML file, env mapping and secrets dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.secrets = tmp_path / "secrets"
        self.secrets.mkdir()

    def file(self, text: str, name: str = "hedgerd.toml") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def __call__(self, toml: str | None = None, env: Mapping[str, str] | None = None,
                 secrets: Mapping[str, str] | None = None) -> Settings:
        for name, value in (secrets or {}).items():
            (self.secrets / name).write_text(value)
        path = self.file(toml) if toml is not None else None
        return load_settings(path, env=dict(env or {}), secrets_dir=self.secrets)


@pytest.fixture
def load(tmp_path: Path) -> Loader:
    return Loader(tmp_path)


# --- defaults and example files ---------------------------------------------------------------

def test_defaults_are_paper_mode_on_two_sim_venues(load: Loader) -> None:
    settings = load()
    assert settings == Settings()
    assert settings.mode is Mode.PAPER
    assert [(v.name, v.kind, v.role) for v in settings.venues] == [
        ("sim-spot", VenueKind.SIM, VenueRole.INVENTORY), ("sim-perp", VenueKind.SIM, VenueRole.HEDGE)]
    (hedge,) = settings.hedges
    assert (hedge.venue, hedge.symbol, hedge.inventory[0].venue) == ("sim-perp", "BTC/USDT:USDT", "sim-spot")
    assert settings.admin.host == "127.0.0.1" and settings.admin.port == 9108 and settings.admin.token is None
    assert settings.ledger.path == Path("var/hedgerd.sqlite")


def test_paper_example_is_the_embedded_default(load: Loader) -> None:
    assert load_settings(ROOT / "config/paper.toml", env={}, secrets_dir=load.secrets) == load()


def test_live_example_needs_credentials_from_outside_the_file(load: Loader) -> None:
    path = ROOT / "config/live.example.toml"
    raw = tomllib.loads(path.read_text())
    assert "credentials" not in raw
    assert all(not set(v) & {"api_key", "secret", "password"} for v in raw["venues"])
    assert "token" not in raw["admin"]

    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={}, secrets_dir=load.secrets)
    assert excinfo.value.path == "venues.0.api_key"
    assert "HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY" in excinfo.value.reason

    settings = load_settings(path, env=ALL_CCXT_CREDENTIALS, secrets_dir=load.secrets)
    assert settings.mode is Mode.LIVE
    assert all(v.kind is VenueKind.CCXT and v.has_credentials for v in settings.venues)
    assert [v.exchange for v in settings.venues] == ["binance", "binanceusdm"]


# --- sources and precedence ------------------------------------------------------------------------

def test_toml_overrides_defaults(load: Loader) -> None:
    settings = load("""
[admin]
port = 9300
[logging]
level = "DEBUG"
[[hedges]]
underlying = "BTC"
inventory = [{ venue = "sim-spot", asset = "BTC" }]
venue = "sim-perp"
symbol = "BTC/USDT:USDT"
threshold = 0.2
max_order = "0.123456789012345678901"
""")
    assert settings.admin.port == 9300
    assert settings.admin.host == "127.0.0.1"  # untouched keys keep their defaults
    assert settings.logging.level == "debug"
    assert settings.hedges[0].threshold == Decimal("0.2")
    assert settings.hedges[0].max_order == Decimal("0.123456789012345678901")


def test_env_overrides_nested_fields_case_insensitively(load: Loader) -> None:
    settings = load(env={
        "HEDGERD_ADMIN__PORT": "9200",
        "hedgerd_kill_switch__engaged": "true",
        "HEDGERD_EXECUTOR__RATE_LIMITS__SIM-PERP__BURST": "3",
        "HEDGERD_MODE": "PAPER",
        "UNRELATED_VARIABLE": "ignored",
    })
    assert settings.admin.port == 9200
    assert settings.kill_switch.engaged is True
    assert settings.executor.rate_limit_for("sim-perp").burst == 3
    assert settings.mode is Mode.PAPER


def test_env_replaces_a_list_section_as_json(load: Loader) -> None:
    hedges = [{"underlying": "BTC", "inventory": [{"venue": "sim-spot", "asset": "BTC"}],
               "venue": "sim-perp", "symbol": "BTC/USDT:USDT", "threshold": "0.5"}]
    settings = load(env={"HEDGERD_HEDGES": json.dumps(hedges)})
    assert settings.hedges[0].threshold == Decimal("0.5")


def test_env_mapping_replaces_os_environ(load: Loader, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEDGERD_ADMIN__PORT", "9400")
    assert load(env={}).admin.port == 9108
    assert load_settings(secrets_dir=load.secrets).admin.port == 9400  # env=None reads os.environ
    assert Settings().admin.port == 9108  # direct construction reads no source at all


def test_config_file_from_env_and_explicit_argument_wins(load: Loader) -> None:
    from_env = load.file("[admin]\nport = 9501\n", "env.toml")
    explicit = load.file("[admin]\nport = 9502\n", "explicit.toml")
    env = {"HEDGERD_CONFIG": str(from_env)}
    assert load_settings(env=env, secrets_dir=load.secrets).admin.port == 9501
    assert load_settings(explicit, env=env, secrets_dir=load.secrets).admin.port == 9502
    assert load_settings(env={"HEDGERD_CONFIG": ""}, secrets_dir=load.secrets).admin.port == 9108


def test_secrets_dir_values(load: Loader) -> None:
    settings = load(secrets={"hedgerd_admin__token": f"{CANARY_TOKEN}\n", "hedgerd_admin__port": "9600",
                             "unrelated_service_password": "not ours"})
    assert settings.admin.token is not None
    assert settings.admin.token.get_secret_value() == CANARY_TOKEN  # trailing newline stripped
    assert settings.admin.port == 9600


def test_secrets_dir_from_env_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen, default = tmp_path / "chosen", tmp_path / "default"
    for directory, port in ((chosen, "9701"), (default, "9702")):
        directory.mkdir()
        (directory / "hedgerd_admin__port").write_text(port)
    monkeypatch.setattr(config_sources, "DEFAULT_SECRETS_DIR", default)
    assert load_settings(env={"HEDGERD_SECRETS_DIR": str(chosen)}).admin.port == 9701
    assert load_settings(env={}).admin.port == 9702
    monkeypatch.setattr(config_sources, "DEFAULT_SECRETS_DIR", tmp_path / "absent")
    assert load_settings(env={}).admin.port == 9108


@pytest.mark.parametrize(("layers", "expected"), [
    ((), 9108),
    (("toml",), 9001),
    (("env",), 9002),
    (("secrets",), 9003),
    (("toml", "env"), 9002),
    (("toml", "secrets"), 9003),
    (("env", "secrets"), 9003),
    (("toml", "env", "secrets"), 9003),
])
def test_precedence_defaults_toml_env_secrets(load: Loader, layers: tuple[str, ...], expected: int) -> None:
    settings = load(
        toml="[admin]\nport = 9001\n" if "toml" in layers else None,
        env={"HEDGERD_ADMIN__PORT": "9002"} if "env" in layers else None,
        secrets={"hedgerd_admin__port": "9003"} if "secrets" in layers else None,
    )
    assert settings.admin.port == expected


@pytest.mark.parametrize("spelling", ["BINANCE_SPOT", "binance-spot", "Binance-Spot", "binance_spot"])
def test_credentials_by_venue_name_with_dash(load: Loader, spelling: str) -> None:
    env = {**ALL_CCXT_CREDENTIALS}
    del env["HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY"]
    env[f"HEDGERD_CREDENTIALS__{spelling}__API_KEY"] = CANARY_KEY
    settings = load("mode = 'live'\n" + CCXT_VENUES, env=env)
    spot = settings.venue("binance-spot")
    assert spot.api_key is not None and spot.api_key.get_secret_value() == CANARY_KEY
    assert spot.secret is not None and spot.secret.get_secret_value() == "value-binance-spot-secret"


def test_credentials_merge_env_and_secrets_files_secrets_win(load: Loader) -> None:
    env = {"HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY": "from-env",
           "HEDGERD_CREDENTIALS__BINANCE_SPOT__SECRET": "from-env",
           "HEDGERD_CREDENTIALS__BINANCE_USDM__API_KEY": "usdm-key"}
    secrets = {credential_secret_file("binance-spot", "secret"): "from-file",
               "hedgerd_credentials__binance-usdm__secret": "usdm-secret",
               credential_secret_file("binance-usdm", "password"): "usdm-pass"}
    settings = load("mode = 'live'\n" + CCXT_VENUES, env=env, secrets=secrets)
    spot, usdm = settings.venue("binance-spot"), settings.venue("binance-usdm")
    assert spot.api_key is not None and spot.api_key.get_secret_value() == "from-env"
    assert spot.secret is not None and spot.secret.get_secret_value() == "from-file"
    assert usdm.secret is not None and usdm.secret.get_secret_value() == "usdm-secret"
    assert usdm.password is not None and usdm.password.get_secret_value() == "usdm-pass"


def test_credential_names_documented_in_the_live_example() -> None:
    text = (ROOT / "config/live.example.toml").read_text()
    for venue in ("binance-spot", "binance-usdm"):
        for field in ("api_key", "secret"):
            assert credential_env_var(venue, field) in text
            assert credential_secret_file(venue, field) in text


def test_busy_polling_is_pointed_out_with_its_cost(load: Loader) -> None:
    assert not any("busy_poll" in note for note in settings_notes(load()))
    [note] = [note for note in settings_notes(load("[risk]\nbusy_poll = 0.005\n")) if "busy_poll" in note]
    assert "0.005" in note and "CPU core" in note


def test_paper_mode_accepts_ccxt_venues_without_credentials(load: Loader) -> None:
    settings = load("mode = 'paper'\n" + CCXT_VENUES)
    assert not any(v.has_credentials for v in settings.venues)
    assert any("paper" in note and "binance-spot" in note for note in settings_notes(settings))


# --- invalid configurations ----------------------------------------------------------------------

HEDGE = """
[[hedges]]
underlying = "{underlying}"
inventory = [{{ venue = "{inventory}", asset = "BTC" }}]
venue = "{venue}"
symbol = "{symbol}"
"""


def hedge(underlying: str = "BTC", inventory: str = "sim-spot", venue: str = "sim-perp",
          symbol: str = "BTC/USDT:USDT") -> str:
    return HEDGE.format(underlying=underlying, inventory=inventory, venue=venue, symbol=symbol)


SIM_VENUES = """
[[venues]]
name = "sim-spot"
role = "inventory"
[[venues]]
name = "sim-perp"
role = "hedge"
sim = { symbol = "BTC/USDT:USDT" }
[[venues]]
name = "sim-perp-2"
role = "hedge"
sim = { symbol = "BTC/USDT:USDT" }
"""

INVALID: list[tuple[str, str | None, dict[str, str], str, str]] = [
    # (id, toml, env, dotted path, part of the reason)
    ("wrong type", "[admin]\nport = 'abc'\n", {}, "admin.port", "valid integer"),
    ("wrong type decimal", hedge().replace('symbol', 'threshold = "lots"\nsymbol'), {},
     "hedges.0.threshold", "decimal"),
    ("wrong type bool", "[kill_switch]\nengaged = 'maybe'\n", {}, "kill_switch.engaged", "boolean"),
    ("bad enum", "mode = 'production'\n", {}, "mode", "'paper' or 'live'"),
    ("unknown top-level key", "foo = 1\n", {}, "foo", "unknown key"),
    ("unknown nested key", "[admin]\nprot = 9100\n", {}, "admin.prot", "unknown key"),
    ("unknown venue key", SIM_VENUES.replace('role = "inventory"', 'role = "inventory"\napikey = "x"', 1)
     + hedge(), {}, "venues.0.apikey", "unknown key"),
    ("negative max_order", hedge().replace('symbol', 'max_order = -1\nsymbol'), {},
     "hedges.0.max_order", "greater than 0"),
    ("negative rate", "[executor.default_rate_limit]\nrequests_per_second = -5\n", {},
     "executor.default_rate_limit.requests_per_second", "greater than 0"),
    ("negative loss limit", "[kill_switch]\nmax_realized_loss = -100\n", {},
     "kill_switch.max_realized_loss", "greater than 0"),
    ("min above max", hedge().replace('symbol', 'min_order = 2\nsymbol'), {},
     "hedges.0.min_order", "max_order"),
    ("max order above position", hedge().replace('symbol', 'max_order = 20\nsymbol'), {},
     "hedges.0.max_order", "max_position"),
    ("backoff", "[executor]\nbackoff_initial = 9\nbackoff_max = 1\n", {}, "executor.backoff_initial",
     "backoff_max"),
    ("env out of range", None, {"HEDGERD_ADMIN__PORT": "70000"}, "admin.port", "65535"),
    ("env wrong type", None, {"HEDGERD_RISK__SAFETY_TICK": "soon"}, "risk.safety_tick", "number"),
    ("negative busy poll", "[risk]\nbusy_poll = -0.001\n", {}, "risk.busy_poll", "greater than or equal to 0"),
    ("env unknown section", None, {"HEDGERD_ADMN__PORT": "1"}, "HEDGERD_ADMN__PORT", "unknown setting"),
    ("env single underscore", None, {"HEDGERD_ADMIN_PORT": "1"}, "HEDGERD_ADMIN_PORT",
     "HEDGERD_ADMIN__PORT"),
    ("env unknown nested key", None, {"HEDGERD_ADMIN__PROT": "1"}, "admin.prot", "unknown key"),
    ("env list item", None, {"HEDGERD_HEDGES__0__THRESHOLD": "1"}, "hedges", "JSON"),
    ("env bad json", None, {"HEDGERD_ADMIN": "{not json"}, "admin", "JSON"),
    ("missing hedge venue", SIM_VENUES + hedge(venue="nope"), {}, "hedges.0.venue", "no venue named 'nope'"),
    ("venue name case", SIM_VENUES + hedge(venue="SIM-PERP"), {}, "hedges.0.venue",
     "did you mean 'sim-perp'"),
    ("missing inventory venue", SIM_VENUES + hedge(inventory="nope"), {}, "hedges.0.inventory.0.venue",
     "no venue named 'nope'"),
    ("hedge venue role", SIM_VENUES + hedge(venue="sim-spot"), {}, "hedges.0.venue", "role 'hedge'"),
    ("inventory venue role", SIM_VENUES + hedge(inventory="sim-perp"), {}, "hedges.0.inventory.0.venue",
     "role 'inventory'"),
    ("duplicate venue", SIM_VENUES + "[[venues]]\nname = 'SIM_SPOT'\nrole = 'inventory'\n" + hedge(), {},
     "venues.3.name", "duplicate venue name"),
    ("duplicate underlying", SIM_VENUES + hedge() + hedge(venue="sim-perp-2"), {},
     "hedges.1.underlying", "duplicate underlying"),
    ("conflicting hedges", SIM_VENUES + hedge() + hedge(underlying="XBT").replace('"BTC" }', '"USDT" }'), {},
     "hedges.1.symbol", "conflicts with hedges.0"),
    ("inventory hedged twice", SIM_VENUES + hedge() + hedge(underlying="XBT", venue="sim-perp-2"), {},
     "hedges.1.inventory.0", "hedged twice"),
    ("instrument not on venue", SIM_VENUES + hedge(symbol="ETH/USDT:USDT"), {}, "hedges.0.symbol",
     "does not exist on sim venue"),
    ("spot hedge instrument", SIM_VENUES + hedge(symbol="BTC/USDT"), {}, "hedges.0.symbol", "derivative"),
    ("not a symbol", SIM_VENUES + hedge(symbol="BTCUSDT"), {}, "hedges.0.symbol", "unified symbol"),
    ("live without credentials", "mode = 'live'\n" + CCXT_VENUES, {}, "venues.0.api_key",
     "HEDGERD_CREDENTIALS__BINANCE_SPOT__SECRET"),
    ("live without secret", "mode = 'live'\n" + CCXT_VENUES,
     {"HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY": "k"}, "venues.0.secret", "needs api_key and secret"),
    ("live via env without credentials", CCXT_VENUES, {"HEDGERD_MODE": "live"}, "venues.0.api_key",
     "mode = 'live'"),
    ("live on sim venues", "mode = 'live'\n", {}, "hedges.0.venue", "sim venue"),
    ("live with the k8s placeholder token", "mode = 'live'\n" + CCXT_VENUES,
     {**ALL_CCXT_CREDENTIALS, "HEDGERD_ADMIN__TOKEN": "REPLACE-WITH-A-LONG-RANDOM-TOKEN"}, "admin.token",
     "known placeholder"),
    ("live with the compose demo token", "mode = 'live'\n" + CCXT_VENUES,
     {**ALL_CCXT_CREDENTIALS, "HEDGERD_ADMIN__TOKEN": "hedgerd-demo-token"}, "admin.token", "known placeholder"),
    ("live with a short admin token", "mode = 'live'\n" + CCXT_VENUES,
     {**ALL_CCXT_CREDENTIALS, "HEDGERD_ADMIN__TOKEN": "0123456789abcdef0123456789abcde"}, "admin.token",
     "shorter than 32 characters; generate one with `openssl rand -hex 32`"),
    ("credentials for unknown venue", None, {"HEDGERD_CREDENTIALS__NOPE__API_KEY": "k"}, "credentials.nope",
     "no venue named"),
    ("rate limit for unknown venue", "[executor.rate_limits.nope]\nburst = 2\n", {},
     "executor.rate_limits.nope", "no venue named"),
    ("ccxt without exchange", "[[venues]]\nname = 'x'\nkind = 'ccxt'\nrole = 'hedge'\n", {},
     "venues.0.exchange", "exchange id"),
    ("venue name with delimiter", "[[venues]]\nname = 'a__b'\nrole = 'hedge'\n", {}, "venues.0.name", "'__'"),
    ("missing required", "[[venues]]\nname = 'x'\n", {}, "venues.0.role", "required"),
    ("no venues", "venues = []\n", {}, "venues", "at least 1"),
]


@pytest.mark.parametrize(("toml", "env", "path", "reason"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid_config_names_the_field(load: Loader, toml: str | None, env: dict[str, str], path: str,
                                        reason: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load(toml, env=env)
    error = excinfo.value
    assert error.path == path, str(error)
    assert reason.lower() in error.reason.lower(), str(error)
    assert str(error).startswith(f"{path}: ")
    assert "Traceback" not in str(error) and "pydantic" not in str(error)


def test_live_mode_accepts_a_long_random_admin_token_or_none(load: Loader) -> None:
    token = secrets.token_hex(16)  # 32 characters, the minimum
    settings = load("mode = 'live'\n" + CCXT_VENUES, env={**ALL_CCXT_CREDENTIALS, "HEDGERD_ADMIN__TOKEN": token})
    assert settings.admin.token is not None and settings.admin.token.get_secret_value() == token
    assert settings.admin.token_weakness() is None
    settings = load("mode = 'live'\n" + CCXT_VENUES, env=ALL_CCXT_CREDENTIALS)  # no token: /kill disabled
    assert settings.admin.token is None and settings.admin.token_weakness() is None


@pytest.mark.parametrize("token", ["hedgerd-demo-token", "x7Qz", "REPLACE-WITH-A-LONG-RANDOM-TOKEN"])
def test_paper_mode_accepts_a_weak_admin_token_with_a_note(load: Loader, token: str) -> None:
    settings = load(None, secrets={"hedgerd_admin__token": token})
    notes = [n for n in settings_notes(settings) if n.startswith("admin.token")]
    assert len(notes) == 1 and "refused in live mode" in notes[0] and "openssl rand -hex 32" in notes[0]
    assert token not in notes[0]
    assert not [n for n in settings_notes(load(None, secrets={"hedgerd_admin__token": secrets.token_hex(16)}))
                if n.startswith("admin.token")]


SHORT_CANARY = "CANARY-short-token-9d1e"


def test_a_refused_admin_token_is_not_shown(load: Loader) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load("mode = 'live'\n" + CCXT_VENUES, env={**ALL_CCXT_CREDENTIALS, "HEDGERD_ADMIN__TOKEN": SHORT_CANARY})
    assert excinfo.value.path == "admin.token"
    assert SHORT_CANARY not in str(excinfo.value)


def test_bad_toml_is_reported_with_file_and_line(load: Loader) -> None:
    path = load.file("[admin]\nport = 9108\n[ledger\npath = 'x'\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={}, secrets_dir=load.secrets)
    assert excinfo.value.path == str(path)
    assert "invalid TOML" in excinfo.value.reason and "line 3" in excinfo.value.reason


@pytest.mark.parametrize(("name", "setup", "reason"), [
    ("missing.toml", None, "not found"),
    ("a-directory", "dir", "not a regular file"),
    ("binary.toml", "binary", "UTF-8"),
])
def test_unreadable_config_file(load: Loader, name: str, setup: str | None, reason: str) -> None:
    path = load.dir / name
    if setup == "dir":
        path.mkdir()
    elif setup == "binary":
        path.write_bytes(b"\xff\xfe\x00mode")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={}, secrets_dir=load.secrets)
    assert (excinfo.value.path, reason in excinfo.value.reason) == (str(path), True)


def test_missing_explicit_secrets_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env={"HEDGERD_SECRETS_DIR": str(tmp_path / "nope")})
    assert excinfo.value.path == str(tmp_path / "nope")


def test_unknown_secret_file_is_an_error(load: Loader) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load(secrets={"hedgerd_admn__token": "x"})
    assert excinfo.value.path == "secrets file hedgerd_admn__token"


def test_all_problems_are_listed_first_one_is_the_path(load: Loader) -> None:
    with pytest.raises(InvalidConfigError) as excinfo:
        load("[admin]\nport = -1\n[risk]\nsafety_tick = 0\n")
    error = excinfo.value
    assert error.path == "admin.port"
    assert [path for path, _ in error.problems] == ["admin.port", "risk.safety_tick"]
    assert "admin.port: " in str(error) and "risk.safety_tick: " in str(error)


# --- secrets never shown ---------------------------------------------------------------------------

def canary_settings(load: Loader) -> Settings:
    toml = "mode = 'live'\n" + CCXT_VENUES.replace(
        'exchange = "binanceusdm"',
        f'exchange = "binanceusdm"\noptions = {{ apiKey = "{CANARY_KEY}", nested = {{ privateKey = '
        f'"{CANARY_SECRET}" }}, defaultType = "future" }}\n'
        f'urls = {{ api = "https://user:{CANARY_SECRET}@example.invalid/api" }}')
    env = {**ALL_CCXT_CREDENTIALS, "HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY": CANARY_KEY}
    secrets = {"hedgerd_credentials__binance_spot__secret": CANARY_SECRET,
               "hedgerd_admin__token": CANARY_TOKEN}
    return load(toml, env=env, secrets=secrets)


def assert_no_canary(text: str) -> None:
    for canary in (CANARY_KEY, CANARY_SECRET, CANARY_TOKEN):
        assert canary not in text


def test_render_masks_every_secret(load: Loader) -> None:
    settings = canary_settings(load)
    spot = settings.venue("binance-spot")
    assert spot.api_key is not None and spot.api_key.get_secret_value() == CANARY_KEY  # it did load
    for fmt in ("toml", "json"):
        text = render_settings(settings, fmt)
        assert_no_canary(text)
        assert MASK in text
    usdm = json.loads(render_settings(settings, "json"))["venues"][1]
    assert usdm["api_key"] == MASK and usdm["options"]["apiKey"] == MASK
    assert usdm["options"]["nested"]["privateKey"] == MASK and usdm["options"]["defaultType"] == "future"
    assert usdm["urls"]["api"] == f"https://{MASK}@example.invalid/api"
    assert_no_canary(repr(settings))
    assert_no_canary(str(settings))
    assert_no_canary(repr(settings.venues))


def test_secret_values_lists_every_secret_for_redaction(load: Loader) -> None:
    values = secret_values(canary_settings(load))
    for canary in (CANARY_KEY, CANARY_SECRET, CANARY_TOKEN, f"user:{CANARY_SECRET}"):
        assert canary in values
    assert "future" not in values and "binance" not in values


@pytest.mark.parametrize("env", [
    {"HEDGERD_ADMIN__PORT": CANARY_SECRET},
    {"HEDGERD_CREDENTIALS__NOPE__API_KEY": CANARY_KEY},
    {"HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY": CANARY_KEY, "HEDGERD_RISK__SAFETY_TICK": "-1"},
    {"HEDGERD_CREDENTIALS__BINANCE_SPOT": "{" + CANARY_SECRET},
    {"HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY": CANARY_KEY},  # live mode, secret missing
])
def test_config_errors_never_show_secret_values(load: Loader, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load("mode = 'live'\n" + CCXT_VENUES, env=env)
    error = excinfo.value
    assert_no_canary(str(error))
    assert_no_canary(repr(error))
    assert_no_canary(error.reason)


def test_toml_render_round_trips(load: Loader) -> None:
    options = 'options = { "odd name" = "a \\"quoted\\"\\nline", list = [1, 2.5, "x"], deep = { on = true } }'
    two_assets = 'asset = "BTC" }, { venue = "sim-spot", asset = "USDT" }]'
    settings = load(SIM_VENUES.replace('name = "sim-perp"\n', f'name = "sim-perp"\n{options}\n')
                    + hedge().replace('asset = "BTC" }]', two_assets)
                    + """
[kill_switch]
kill_file = ""
max_realized_loss = "1234.5678901234567890123"
[executor.rate_limits.sim-perp]
requests_per_second = 2.5
burst = 3
""", secrets={"hedgerd_admin__token": CANARY_TOKEN})
    assert settings.kill_switch.kill_file is None
    text = render_settings(settings, "toml")
    reloaded = load(text)
    assert masked_settings_dict(reloaded) == masked_settings_dict(settings)
    assert reloaded.kill_switch.kill_file is None
    assert reloaded.kill_switch.max_realized_loss == Decimal("1234.5678901234567890123")
    assert reloaded.venue("sim-perp").options["odd name"] == 'a "quoted"\nline'
    assert reloaded.hedges[0].threshold == settings.hedges[0].threshold


def test_default_render_round_trips_and_json_matches(load: Loader) -> None:
    settings = load()
    assert load(render_settings(settings)) == settings
    data = json.loads(render_settings(settings, "json"))
    assert data["hedges"][0]["threshold"] == str(settings.hedges[0].threshold)
    assert data["admin"]["port"] == settings.admin.port
    assert "credentials" not in data


# --- reload (SIGHUP) -------------------------------------------------------------------------------

def with_changes(settings: Settings, **sections: Any) -> Settings:
    data = settings.model_dump()
    for dotted, value in sections.items():
        *parents, last = dotted.split("__")
        target: Any = data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return Settings.model_validate(data)


def test_reload_diff_splits_safe_and_unsafe_changes() -> None:
    old = Settings()
    new = with_changes(old, hedges__0__threshold=Decimal("0.2"), hedges__0__max_order=Decimal(2),
                       executor__rate_limits={"sim-perp": RateLimitConfig(requests_per_second=3, burst=2)},
                       executor__order_timeout=9.0, kill_switch__engaged=True, logging__level="debug",
                       logging__format="json", risk__safety_tick=0.5, admin__port=9999,
                       ledger__synchronous="FULL", mode=Mode.PAPER)
    applied, rejected = reload_diff(old, new)
    assert sorted(applied) == sorted([
        "hedges.0.threshold", "hedges.0.max_order", "executor.rate_limits.sim-perp",
        "kill_switch.engaged", "logging.level", "risk.safety_tick"])
    # order_timeout is also the venue's window for a late order (recvWindow), fixed at startup
    assert sorted(rejected) == ["admin.port", "executor.order_timeout", "ledger.synchronous", "logging.format"]
    assert reload_diff(old, Settings()) == ([], [])


def test_reload_rejects_venue_mode_and_hedge_identity_changes() -> None:
    old = Settings()
    other_venue = VenueConfig(name="sim-perp", role=VenueRole.HEDGE, sim=old.venues[1].sim.model_copy(
        update={"seed": 7}))
    new = with_changes(old, venues__1=other_venue, hedges__0__symbol="BTC/USDT:USDT",
                       hedges__0__inventory=[InventorySource(venue="sim-spot", asset="USDT")],
                       hedges__0__threshold=Decimal("0.3"))
    applied, rejected = reload_diff(old, new)
    assert applied == []
    assert "venues.1.sim.seed" in rejected
    assert "hedges.0.threshold" in rejected  # the hedge is now another hedge: nothing of it applies
    assert "hedges.0.inventory.0.asset" in rejected

    added = old.model_copy(update={"hedges": [*old.hedges, HedgeConfig(
        underlying="ETH", inventory=[InventorySource(venue="sim-spot", asset="USDT")], venue="sim-perp",
        symbol="ETH/USDT:USDT")]})
    assert reload_diff(old, added) == ([], ["hedges.1"])
    assert reload_diff(added, old) == ([], ["hedges.1"])
    live = old.model_copy(update={"mode": Mode.LIVE})
    assert reload_diff(old, live) == ([], ["mode"])


def test_reload_diff_compares_secrets_by_value_without_showing_them(load: Loader) -> None:
    old = load(secrets={"hedgerd_admin__token": "one"})
    new = load(secrets={"hedgerd_admin__token": CANARY_TOKEN})
    applied, rejected = reload_diff(old, new)
    assert (applied, rejected) == ([], ["admin.token"])
    assert_no_canary(repr((applied, rejected)))


def test_reload_diff_rejects_a_rate_limit_for_a_venue_added_with_it() -> None:
    old = Settings()
    extra = VenueConfig(name="sim-perp-2", role=VenueRole.HEDGE, sim=old.venues[1].sim)
    new = old.model_copy(update={
        "venues": [*old.venues, extra],
        "executor": old.executor.model_copy(update={"rate_limits": {"sim-perp-2": RateLimitConfig()}}),
    })
    applied, rejected = reload_diff(old, new)
    assert (applied, rejected) == (["executor.rate_limits.sim-perp-2"], ["venues.2"])  # the daemon refuses it


def test_safe_reload_fields_cover_the_documented_sections() -> None:
    for path in ("hedges.3.hedge_ratio", "hedges.0.max_price_age", "hedges.0.max_delta_notional",
                 "executor.default_rate_limit.burst", "executor.max_retries", "executor.backoff_max",
                 "kill_switch.kill_file", "risk.max_price_jump"):
        assert any(config_reload._matches(pattern, path) for pattern in SAFE_RELOAD_FIELDS), path
    for path in ("mode", "venues.0.name", "ledger.path", "admin.token", "hedges.0.venue", "executor",
                 "executor.client_id_prefix", "kill_switch", "logging.format"):
        assert not any(config_reload._matches(pattern, path) for pattern in SAFE_RELOAD_FIELDS), path


def test_reload_diff_with_a_dotted_venue_name() -> None:
    spot = VenueConfig(name="sim-spot", role=VenueRole.INVENTORY)
    perp = VenueConfig(name="perp.v2", role=VenueRole.HEDGE, sim=config.SimSettings(symbol="BTC/USDT:USDT"))
    old = Settings(venues=[spot, perp], hedges=[HedgeConfig(
        underlying="BTC", inventory=[InventorySource(venue="sim-spot", asset="BTC")], venue="perp.v2",
        symbol="BTC/USDT:USDT")])
    limit = RateLimitConfig(requests_per_second=1.5, burst=2)
    executor = old.executor.model_copy(update={"rate_limits": {"perp.v2": limit}})
    new = old.model_copy(update={"executor": executor})
    assert reload_diff(old, new) == (["executor.rate_limits.perp.v2"], [])
