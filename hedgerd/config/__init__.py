"""Configuration: schema, loading, rendering and reload rules (pydantic-settings).

:mod:`~hedgerd.config.schema` holds :class:`Settings` and its sections, :mod:`~hedgerd.config.sources`
:func:`load_settings` (defaults < TOML file < ``HEDGERD_*`` environment < secrets dir; the precedence
and the credentials rules are described there), :mod:`~hedgerd.config.render` the masked TOML/JSON
view and the ``check-config`` notes, :mod:`~hedgerd.config.masking` secret masking,
:mod:`~hedgerd.config.reload` what a SIGHUP may change and :mod:`~hedgerd.config.validation`
:class:`InvalidConfigError` with dotted field paths. The public names are re-exported here.
"""

from hedgerd.config.ha import HaConfig
from hedgerd.config.masking import MASK, mask_secrets, secret_values
from hedgerd.config.reload import SAFE_RELOAD_FIELDS, reload_diff, reloadable_fields
from hedgerd.config.render import masked_settings_dict, render_settings, settings_notes, toml_dumps
from hedgerd.config.schema import (
    CONFIG_FILE_ENV,
    CREDENTIAL_FIELDS,
    DEFAULT_SECRETS_DIR,
    ENV_PREFIX,
    RATE_LIMITED_ENDPOINTS,
    RESERVED_ENV_VARS,
    SECRETS_DIR_ENV,
    AdaptivePolicyConfig,
    AdminConfig,
    ExecutorConfig,
    GammaPolicyConfig,
    HedgeConfig,
    InventorySource,
    KillSwitchConfig,
    LedgerConfig,
    LoggingConfig,
    Mode,
    PolicyConfig,
    RateLimitConfig,
    ReconcileConfig,
    RiskConfig,
    Settings,
    SimOptionsSettings,
    SimSettings,
    VenueConfig,
    VenueCredentials,
    VenueKind,
    VenueRole,
    credential_env_var,
    credential_secret_file,
    default_hedges,
    default_venues,
    venue_key,
)
from hedgerd.config.sources import load_settings
from hedgerd.config.validation import InvalidConfigError, config_error_from_validation

__all__ = [
    "CONFIG_FILE_ENV",
    "CREDENTIAL_FIELDS",
    "DEFAULT_SECRETS_DIR",
    "ENV_PREFIX",
    "MASK",
    "RATE_LIMITED_ENDPOINTS",
    "RESERVED_ENV_VARS",
    "SAFE_RELOAD_FIELDS",
    "SECRETS_DIR_ENV",
    "AdaptivePolicyConfig",
    "AdminConfig",
    "ExecutorConfig",
    "GammaPolicyConfig",
    "HaConfig",
    "HedgeConfig",
    "InvalidConfigError",
    "InventorySource",
    "KillSwitchConfig",
    "LedgerConfig",
    "LoggingConfig",
    "Mode",
    "PolicyConfig",
    "RateLimitConfig",
    "ReconcileConfig",
    "RiskConfig",
    "Settings",
    "SimOptionsSettings",
    "SimSettings",
    "VenueConfig",
    "VenueCredentials",
    "VenueKind",
    "VenueRole",
    "config_error_from_validation",
    "credential_env_var",
    "credential_secret_file",
    "default_hedges",
    "default_venues",
    "load_settings",
    "mask_secrets",
    "masked_settings_dict",
    "reload_diff",
    "reloadable_fields",
    "render_settings",
    "secret_values",
    "settings_notes",
    "toml_dumps",
    "venue_key",
]
