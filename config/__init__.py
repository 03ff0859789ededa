"""Tradewarden configuration: one validated schema, YAML files, located errors.

    from config import load_config, config_hash
    cfg = load_config("config/prod.yaml", overrides={"run": {"duration_s": 10}})
    cfg.risk.max_order_size            # Decimal("100")
    cfg.risk.limits_for("BTCUSDT")     # per-symbol overrides resolved

Importing this package reads no file (rule 14); ``load_config`` does.
"""

from config.errors import ConfigError, Issue
from config.loader import build_config, canonical_json, config_hash, default_path, load_config
from config.risk import Limits, RiskConfig, SymbolLimits
from config.schema import Config
from config.secrets import read_secret
from config.source import Source, parse_yaml, read_yaml

__all__ = [
    "Config", "ConfigError", "Issue", "Limits", "RiskConfig", "Source", "SymbolLimits",
    "build_config", "canonical_json", "config_hash", "default_path", "load_config",
    "parse_yaml", "read_secret", "read_yaml",
]
