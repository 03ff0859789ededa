"""The settings every order group runs with (``groups`` in config)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class GroupSettings:
    exposure_check_s: float = 0.1
    leg_timeout_s: float = 5.0
    margin_limit: Decimal = Decimal("0.90")
    grid: Any = None                     # trading.margin.ShockGrid (None: the default grid)
    max_unwind_attempts: int = 2
    retry_s: float = 1.0

    @classmethod
    def from_config(cls, cfg: Any) -> GroupSettings:
        from trading.group_margin import grid_from_config

        return cls(cfg.exposure_check_ms / 1000.0, float(cfg.leg_timeout_s),
                   Decimal(cfg.margin_limit), grid_from_config(cfg.shock_grid))
