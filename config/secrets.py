"""Reading the secrets a config points at, at the moment they are needed.

Config files hold only the NAMES of environment variables (``*_env`` keys),
so a config file, its hash in the audit trail or a /actors dump never holds
a token. The sinks and adapters call :func:`read_secret` when they start;
the value is never logged, and a missing variable is a ConfigError that
names the variable and the config key, not the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from config.errors import ConfigError, Issue


def read_secret(env_name: str, key_path: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of environment variable ``env_name`` (named by config key ``key_path``)."""
    env = os.environ if environ is None else environ
    value = env.get(env_name)
    if value is None or not value.strip():
        raise ConfigError(Issue("<environment>", None, key_path,
                                f"environment variable {env_name} is not set or empty"))
    return value
